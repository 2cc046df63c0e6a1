/** @file
 * cfutures: byte blocks in shared memory, to pass large arguments and results to and from
 * process-pool workers without copying them.
 *
 * A bytes task's argument is normally copied at submit and its result copied back (task.h,
 * executor.h). For payloads of megabytes those copies dominate. A block from cf_bytes_alloc()
 * is ordinary memory of this process that another process can map, so:
 *
 *   - Arguments. Fill a block, freeze it with cf_bytes_freeze(), and pass it (or any range in
 *     it) to cf_executor_submit_bytes() or cf_executor_map_bytes(): a range of a frozen block
 *     larger than 64 KiB is passed by reference, not copied. The process-pool worker maps the
 *     very pages; a thread-pool task reads them in place. Freezing makes the block read-only for
 *     good, in every process, which is what makes sharing it safe: nobody, the caller included,
 *     can change an argument under a task that reads it. The same frozen block can be submitted
 *     any number of times, to any executors, and freed as soon as the submits returned: the
 *     library keeps what the tasks still need.
 *
 *   - Results. A task (in a worker process or on a thread) may return a block as its result:
 *     allocate it with cf_bytes_alloc(), fill it, and store it (or a range in it, with the length)
 *     in `*result` instead of a malloc()ed buffer. The library takes it over. From a worker it
 *     reaches the parent without a copy: the worker freezes it and passes it, and the parent maps
 *     it read-only; cf_future_result_bytes() then returns a pointer into that mapping, valid as
 *     long as the future. (Large results in malloc()ed buffers are copied once, into shared
 *     memory, by the worker, and mapped the same way.)
 *
 * Trust. A process-pool worker is not trusted (docs/reliability.md): the parent accepts a
 * result it maps in place only if it is sealed against every change (F_SEAL_WRITE, SHRINK,
 * GROW), so the worker can neither change the bytes while the caller reads them nor make the
 * mapping fault by shrinking the file; anything else breaks the pool.
 *
 * Cost. A block is a memfd mapped into the process: allocating one costs a few system calls and
 * one descriptor while it lives (until freed, or until the future holding a result is released,
 * for results mapped from a worker, which keep no descriptor), and its pages are faulted in
 * like any fresh memory. Use blocks for payloads of tens of kilobytes and more; below 64 KiB
 * arguments and results travel inline in the pool's shared rings anyway.
 *
 * fork(): a child does not inherit writable blocks (their pages are not mapped there, so that
 * the block can still be frozen); it inherits frozen ones, read-only.
 */
#ifndef CFUTURES_BYTES_H
#define CFUTURES_BYTES_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Allocates a block of `len` bytes of shared memory, zero-filled and writable, and stores its
 * address (page-aligned) in `*out`. The block stays valid until cf_bytes_free(), or until a
 * task that returned it as its result gave it to the library.
 * Returns 0; CF_EINVAL (NULL out, `len` 0 or above PTRDIFF_MAX); CF_ENOMEM; CF_EMFILE (no
 * descriptor left). On error `*out` is NULL. Thread-safe. */
int cf_bytes_alloc(void **out, size_t len);

/** Freezes the block at `data` (an address cf_bytes_alloc() returned): it becomes read-only,
 * for good, in this process (a write faults) and in every process it reaches. From now on a
 * range of it larger than 64 KiB given to cf_executor_submit_bytes() or cf_executor_map_bytes()
 * is passed by reference. No thread may be writing to the block while it is frozen. Freezing a
 * frozen block does nothing.
 * Returns 0; CF_EINVAL (`data` is not a block's address, or the block was freed); CF_ENOMEM.
 * Thread-safe. */
int cf_bytes_freeze(void *data);

/** Releases the caller's block at `data` (an address cf_bytes_alloc() returned): the memory is
 * returned once no task still uses it (a submitted frozen block stays mapped until its tasks are
 * done). NULL is ignored. Returns 0, or CF_EINVAL if `data` is not a live block's address (a
 * second free, or a block given to the library as a task's result). Thread-safe. */
int cf_bytes_free(void *data);

#ifdef __cplusplus
}
#endif
#endif
