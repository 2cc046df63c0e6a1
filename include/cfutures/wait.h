/** @file
 * cfutures: waiting on many futures at once.
 *
 * cf_wait() blocks until a condition over a set of futures holds; the as_completed iterator
 * yields futures one by one as they finish. Both accept futures from any mix of executors and
 * plain cf_future_new() futures. Neither polls: each installs a waiter on every pending future
 * and sleeps until a completion wakes it. Cost is O(n) per call.
 *
 * Cancelled futures count as done everywhere, as soon as cf_future_cancel() succeeds. (Python
 * reports a cancelled future to wait() only after its executor has acknowledged it, which can
 * leave wait() blocked forever; cfutures deliberately does not reproduce that.)
 */
#ifndef CFUTURES_WAIT_H
#define CFUTURES_WAIT_H

#include <stdbool.h>
#include <stddef.h>

#include "future.h"

#ifdef __cplusplus
extern "C" {
#endif

/** When cf_wait() returns. */
typedef enum cf_return_when {
    CF_ALL_COMPLETED = 0,   /**< every future is done */
    CF_FIRST_COMPLETED = 1, /**< at least one future is done */
    CF_FIRST_EXCEPTION = 2  /**< one future finished with an error, or all are done */
} cf_return_when;

/** Waits until the `when` condition holds over the `n` futures in `fs`, or `timeout` seconds
 * pass. On return, `done[i]` (if `done` is not NULL; an array of n) tells whether fs[i] is done,
 * and `*n_done` (if not NULL) counts the true entries. A future may appear more than once.
 * Over no futures (n == 0; `fs` may then be NULL) every condition holds: it returns 0 at once
 * with *n_done 0, as Python's wait([]).
 * Returns 0 if the condition holds, CF_ETIMEDOUT if the timeout passed first (the split in
 * `done` is valid either way), CF_EINVAL (fs NULL with n > 0, n >= 2^30, a NULL entry, unknown
 * `when`, NaN timeout), CF_ENOMEM.
 * Thread-safe: any number of threads may wait on overlapping sets. */
int cf_wait(size_t *n_done, bool *done, cf_future *const *fs, size_t n, cf_return_when when,
            double timeout);

/** An iterator that yields futures as they complete. */
typedef struct cf_as_completed cf_as_completed;

/** Creates an iterator over the `n` futures in `fs` with an overall deadline of `timeout` seconds
 * from now (CF_FOREVER for none). Duplicates are yielded once. The iterator holds a reference
 * to every future until it yields it. n == 0 (`fs` may then be NULL) gives an iterator whose
 * first cf_as_completed_next() returns CF_EOF, as Python's as_completed([]). Returns 0;
 * CF_EINVAL (NULL out, fs NULL with n > 0, n >= 2^30, a NULL entry, NaN timeout); CF_ENOMEM.
 * Thread-safe. */
int cf_as_completed_new(cf_as_completed **out, cf_future *const *fs, size_t n, double timeout);

/** Yields the next future to complete: futures already done when the iterator was created come
 * first (in input order), then the others in completion order. Returns 0 and stores the future
 * in `*out` (borrowed: valid while the caller holds its own reference, which it does for futures
 * it passed in); CF_ETIMEDOUT if the deadline passed with futures still pending (see
 * cf_as_completed_remaining(); a later call may still yield futures that completed since);
 * CF_EOF when every future has been yielded; CF_EINVAL for NULL arguments. Not thread-safe:
 * one thread iterates. */
int cf_as_completed_next(cf_future **out, cf_as_completed *it);

/** The number of futures not yet yielded. 0 for NULL. */
size_t cf_as_completed_remaining(const cf_as_completed *it);

/** Frees the iterator and releases its references. Futures are not cancelled. NULL is ignored.
 * Safe while futures are completing concurrently. */
void cf_as_completed_free(cf_as_completed *it);

#ifdef __cplusplus
}
#endif
#endif
