/* The data callers attach to futures (cf_future_set_data / cf_future_get_data).
 *
 * A future is one cache line with no word to spare (internal.h), and most futures never carry
 * data, so the pointers live beside the futures: in a table keyed by the future's address,
 * split into shards by hash so that threads attaching data to different futures rarely meet on
 * a lock. A future's CF__F_DATA flag says that it has an entry: a future without one never
 * touches the table, and the future's last reference removes the entry before its memory is
 * reused. Each shard is an open-addressing table (linear probing, at most half full) whose
 * removals shift the following entries back, so no tombstones accumulate. */
#include "core/internal.h"

enum { SHARD_BITS = 6, SHARDS = 1 << SHARD_BITS, MIN_SLOTS = 16 };

typedef struct data_entry {
    const cf_future *f; /* NULL: a free slot */
    void *data;
} data_entry;

typedef struct data_shard {
    _Alignas(CF__CACHELINE) cf__lock lock; /* guards the rest */
    data_entry *slots;
    size_t mask; /* slot count - 1 (a power of two), or 0 before the first entry */
    size_t used;
} data_shard;

static data_shard shards[SHARDS];

/* Futures are 64-byte aligned: the low bits carry nothing. */
static uint64_t hash_of(const cf_future *f)
{
    return ((uint64_t)(uintptr_t)f >> 6) * UINT64_C(0x9E3779B97F4A7C15);
}

/* The top bits of a multiplicative hash are the well-mixed ones: the shard takes the highest,
 * the slot the next ones. */
static data_shard *shard_of(uint64_t h)
{
    return &shards[h >> (64 - SHARD_BITS)];
}

static size_t home_of(const data_shard *sh, uint64_t h)
{
    return (size_t)(h >> (32 - SHARD_BITS)) & sh->mask;
}

/* The slot holding `f`, or the free slot where it would go. */
static data_entry *find(const data_shard *sh, const cf_future *f, uint64_t h)
{
    for (size_t i = home_of(sh, h);; i = (i + 1) & sh->mask)
        if (sh->slots[i].f == f || !sh->slots[i].f)
            return &sh->slots[i];
}

static int grow(data_shard *sh)
{
    size_t n = sh->mask ? (sh->mask + 1) * 2 : MIN_SLOTS;
    data_entry *slots = cf__calloc(n, sizeof(*slots));
    if (!slots)
        return CF_ENOMEM;
    data_shard bigger = {.slots = slots, .mask = n - 1, .used = sh->used};
    for (size_t i = 0; sh->mask && i <= sh->mask; i++)
        if (sh->slots[i].f)
            *find(&bigger, sh->slots[i].f, hash_of(sh->slots[i].f)) = sh->slots[i];
    cf__free(sh->slots);
    sh->slots = slots;
    sh->mask = n - 1;
    return 0;
}

static void install_fork_hooks(void);

int cf_future_set_data(cf_future *f, void *data)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    if (!f)
        return CF_EINVAL;
    pthread_once(&once, install_fork_hooks);
    uint64_t h = hash_of(f);
    data_shard *sh = shard_of(h);
    cf__lock_acquire(&sh->lock);
    int rc = 0;
    if (!(cf__future_load(f) & CF__F_DATA)) {
        /* A new entry: keep the table at most half full. */
        if ((sh->used + 1) * 2 > (sh->mask ? sh->mask + 1 : 0))
            rc = grow(sh);
        if (rc == 0) {
            *find(sh, f, h) = (data_entry){.f = f, .data = data};
            sh->used++;
            atomic_fetch_or_explicit(&f->state, CF__F_DATA, memory_order_relaxed);
        }
    } else {
        find(sh, f, h)->data = data;
    }
    cf__lock_release(&sh->lock);
    return rc;
}

void *cf_future_get_data(const cf_future *f)
{
    if (!f || !(cf__future_load(f) & CF__F_DATA))
        return NULL;
    uint64_t h = hash_of(f);
    data_shard *sh = shard_of(h);
    cf__lock_acquire(&sh->lock);
    void *data = find(sh, f, h)->data;
    cf__lock_release(&sh->lock);
    return data;
}

void cf__future_data_forget(const cf_future *f)
{
    uint64_t h = hash_of(f);
    data_shard *sh = shard_of(h);
    cf__lock_acquire(&sh->lock);
    data_entry *hole = find(sh, f, h);
    CF__ASSERT(hole->f == f);
    *hole = (data_entry){0};
    sh->used--;
    /* Shift back the entries after the hole that probing would no longer reach. */
    size_t i = (size_t)(hole - sh->slots);
    for (size_t j = (i + 1) & sh->mask; sh->slots[j].f; j = (j + 1) & sh->mask) {
        size_t home = home_of(sh, hash_of(sh->slots[j].f));
        /* The entry at j may move to the hole at i unless its home lies in (i, j]. */
        bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (stays)
            continue;
        sh->slots[i] = sh->slots[j];
        sh->slots[j] = (data_entry){0};
        i = j;
    }
    cf__lock_release(&sh->lock);
}

/* A fork() must not copy a shard half-updated or locked by a thread the child lacks. */
static void data_prefork(void)
{
    for (int i = 0; i < SHARDS; i++)
        cf__lock_acquire(&shards[i].lock);
}

static void data_postfork_parent(void)
{
    for (int i = SHARDS - 1; i >= 0; i--)
        cf__lock_release(&shards[i].lock);
}

/* The child is the forking thread alone: nobody sleeps on the locks it took. */
static void data_postfork_child(void)
{
    for (int i = 0; i < SHARDS; i++)
        atomic_store_explicit(&shards[i].lock.word, 0, memory_order_relaxed);
}

static const cf__fork_hooks data_fork_hooks = {data_prefork, data_postfork_parent,
                                               data_postfork_child};

static void install_fork_hooks(void)
{
    cf__fork_hooks_install(CF__FORK_LEVEL_FUTURE_DATA, &data_fork_hooks);
}
