/** @file
 * cfutures: the thread-pool executor.
 *
 * A pool of POSIX threads that run submitted tasks in submission order. Threads are started on
 * demand, up to max_workers, only for queued tasks that the threads already started cannot take
 * at once; an idle thread is always reused first. Beyond Python's ThreadPoolExecutor (and like
 * Java's ThreadPoolExecutor) the queue can be bounded, with a policy for a full queue, and
 * surplus threads can exit after an idle timeout.
 *
 * The returned cf_executor is used with executor.h. All functions are thread-safe.
 */
#ifndef CFUTURES_THREAD_POOL_H
#define CFUTURES_THREAD_POOL_H

#include <stddef.h>
#include <stdint.h>

#include "executor.h"

#ifdef __cplusplus
extern "C" {
#endif

/** What cf_executor_submit() does when a bounded queue (max_queue > 0) is full. */
typedef enum cf_queue_policy {
    CF_QUEUE_BLOCK = 0,      /**< wait for room, at most queue_timeout; then CF_ETIMEDOUT */
    CF_QUEUE_REJECT = 1,     /**< return CF_EFULL at once */
    CF_QUEUE_CALLER_RUNS = 2 /**< run the task in the submitting thread before returning */
} cf_queue_policy;

/** Pool options. Zero-initialise ({0}), then set what you need: every zero field means
 * "default". The struct grows only into its reserved tail (docs/abi.md). */
typedef struct cf_thread_pool_options {
    /** Most threads that run at once. 0: min(32, usable CPUs + 4), as Python. At most
     * CF_MAX_WORKERS (4096). */
    unsigned max_workers;
    /** With idle_timeout: the number of threads kept alive when idle. 0: none kept. */
    unsigned min_workers;
    /** Threads are named "<prefix>_<n>" (truncated to Linux's 15 characters, keeping the
     * number). NULL: "cfpool<k>" where k counts pools in this process. Copied. */
    const char *thread_name_prefix;
    /** Called once in every new thread before it runs any task; a non-zero return breaks the
     * pool: every queued future fails with CF_EBROKEN and later submits return CF_EBROKEN.
     * NULL: none. */
    int (*initializer)(void *arg);
    /** The argument of initializer, passed unchanged to every call. */
    void *initializer_arg;
    /** Stack size of each thread in bytes. 0: the system default. */
    size_t stack_size;
    /** Most tasks waiting to start. 0: unbounded. */
    size_t max_queue;
    /** What a submit does when the bounded queue is full. */
    cf_queue_policy queue_policy;
    /** With CF_QUEUE_BLOCK: seconds a submit waits for room. 0 or negative: no limit. */
    double queue_timeout;
    /** Seconds an idle thread waits for work before exiting (while more than min_workers
     * threads remain). 0: threads never exit before shutdown. */
    double idle_timeout;
    /** What happens to pending work when the program exits (main returns, or exit() is
     * called) while the pool is alive. false (the default): nothing waits for it; queued tasks
     * never run and running ones are cut off wherever they are when the process ends, silently,
     * as with any thread in C. true: as Python's ThreadPoolExecutor at interpreter exit, an
     * atexit handler (installed when the first such pool is created) shuts the pool down
     * (later submits return CF_ESHUTDOWN) and waits until every task already queued or running
     * has finished, before the atexit handlers registered before the pool run. Not at _exit(),
     * abort() or a fatal signal. A task that never ends then keeps the program from exiting.
     * exit() called from one of the pool's own tasks waits for the others. A pool created once
     * the program is exiting is not waited for; nor are a forked child's inherited pools. */
    bool finish_at_exit;
    /** Reserved for fields added by later releases (docs/abi.md): must be zero, which a
     * zero-initialised struct gives; a non-zero slot makes the constructor return CF_EINVAL. */
    uint64_t reserved[15];
} cf_thread_pool_options;

/** A snapshot of a thread pool's counters, for monitoring and tests. The library fills the whole
 * struct; counters added by later releases come out of the reserved tail, which reads zero from
 * a library that predates them (docs/abi.md). */
typedef struct cf_thread_pool_stats {
    unsigned threads; /**< threads alive now */
    unsigned idle;    /**< of those, waiting for work */
    size_t queued;    /**< tasks waiting to start (cancelled ones included until drained) */
    unsigned long long threads_started; /**< threads started since creation */
    unsigned long long tasks_completed; /**< tasks the pool's threads ran to completion */
    /** Reserved for counters added by later releases (docs/abi.md); zero for now. */
    uint64_t reserved[16];
} cf_thread_pool_stats;

/** Creates a thread pool. `options` may be NULL for all defaults. No thread starts until the
 * first submit. On success stores the executor in `*out` and returns 0.
 * Errors: CF_EINVAL (NULL out; max_workers above CF_MAX_WORKERS; an unknown queue_policy;
 * min_workers > max_workers, the default
 * max_workers included; a NaN or negative idle_timeout; a NaN queue_timeout; a non-zero
 * stack_size below PTHREAD_STACK_MIN; a non-zero reserved slot), CF_ENOMEM. Thread-safe. */
int cf_thread_pool_new(cf_executor **out, const cf_thread_pool_options *options);

/** Fills `*out` with the options the pool runs with, defaults resolved: max_workers is the real
 * limit (never 0), thread_name_prefix the prefix its threads are named with (borrowed: valid
 * until the pool is freed), stack_size the size its threads get (the system default when 0 was
 * given); other fields as given at creation. The reserved tail is zero. Returns 0; CF_EINVAL if
 * an argument is NULL or `executor` is not a thread pool; CF_EFORKED in a forked child.
 * Thread-safe. */
int cf_thread_pool_get_options(cf_thread_pool_options *out, const cf_executor *executor);

/** Fills `*out` with the current counters of a thread pool. Returns 0; CF_EINVAL if an argument
 * is NULL or `executor` is not a thread pool; CF_EFORKED in a forked child. Thread-safe. */
int cf_thread_pool_get_stats(cf_thread_pool_stats *out, const cf_executor *executor);

#ifdef __cplusplus
}
#endif
#endif
