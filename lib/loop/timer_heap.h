/* A 4-ary min-heap of timers keyed (deadline, sequence number). Not installed.
 *
 * The sequence number makes equal deadlines pop in insertion order, so timers are FIFO among
 * themselves (asyncio's heapq leaves that order undefined). Four children per node halve the
 * depth of a binary heap and keep siblings in one cache line, which is what a pop touches.
 * The heap stores opaque items; it never frees them. Not thread-safe. */
#ifndef CFUTURES_TIMER_HEAP_H
#define CFUTURES_TIMER_HEAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct cf__timer_entry {
    int64_t when; /* deadline, CLOCK_MONOTONIC ns */
    uint64_t seq;
    void *item;
} cf__timer_entry;

typedef struct cf__timer_heap {
    cf__timer_entry *v;
    size_t n;
    size_t cap;
} cf__timer_heap;

/* Inserts an entry in O(log n). Returns 0 or CF_ENOMEM (the heap is unchanged). */
int cf__timer_heap_push(cf__timer_heap *h, int64_t when, uint64_t seq, void *item);

/* The entry with the smallest key, or NULL if the heap is empty. */
static inline const cf__timer_entry *cf__timer_heap_top(const cf__timer_heap *h)
{
    return h->n ? &h->v[0] : NULL;
}

/* Removes the smallest entry (the heap must not be empty) and returns its item. O(log n). */
void *cf__timer_heap_pop(cf__timer_heap *h);

/* Removes every entry whose item `keep` rejects (calling it once per entry, in no particular
 * order), then restores the heap order in O(n). Returns the number removed. */
size_t cf__timer_heap_filter(cf__timer_heap *h, bool (*keep)(void *item, void *ctx), void *ctx);

/* Frees the heap's storage (not the items) and leaves it empty. */
void cf__timer_heap_free(cf__timer_heap *h);

#endif
