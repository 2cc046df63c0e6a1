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
 * created: a fresh image of the running program (/proc/self/exe, opened once per process) that
 * the library intercepts in a constructor before main() runs. Workers are forked from that
 * single-threaded server on demand, so the library never forks the caller's multithreaded
 * process. Consequences:
 *   - Workers start as a fresh program image. main() never runs there, and nothing the parent
 *     did at run time (globals it set, files it opened, threads, heap) is visible. Do per-worker
 *     setup in the initializer.
 *   - A task function is sent as (module, offset): it must live in the executable or in a
 *     shared library; the worker finds the same module (loading it with dlopen() if the parent
 *     loaded it at run time). A pointer outside every loaded module is rejected with CF_EINVAL.
 *   - The library must be linked into the program (not only dlopen()ed), so that its
 *     constructor runs in the fresh image.
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
 * fails with that error (nothing is queued); if later no worker can be started for work already
 * accepted, the pool breaks as above. A future whose task or result cannot be moved between the
 * processes for lack of memory or descriptors fails with CF_ENOMEM or CF_EMFILE.
 *
 * Lifetime. Workers and the fork server exit when the pool is shut down and freed; if the
 * program exits or is killed without doing so, they notice and exit too (running work is lost).
 * In a child of the caller's own fork(), an inherited pool returns CF_EFORKED; create a new one.
 */
#ifndef CFUTURES_PROCESS_POOL_H
#define CFUTURES_PROCESS_POOL_H

#include <stddef.h>
#include <stdint.h>

#include "executor.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Pool options. Zero-initialise ({0}), then set what you need: every zero field means
 * "default". The struct grows only into its reserved tail (docs/abi.md). */
typedef struct cf_process_pool_options {
    /** Most worker processes alive at once. 0: the number of usable CPUs. At most 4096. */
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
    /** Reserved for fields added by later releases (docs/abi.md): must be zero, which a
     * zero-initialised struct gives; a non-zero slot makes the constructor return CF_EINVAL. */
    uint64_t reserved[16];
} cf_process_pool_options;

/** Creates a process pool and starts its fork server (workers start on demand, at most one per
 * pending task). `options` may be NULL for all defaults. On success stores the executor in
 * `*out` and returns 0.
 * Errors: CF_EINVAL (NULL out; max_workers above 4096; an initializer outside every loaded
 * module; initializer_arg NULL with a non-zero length; a non-zero reserved slot); CF_ENOMEM;
 * CF_EMFILE; CF_EAGAIN (no process or thread could be started); CF_ESYSTEM (the program image could
 * not be re-executed, for example without /proc, or when the library was loaded with dlopen()).
 * Thread-safe. */
int cf_process_pool_new(cf_executor **out, const cf_process_pool_options *options);

/** Stops the pool at once, like Python 3.14's terminate_workers(): shuts it down without waiting,
 * cancels every queued future, and sends SIGTERM to every worker. Futures of the tasks those
 * workers were running finish with CF_EBROKEN. Later submits return CF_ESHUTDOWN. Harmless on a
 * pool that is already broken or has no worker. Call cf_executor_shutdown(ex, true, false) or
 * cf_executor_free() afterwards to wait for the processes to be gone.
 * Returns 0, CF_EINVAL (NULL or not a process pool), CF_EFORKED. Thread-safe. */
int cf_process_pool_terminate(cf_executor *executor);

/** As cf_process_pool_terminate() with SIGKILL (Python's kill_workers()). */
int cf_process_pool_kill(cf_executor *executor);

#ifdef __cplusplus
}
#endif
#endif
