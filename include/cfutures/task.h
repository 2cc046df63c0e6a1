/** @file
 * cfutures: what a task is, and how it reports success or failure.
 *
 * A task is a C function plus an argument. It runs once, on a pool thread (or, for the process
 * pool, in a worker process). It succeeds by returning 0 and storing its result, or fails by
 * returning a non-zero code. The future that represents the task keeps the outcome:
 *
 *     static int parse(void *arg, void **result)
 *     {
 *         struct doc *d = parse_file(arg);
 *         if (!d)
 *             return cf_task_fail(-errno, "cannot parse %s", (char *)arg);
 *         cf_task_set_result_dtor(doc_free);   // the future frees the result with it
 *         *result = d;
 *         return 0;
 *     }
 *
 * Failure is signalled only by the return value: a task that returns 0 has succeeded even if it
 * called cf_task_fail() (the message is then dropped). The code a task returns is kept verbatim
 * and given back by cf_future_exception(); cf_future_result() returns CF_ETASK for any failure.
 */
#ifndef CFUTURES_TASK_H
#define CFUTURES_TASK_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/** A destructor for a result value; called once, when the last reference to the future that
 * holds the value is released. */
typedef void (*cf_dtor)(void *value);

/** A task on pointers. `arg` is passed through unchanged. `*result` is NULL on entry; store the
 * result there and return 0, or return a non-zero code to fail. */
typedef int (*cf_fn)(void *arg, void **result);

/** A task on bytes: the argument is a copy of the submitted bytes, owned by the library and valid
 * during the call. On success, store in `*result` a buffer allocated with malloc() (or NULL) and
 * its size in `*result_len`, or a shared block (cf_bytes_alloc(), bytes.h) or a range of one,
 * which then travels without a copy; the library takes ownership of it. Bytes tasks run on any
 * executor, including the process pool, where the argument and result cross the process
 * boundary. */
typedef int (*cf_bytes_fn)(const void *arg, size_t arg_len, void **result, size_t *result_len);

/** Inside a running task: attach a printf-style message to a failure and return `code`, so that
 * `return cf_task_fail(code, "...", ...);` reads naturally. The message is copied (truncated to
 * 4 KiB). If `code` is 0 it is replaced by CF_ETASK. Outside a task (or if memory is short) the
 * message is dropped and only the code is returned. Thread-safe: it acts on the calling thread's
 * current task. */
int cf_task_fail(int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/** Inside a running pointer task: set the destructor the future calls on the result value when
 * the future is freed. Outside a task it has no effect. Thread-safe (acts on the calling
 * thread's current task). The explicit form, where the submitter names the destructor, is
 * cf_executor_submit_dtor() (and cf_loop_task_options.result_dtor for loop tasks); a call here
 * overrides it. */
void cf_task_set_result_dtor(cf_dtor dtor);

#ifdef __cplusplus
}
#endif
#endif
