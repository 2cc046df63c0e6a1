/* Memory allocation, and the fault-injection points the reliability tests walk over. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"

#ifdef CF_FAULT_INJECTION
static _Atomic unsigned fault_kinds;
static _Atomic unsigned long fault_nth;
static _Atomic unsigned long fault_counter;
static _Atomic bool fault_did_fire;

void cf__fault_arm(unsigned kinds, unsigned long nth)
{
    atomic_store(&fault_kinds, 0);
    atomic_store(&fault_counter, 0);
    atomic_store(&fault_did_fire, false);
    atomic_store(&fault_nth, nth);
    atomic_store(&fault_kinds, nth ? kinds : 0);
}

bool cf__fault(cf__fault_kind kind)
{
    if (!(atomic_load_explicit(&fault_kinds, memory_order_relaxed) & kind))
        return false;
    if (atomic_fetch_add(&fault_counter, 1) + 1 != atomic_load(&fault_nth))
        return false;
    atomic_store(&fault_did_fire, true);
    return true;
}

unsigned long cf__fault_count(void)
{
    return atomic_load(&fault_counter);
}

bool cf__fault_fired(void)
{
    return atomic_load(&fault_did_fire);
}
#endif

/* No object may exceed PTRDIFF_MAX bytes. Refusing such sizes here, rather than in malloc,
 * gives CF_ENOMEM for a hostile length under every allocator: ASan's aborts on them by default
 * and valgrind reports them as errors. */
static bool too_big(size_t n, size_t size)
{
    return size && n > (size_t)PTRDIFF_MAX / size;
}

void *cf__malloc(size_t size)
{
    if (cf__fault(CF__FAULT_ALLOC) || too_big(1, size))
        return NULL;
    return malloc(size);
}

void *cf__calloc(size_t n, size_t size)
{
    if (cf__fault(CF__FAULT_ALLOC) || too_big(n, size))
        return NULL;
    return calloc(n, size);
}

void *cf__realloc_array(void *p, size_t n, size_t size)
{
    if (cf__fault(CF__FAULT_ALLOC) || too_big(n, size))
        return NULL;
    return realloc(p, n * size);
}

int cf__grow(void *array_ptr, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 16;
    while (n < need) {
        if (n > SIZE_MAX / 2)
            return CF_ENOMEM;
        n *= 2;
    }
    void *array;
    memcpy(&array, array_ptr, sizeof(array));
    array = cf__realloc_array(array, n, size);
    if (!array)
        return CF_ENOMEM;
    memcpy(array_ptr, &array, sizeof(array));
    *cap = n;
    return 0;
}

void *cf__malloc_aligned(size_t align, size_t size)
{
    if (cf__fault(CF__FAULT_ALLOC))
        return NULL;
    void *p;
    return posix_memalign(&p, align, size) == 0 ? p : NULL;
}

void *cf__calloc_aligned(size_t align, size_t size)
{
    if (cf__fault(CF__FAULT_ALLOC))
        return NULL;
    void *p;
    if (posix_memalign(&p, align, size) != 0)
        return NULL;
    memset(p, 0, size);
    return p;
}

void cf__free(void *p)
{
    free(p);
}

char *cf__strdup(const char *s)
{
    size_t len = strlen(s) + 1;
    char *copy = cf__malloc(len);
    if (copy)
        memcpy(copy, s, len);
    return copy;
}

cf__bytes *cf__bytes_new(const void *data, size_t len)
{
    if (len > SIZE_MAX - sizeof(cf__bytes))
        return NULL;
    cf__block *block = cf__block_ref_frozen(data, len);
    cf__bytes *b = cf__malloc(sizeof(cf__bytes) + (block ? 0 : len));
    if (!b) {
        if (block)
            cf__block_unref(block);
        return NULL;
    }
    *b = (cf__bytes){.len = len, .data = block ? data : b->inline_data, .block = block};
    if (len && !block)
        memcpy(b->inline_data, data, len);
    return b;
}

void cf__bytes_free(cf__bytes *b)
{
    if (b && b->block)
        cf__block_unref(b->block);
    cf__free(b);
}
