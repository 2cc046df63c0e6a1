/* thread_per_task: a tiny custom executor built on <cfutures/executor_impl.h>.
 *
 * Every task runs on a new detached thread, started when it is submitted. It shows the whole
 * contract an executor implements (accepting futures, starting them, completing them, shutdown
 * with wait and cancel_futures, destroy from one of its own threads, fork) in about 150 lines;
 * its futures work with everything in cfutures: wait, as_completed, map, done-callbacks, the
 * event loop's run_in_executor and the adapters. It is a teaching example: for real work use
 * the thread pool, which bounds the number of threads. */
#ifndef THREAD_PER_TASK_H
#define THREAD_PER_TASK_H

#include <cfutures.h>

/* Creates the executor. Returns 0, CF_EINVAL (NULL out) or CF_ENOMEM. Thread-safe. */
int thread_per_task_new(cf_executor **out);

/* The number of task threads alive right now, or -1 if `ex` is not a thread_per_task executor
 * (an example of an implementation's own function on a cf_executor). Thread-safe. */
int thread_per_task_threads(const cf_executor *ex);

#endif
