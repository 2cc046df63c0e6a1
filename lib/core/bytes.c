/* Byte blocks in shared memory (bytes.h): cf_bytes_alloc(), cf_bytes_freeze(), cf_bytes_free(),
 * and what executors need to pass them by reference.
 *
 * A block is a memfd mapped shared. The registry (sorted by address, under one leaf lock) lets
 * the library recognise a pointer into a block: an argument range in a frozen block is passed by
 * reference (cf__bytes_new), a task result in a block is handed over instead of copied
 * (cf__block_adopt_result). References: the caller's (until cf_bytes_free), one per task
 * argument that points into the block, and the result's (once a task returned the block). The
 * memory goes when the last one does.
 *
 * Freezing maps the block read-only in place (MAP_FIXED over the writable mapping, atomically)
 * and seals the memfd against writing, shrinking and growing. The seal needs no writable mapping
 * of the file anywhere, which is why writable blocks are not inherited by fork() children
 * (MADV_DONTFORK): a child holding a writable copy would make freezing impossible. A block
 * mapped from a worker's result has no descriptor: it is only ever read and released. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/internal.h"

/* Ranges up to this size are copied: inline travel is cheaper than a mapping. */
#define SHARE_MIN (64u * 1024u)

struct cf__block {
    unsigned char *base; /* the mapping */
    size_t size;         /* its length, whole pages */
    size_t len;          /* the bytes asked for (the size of a received mapping) */
    int fd;              /* the memfd, or -1 for a mapping received from a worker */
    bool frozen;
    bool owned;    /* the caller's reference (cf_bytes_alloc) is still held */
    uint32_t refs; /* under the registry lock */
};

static struct {
    cf__lock lock;
    cf__block **blocks; /* sorted by base */
    size_t n, cap;
    _Atomic size_t live; /* n, readable without the lock: 0 skips every lookup */
} registry;

static void registry_prepare(void)
{
    cf__lock_acquire(&registry.lock);
}

static void registry_parent(void)
{
    cf__lock_release(&registry.lock);
}

static void registry_child(void)
{
    registry.lock = (cf__lock){0};
}

static const cf__fork_hooks registry_fork_hooks = {registry_prepare, registry_parent,
                                                   registry_child};

/* The index of the last block whose base is at or below `p`, or n if none (lock held). */
static size_t find_at_or_below(const void *p)
{
    CF__ASSERT_LOCK_HELD(&registry.lock);
    size_t lo = 0, hi = registry.n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if ((const unsigned char *)p < registry.blocks[mid]->base)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo == 0 ? registry.n : lo - 1;
}

/* The block holding [p, p + len), or NULL (lock held). */
static cf__block *find_holding(const void *p, size_t len)
{
    size_t i = find_at_or_below(p);
    if (i == registry.n)
        return NULL;
    cf__block *b = registry.blocks[i];
    size_t at = (size_t)((const unsigned char *)p - b->base);
    return at <= b->len && len <= b->len - at ? b : NULL;
}

/* The block that starts at `p`, or NULL (lock held). */
static cf__block *find_exact(const void *p)
{
    size_t i = find_at_or_below(p);
    return i < registry.n && registry.blocks[i]->base == p ? registry.blocks[i] : NULL;
}

static int insert(cf__block *b)
{
    cf__lock_acquire(&registry.lock);
    int rc = cf__grow(&registry.blocks, &registry.cap, registry.n + 1, sizeof(cf__block *));
    if (rc == 0) {
        size_t i = find_at_or_below(b->base);
        i = i == registry.n ? 0 : i + 1;
        memmove(registry.blocks + i + 1, registry.blocks + i,
                (registry.n - i) * sizeof(cf__block *));
        registry.blocks[i] = b;
        registry.n++;
        atomic_store_explicit(&registry.live, registry.n, memory_order_relaxed);
    }
    cf__lock_release(&registry.lock);
    return rc;
}

/* Drops a reference (lock held); returns true if it was the last, the block then unlisted. */
static bool unref_locked(cf__block *b)
{
    CF__ASSERT_LOCK_HELD(&registry.lock);
    CF__ASSERT(b->refs > 0);
    if (--b->refs)
        return false;
    size_t i = find_at_or_below(b->base);
    CF__ASSERT(i < registry.n && registry.blocks[i] == b);
    memmove(registry.blocks + i, registry.blocks + i + 1,
            (registry.n - i - 1) * sizeof(cf__block *));
    registry.n--;
    atomic_store_explicit(&registry.live, registry.n, memory_order_relaxed);
    return true;
}

static void destroy(cf__block *b)
{
    munmap(b->base, b->size);
    if (b->fd >= 0)
        close(b->fd);
    cf__free(b);
}

static size_t page_size(void)
{
    return (size_t)sysconf(_SC_PAGESIZE);
}

int cf_bytes_alloc(void **out, size_t len)
{
    if (!out)
        return CF_EINVAL;
    *out = NULL;
    size_t page = page_size();
    if (len == 0 || len > PTRDIFF_MAX - page)
        return CF_EINVAL;
    cf__fork_hooks_install(CF__FORK_LEVEL_BLOCKS, &registry_fork_hooks);
    cf__block *b = cf__calloc(1, sizeof(*b));
    if (!b)
        return CF_ENOMEM;
    *b = (cf__block){.size = (len + page - 1) / page * page, .len = len, .fd = -1};
    int rc = 0;
    if (cf__fault(CF__FAULT_FD))
        rc = CF_EMFILE;
    else if ((b->fd = cf__fd_above_stdio(
                  memfd_create("cfutures-bytes", MFD_CLOEXEC | MFD_ALLOW_SEALING))) < 0)
        rc = cf__errno_code(errno);
    else if (ftruncate(b->fd, (off_t)b->size) != 0)
        rc = errno == EFBIG || errno == ENOSPC ? CF_ENOMEM : cf__errno_code(errno);
    else if (cf__fault(CF__FAULT_MMAP))
        rc = CF_ENOMEM;
    if (rc == 0) {
        /* Populated now, in one pass: the caller is about to fill it, and a fault per page
         * costs more than the copy itself. */
        void *p = mmap(NULL, b->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, b->fd, 0);
        if (p == MAP_FAILED)
            rc = CF_ENOMEM;
        else
            b->base = p;
    }
    if (rc == 0) {
        madvise(b->base, b->size, MADV_DONTFORK);
        b->owned = true;
        b->refs = 1;
        rc = insert(b);
    }
    if (rc) {
        if (b->base)
            munmap(b->base, b->size);
        if (b->fd >= 0)
            close(b->fd);
        cf__free(b);
        return rc;
    }
    *out = b->base;
    return 0;
}

/* Maps the block read-only in place and seals it (lock held). The order matters on kernels
 * before 6.7, where any shared mapping of a file opened for writing counts as writable and
 * F_SEAL_WRITE is refused while one exists: F_SEAL_FUTURE_WRITE first (no new writable mapping,
 * no write(), from now on), then the block is mapped again, privately and read-only, over the
 * writable mapping (MAP_FIXED, atomically: the address never goes unmapped; a private mapping
 * nobody writes shares the file's pages, no copy), and only then F_SEAL_WRITE, which a receiver
 * checks for (process_pool/channel.c). */
static int freeze_locked(cf__block *b)
{
    if (b->frozen)
        return 0;
    if (fcntl(b->fd, F_ADD_SEALS, F_SEAL_FUTURE_WRITE | F_SEAL_SHRINK | F_SEAL_GROW) != 0)
        return CF_EINVALSTATE;
    if (cf__fault(CF__FAULT_MMAP) ||
        mmap(b->base, b->size, PROT_READ, MAP_PRIVATE | MAP_FIXED, b->fd, 0) == MAP_FAILED)
        return CF_ENOMEM; /* still writable through the old mapping; freezing may be retried */
    /* EBUSY only if pages are pinned for I/O (the writable mapping is gone): the block is
     * read-only here and for any new mapping, but a receiver would refuse it. */
    if (fcntl(b->fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SEAL) != 0)
        return CF_EINVALSTATE;
    b->frozen = true;
    return 0;
}

int cf_bytes_freeze(void *data)
{
    if (!data)
        return CF_EINVAL;
    cf__lock_acquire(&registry.lock);
    cf__block *b = find_exact(data);
    int rc = b && b->owned && b->fd >= 0 ? freeze_locked(b) : CF_EINVAL;
    cf__lock_release(&registry.lock);
    return rc;
}

int cf_bytes_free(void *data)
{
    if (!data)
        return 0;
    cf__lock_acquire(&registry.lock);
    cf__block *b = find_exact(data);
    if (!b || !b->owned) {
        cf__lock_release(&registry.lock);
        return CF_EINVAL;
    }
    b->owned = false;
    bool last = unref_locked(b);
    cf__lock_release(&registry.lock);
    if (last)
        destroy(b);
    return 0;
}

/* ---- for the executors ---- */

cf__block *cf__block_ref_frozen(const void *p, size_t len)
{
    if (len <= SHARE_MIN || !atomic_load_explicit(&registry.live, memory_order_relaxed))
        return NULL;
    cf__lock_acquire(&registry.lock);
    cf__block *b = find_holding(p, len);
    if (b && (!b->frozen || b->fd < 0))
        b = NULL;
    if (b)
        b->refs++;
    cf__lock_release(&registry.lock);
    return b;
}

void cf__block_unref(cf__block *b)
{
    cf__lock_acquire(&registry.lock);
    bool last = unref_locked(b);
    cf__lock_release(&registry.lock);
    if (last)
        destroy(b);
}

int cf__block_fd(const cf__block *b)
{
    return b->fd;
}

uint64_t cf__block_offset(const cf__block *b, const void *p)
{
    return (uint64_t)((const unsigned char *)p - b->base);
}

bool cf__block_adopt_result(const void *value, size_t len)
{
    if (!value || !atomic_load_explicit(&registry.live, memory_order_relaxed))
        return false;
    cf__lock_acquire(&registry.lock);
    cf__block *b = find_holding(value, len);
    bool adopt = b && b->owned;
    if (adopt)
        b->owned = false; /* the caller's reference is the result's now */
    cf__lock_release(&registry.lock);
    return adopt;
}

void cf__block_release(void *value)
{
    if (!value)
        return;
    cf__lock_acquire(&registry.lock);
    cf__block *b = find_holding(value, 0);
    CF__ASSERT(b != NULL); /* a result destructor called on a pointer that is not a block's */
    bool last = b && unref_locked(b);
    cf__lock_release(&registry.lock);
    if (last)
        destroy(b);
}

int cf__block_share(const void *value, size_t len, int *fd, uint64_t *offset)
{
    cf__lock_acquire(&registry.lock);
    cf__block *b = find_holding(value, len);
    int rc = b && b->fd >= 0 ? freeze_locked(b) : CF_EINVAL;
    if (rc == 0 && cf__fault(CF__FAULT_FD))
        rc = CF_EMFILE;
    if (rc == 0) {
        *fd = fcntl(b->fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
        if (*fd < 0)
            rc = cf__errno_code(errno);
        *offset = cf__block_offset(b, value);
    }
    cf__lock_release(&registry.lock);
    return rc;
}

int cf__block_adopt_mapping(void *base, size_t size)
{
    cf__block *b = cf__calloc(1, sizeof(*b));
    if (!b)
        return CF_ENOMEM;
    *b = (cf__block){.base = base, .size = size, .len = size, .fd = -1, .frozen = true, .refs = 1};
    cf__fork_hooks_install(CF__FORK_LEVEL_BLOCKS, &registry_fork_hooks);
    int rc = insert(b);
    if (rc)
        cf__free(b);
    return rc;
}
