/** @file
 * cfutures: the process-pool executor.
 *
 * Runs bytes tasks (cf_bytes_fn, see task.h) in worker processes, like Python's
 * ProcessPoolExecutor. The returned cf_executor is used with executor.h: submit_bytes, map_bytes,
 * shutdown and free all work, and its futures are ordinary cf_future objects that mix freely
 * with thread-pool futures in cf_wait() and as_completed. cf_executor_submit() and
 * cf_executor_map() (pointer tasks) return CF_ENOTSUP: a pointer means nothing in another
 * process.
 *
 * Process model (see docs/process_pool.md). Each pool starts a private fork server when it is
 * created, and workers are forked from that single-threaded server on demand, so the library
 * never forks workers from the caller's multithreaded process. The start method
 * (cf_process_start) says what the server is: by default a fresh image of the running program
 * (/proc/self/exe) that the library intercepts in a constructor before main() runs, or, when the
 * library was loaded with dlopen() (a plugin, a language binding), the cfutures-worker helper
 * program; or a fork of a single-threaded caller. Consequences:
 *   - With a fresh image (or the helper), main() never runs in the workers, and nothing the
 *     parent did at run time (globals it set, files it opened, threads, heap) is visible. Do
 *     per-worker setup in the initializer. (With CF_PROCESS_START_FORK, workers see the
 *     program's state as it was when the pool was created.)
 *   - A task function is sent as (module, offset): it must live in the executable or in a
 *     shared library (in a shared library with the helper); the worker finds the same module
 *     (loading it with dlopen() if the parent loaded it at run time). A pointer outside every
 *     loaded module is rejected with CF_EINVAL.
 *   - Arguments and results are copied as bytes; payloads above 64 KiB travel in shared memory
 *     (a sealed memfd), so there is no size limit beyond memory.
 *
 * States. A future becomes RUNNING when it is dispatched to a worker (up to a few tasks per
 * worker are dispatched ahead), not when the worker starts it; from then on it cannot be
 * cancelled, as in Python. Done-callbacks of completed tasks run on the pool's manager thread.
 *
 * Failure. If a worker dies (crash, signal, exit() or _exit() inside a task, a failed
 * initializer, a malformed message) or the pool's fork server dies, the pool is broken: a submit
 * that would need a new worker then fails with CF_EBROKEN, and every running and pending future
 * finishes with CF_EBROKEN and a message naming the worker's pid and exit status, and later
 * submits return CF_EBROKEN.
 *
 * Resources. Besides the codes of executor.h, submit and map return CF_EMFILE when no
 * descriptor is left for a new worker's socket or a large argument's memfd, and CF_EINVAL for a
 * function outside every loaded module. A submit that finds no worker and cannot start one
 * fails with that error (nothing is queued). When the system refuses a new process
 * (RLIMIT_NPROC, a container's pids.max, memory), the pool runs on the workers it has and tries
 * again later (backing off from 10 ms to 1 s); only when it has no worker at all and 8 rounds of
 * tries failed (about 1.3 s) does it break as above, with a message saying why. A future whose task
 * or result cannot be moved between the processes for lack of memory or descriptors fails with
 * CF_ENOMEM or CF_EMFILE.
 *
 * Lifetime. Workers and the fork server exit when the pool is shut down and freed; if the
 * program exits or is killed without doing so, they notice and exit too (running work is lost).
 * In a child of the caller's own fork(), an inherited pool returns CF_EFORKED; create a new one.
 */
#ifndef CFUTURES_PROCESS_POOL_H
#define CFUTURES_PROCESS_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "executor.h"

#ifdef __cplusplus
extern "C" {
#endif

/** How a process pool starts the fork server that forks its workers (Python's start methods,
 * `multiprocessing.get_context()`). See docs/process_pool.md, "Start methods". */
typedef enum cf_process_start {
    /** The default: CF_PROCESS_START_PROGRAM when the library was loaded with the program (it is
     * linked into it, directly or through a library the program links), else
     * CF_PROCESS_START_HELPER (a plugin, a language binding). Never re-runs the host's main().
     * Fails with CF_ENOTSUP when neither applies (the helper program was not found). */
    CF_PROCESS_START_AUTO = 0,
    /** A fresh image of the running program (/proc/self/exe) that the library intercepts before
     * main() runs. Needs the library loaded with the program; refused (CF_ENOTSUP) when it was
     * loaded with dlopen() and in setuid, setgid or file-capability programs. Task functions may
     * live in the program or in any shared library. */
    CF_PROCESS_START_PROGRAM = 1,
    /** The helper program installed with the library (cfutures-worker, in libexecdir; in a build
     * tree, next to the library), or the `worker_program` option. It dlopen()s the shared
     * library that holds each task function: task functions must live in shared libraries, not
     * in the main program (submit returns CF_EINVAL for those). For plugins and language
     * bindings. */
    CF_PROCESS_START_HELPER = 2,
    /** fork() of the calling process when the pool is created: workers start from a copy of
     * the program's state at that moment (its globals, heap, loaded modules). Safe only while
     * the process is single-threaded: refused with CF_EDEADLK when other threads exist, unless
     * `fork_with_threads` is set (a lock held by another thread at that moment stays held in
     * the workers forever). */
    CF_PROCESS_START_FORK = 3,
} cf_process_start;

/** Pool options. Zero-initialise ({0}), then set what you need: every zero field means
 * "default". The struct grows only into its reserved tail (docs/abi.md). */
typedef struct cf_process_pool_options {
    /** Most worker processes alive at once. 0: the number of usable CPUs. At most
     * CF_MAX_WORKERS (4096). */
    unsigned max_workers;
    /** Called once in every worker before it runs any task, with a copy of the
     * `initializer_arg_len` bytes at `initializer_arg` (copied when the pool is created). It may
     * use cf_task_fail() to attach a message. A non-zero return breaks the pool: every pending
     * and later future fails with CF_EBROKEN. The function follows the same rule as task
     * functions (it must live in a loaded module). NULL: none. */
    int (*initializer)(const void *arg, size_t len);
    /** The bytes passed (copied) to every worker's initializer. NULL: none (then
     * initializer_arg_len must be 0). */
    const void *initializer_arg;
    /** The number of bytes at initializer_arg. */
    size_t initializer_arg_len;
    /** A worker exits after running this many tasks and is replaced by a fresh one when work
     * remains. 0: workers live until shutdown. */
    unsigned max_tasks_per_child;
    /** Seconds a worker has to exit once told to, before it gets SIGKILL: after
     * cf_process_pool_terminate()'s SIGTERM, or at shutdown once it has nothing left to run (a
     * stopped or uncooperative worker cannot hold the pool). 0: 5 seconds. Negative or NaN:
     * CF_EINVAL. */
    double exit_timeout;
    /** How the pool starts its fork server. 0: CF_PROCESS_START_AUTO. */
    cf_process_start start_method;
    /** With CF_PROCESS_START_HELPER (or AUTO choosing it): the helper program to run, a program
     * that calls cf_process_pool_serve() first (copied). NULL: the installed cfutures-worker. */
    const char *worker_program;
    /** With CF_PROCESS_START_FORK: fork even though other threads exist. false: refuse with
     * CF_EDEADLK. */
    bool fork_with_threads;
    /** Reserved for fields added by later releases (docs/abi.md): must be zero, which a
     * zero-initialised struct gives; a non-zero slot makes the constructor return CF_EINVAL. */
    uint64_t reserved[12];
} cf_process_pool_options;

/** A snapshot of a process pool's counters, for monitoring and tests (cf_process_pool_get_stats).
 * The library fills the whole struct; counters added by later releases come out of the reserved
 * tail, which reads zero from a library that predates them (docs/abi.md). */
typedef struct cf_process_pool_stats {
    unsigned workers; /**< worker processes alive now (forked and not gone) */
    unsigned busy;    /**< of those, with tasks dispatched to them and not answered yet */
    size_t queued;    /**< tasks waiting to be dispatched to a worker */
    size_t running;   /**< tasks dispatched to workers (their futures are RUNNING), not answered */
    unsigned long long workers_started;  /**< worker processes started since creation */
    unsigned long long workers_retired;  /**< workers that exited after max_tasks_per_child tasks */
    unsigned long long workers_replaced; /**< workers started to take the place of a retired one */
    unsigned long long spawns_failed;    /**< worker forks that failed (a process limit, memory):
                                              the pool carried on and tried again later */
    unsigned long long tasks_completed;  /**< tasks whose outcome (success or failure) came back
                                              from a worker */
    bool broken;                         /**< the pool is broken: submits fail with CF_EBROKEN */
    /** Reserved for counters added by later releases (docs/abi.md); zero for now. */
    uint64_t reserved[16];
} cf_process_pool_stats;

/** Creates a process pool and starts its fork server (workers start on demand, at most one per
 * pending task). `options` may be NULL for all defaults. On success stores the executor in
 * `*out` and returns 0.
 * Errors: CF_EINVAL (NULL out; max_workers above CF_MAX_WORKERS; an initializer outside every
 * loaded module, or in the main program with the helper; initializer_arg NULL with a non-zero
 * length; a negative or NaN exit_timeout; an unknown start_method; a worker_program that is not
 * an executable file; a non-zero reserved slot); CF_ENOMEM;
 * CF_EMFILE; CF_EAGAIN (no process or thread could be started); CF_ESYSTEM (the fork server
 * could not start: no /proc, a helper program that does not answer); CF_ENOTSUP (no start method
 * applies: CF_PROCESS_START_PROGRAM asked for, or chosen by AUTO, in a program that loaded the
 * library with dlopen() or is setuid, setgid or file-capability, and no helper program found for
 * AUTO: set start_method or worker_program); CF_EDEADLK (CF_PROCESS_START_FORK while other threads
 * exist, without fork_with_threads). Thread-safe. */
int cf_process_pool_new(cf_executor **out, const cf_process_pool_options *options);

/** Stops the pool at once, like Python 3.14's terminate_workers(): shuts it down without waiting,
 * cancels every queued future, and sends SIGTERM, then SIGCONT (for a stopped worker), to every
 * worker; a worker still alive after the exit_timeout option (5 s by default) gets SIGKILL.
 * Futures of the tasks those workers were running finish with CF_EBROKEN. Later submits return
 * CF_ESHUTDOWN. Harmless on a pool that is already broken or has no worker. Call
 * cf_executor_shutdown(ex, true, false) or cf_executor_free() afterwards to wait for the processes
 * to be gone. Returns 0, CF_EINVAL (NULL or not a process pool), CF_EFORKED. Thread-safe. */
int cf_process_pool_terminate(cf_executor *executor);

/** As cf_process_pool_terminate() with SIGKILL (Python's kill_workers()). */
int cf_process_pool_kill(cf_executor *executor);

/** Fills `*out` with a snapshot of the pool's counters, taken under the pool's lock (so they are
 * consistent with each other). Returns 0; CF_EINVAL if an argument is NULL or `executor` is not
 * a process pool; CF_EFORKED in a forked child. Thread-safe; it takes the pool's lock briefly. */
int cf_process_pool_get_stats(cf_process_pool_stats *out, const cf_executor *executor);

/** Fills `*out` with the options the pool runs with, defaults resolved: max_workers is the real
 * limit (never 0), exit_timeout the real one in seconds (5 when 0 was given), start_method the
 * method in use (never CF_PROCESS_START_AUTO); initializer_arg points to the pool's copy of the
 * bytes (borrowed: valid until the pool is freed; NULL when there are none); worker_program as
 * given (NULL: the installed helper, or not a helper start). The reserved tail is zero. Returns
 * 0; CF_EINVAL if an argument is NULL or `executor` is not a process pool; CF_EFORKED in a forked
 * child. Thread-safe; takes no lock. */
int cf_process_pool_get_options(cf_process_pool_options *out, const cf_executor *executor);

/** The main() of a helper program (CF_PROCESS_START_HELPER): call it first thing, with main()'s
 * arguments. A pool starts its helper as `program --cfutures-forkserver` with its channel on
 * descriptor 3; the call then serves the pool as its fork server and never returns (the process
 * exits when the pool is done). Called any other way (run by hand), it returns CF_EINVAL at once.
 * A channel that the parent process did not make, as this process's user, makes it exit at once
 * (status 127). cfutures-worker, installed with the library, is `return
 * cf_process_pool_serve(argc, argv) ? 2 : 0;` with a message; a language binding or an
 * application that ships its own program can do the same and name it in worker_program. */
int cf_process_pool_serve(int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif
