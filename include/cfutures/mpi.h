/** @file
 * cfutures: an executor on MPI ranks (libcfutures-mpi; pkg-config cfutures-mpi).
 *
 * mpi4py.futures for C. Bytes tasks (cf_bytes_fn, task.h) run on worker ranks of an MPI job; the
 * returned cf_executor is used with executor.h like any other (submit_bytes, map_bytes, shutdown,
 * free), and its futures mix with thread- and process-pool futures in cf_wait(), as_completed,
 * done-callbacks, the event loop (cf_loop_run_in_executor_bytes) and the adapters. Pointer tasks
 * (cf_executor_submit, cf_executor_map) return CF_ENOTSUP. It is built only on the public
 * executor interface (executor_impl.h) and the public function naming (fn_name.h).
 *
 * Two ways to start, as in mpi4py.futures. Every rank runs the same program and makes the same
 * call; it returns an executor on the client and serves tasks everywhere else:
 *
 *     MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
 *     cf_executor *ex;
 *     int rc = cf_mpi_executor_new(&ex, MPI_COMM_WORLD, NULL);   // or cf_mpi_executor_spawn()
 *     if (rc == 0 && ex) {
 *         ... submit, map, wait ...                // the client (rank 0)
 *         cf_executor_free(ex);                    // every worker returns from its call
 *     }                                            // workers: rc == 0 and ex == NULL here
 *     MPI_Finalize();
 *
 *   - cf_mpi_executor_new(): a job started with `mpirun -n N`: rank `root` of `comm` is the client
 *     and the N-1 other ranks serve (mpi4py's MPICommExecutor / `python -m mpi4py.futures`).
 *   - cf_mpi_executor_spawn(): one process starts `workers` worker processes with
 *     MPI_Comm_spawn() (mpi4py's MPIPoolExecutor). In a spawned worker the same call serves its
 *     parent and returns NULL.
 *
 * The program initialises MPI (MPI_THREAD_MULTIPLE on the client: a manager thread makes the
 * MPI calls) and finalises it after cf_executor_free(). Functions are named as by the process
 * pool: (module, offset), with each module's build-id checked on the worker (fn_name.h), so
 * every rank must run the same build. Tasks start in submission order on whichever worker has
 * room, with up to `window` tasks in flight per worker; a future is RUNNING from its dispatch.
 * Done-callbacks run on the client's manager thread.
 *
 * Failure: a task's error code and cf_task_fail() message come back to its future. A worker that
 * dies (detected on the client's machine through the worker's pid) breaks the executor: every
 * pending and running future fails with CF_EBROKEN. Whether the client survives a dead rank at
 * all is the MPI runtime's decision: Open MPI's mpirun aborts the whole job unless started with
 * --enable-recovery (docs/mpi.md).
 */
#ifndef CFUTURES_MPI_H
#define CFUTURES_MPI_H

#include <mpi.h>
#include <stdint.h>

#include "executor.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The most tasks in flight per worker. */
#define CF_MPI_WINDOW_MAX 1024

/** Options. Zero-initialise, then set what you need: every zero field means "default". Only the
 * client's options matter, except `root`, which every rank must pass alike. */
typedef struct cf_mpi_options {
    /** Tasks dispatched to one worker ahead of its results, so that a burst does not pay one
     * round trip per task. 0: 16. At most CF_MPI_WINDOW_MAX. */
    unsigned window;
    /** cf_mpi_executor_new(): the client's rank in `comm`. 0: rank 0. */
    int root;
    /** cf_mpi_executor_spawn(): the program to start. NULL: this program (/proc/self/exe). Another
     * program must call cf_mpi_executor_spawn() too, and its task functions must live in shared
     * libraries that both load (the main programs differ). Copied. */
    const char *command;
    /** cf_mpi_executor_spawn(): the arguments after the program name, NULL-terminated. NULL: none
     * (MPI_ARGV_NULL). Copied. */
    char *const *argv;
    uint64_t reserved[16]; /**< must be zero (docs/abi.md) */
} cf_mpi_options;

/** Collective over `comm`: every rank calls it with the same `root`. On the client (rank `root`)
 * stores a new executor in `*out` whose workers are the other ranks of `comm`. On every other rank
 * it serves tasks until the client's executor is shut down, then stores NULL in `*out` and returns
 * 0. `options` may be NULL for all defaults. MPI must be initialised (on the client with
 * MPI_THREAD_MULTIPLE); `comm` is duplicated, so the program may keep using it.
 * Returns 0; CF_EINVAL (NULL out; a root outside the communicator; a communicator of one rank;
 * an intercommunicator; invalid options: window too large, a non-zero reserved slot);
 * CF_EINVALSTATE (MPI not initialised, or finalised); CF_ENOTSUP (the client's thread level is
 * below MPI_THREAD_MULTIPLE: then every rank returns it); CF_ENOMEM; CF_EBROKEN (an MPI call
 * failed, or, on a worker, the client went away). Blocks until every worker has answered (the
 * client) or until the client is done (the workers). Thread-safe, but collective. */
int cf_mpi_executor_new(cf_executor **out, MPI_Comm comm, const cf_mpi_options *options);

/** In a process that was not spawned by cf_mpi_executor_spawn(): starts `workers` processes of
 * options->command (default: this program) with MPI_Comm_spawn(), passing `info` (placement:
 * "host", "hostfile", "wdir" and so on; MPI_INFO_NULL for none), and stores in `*out` an executor
 * whose workers are those processes. In a process spawned that way: serves its parent until the
 * parent's executor is shut down, then stores NULL in `*out` and returns 0 (the program should
 * then finalise MPI and exit). Under Open MPI the parent and its workers talk over TCP (its
 * shared-memory transport does not connect separate jobs); see docs/mpi.md for what it needs as
 * root and on one machine.
 * Returns 0; CF_EINVAL (NULL out; workers < 1; invalid options); CF_EINVALSTATE; CF_ENOTSUP
 * (thread level below MPI_THREAD_MULTIPLE); CF_EAGAIN (MPI could not spawn the workers, for
 * example too few slots without oversubscription); CF_ENOMEM; CF_EBROKEN. Thread-safe. */
int cf_mpi_executor_spawn(cf_executor **out, int workers, MPI_Info info,
                          const cf_mpi_options *options);

/** The number of worker ranks of an MPI executor (they may have died since), or CF_EINVAL if
 * `executor` is not one. Thread-safe. */
int cf_mpi_executor_workers(const cf_executor *executor);

#ifdef __cplusplus
}
#endif
#endif
