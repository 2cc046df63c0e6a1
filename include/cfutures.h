/** @file
 * cfutures: Python's concurrent.futures for C.
 *
 * Include this umbrella header, or the per-concept headers under cfutures/.
 * Link with -lcfutures (pkg-config --libs cfutures).
 */
#ifndef CFUTURES_H
#define CFUTURES_H

#include "cfutures/version.h"
#include "cfutures/error.h"
#include "cfutures/task.h"
#include "cfutures/future.h"
#include "cfutures/executor.h"
#include "cfutures/bytes.h"
#include "cfutures/thread_pool.h"
#include "cfutures/process_pool.h"
#include "cfutures/wait.h"
#include "cfutures/loop.h"
#include "cfutures/loop_task.h"
#include "cfutures/loop_io.h"
#include "cfutures/loop_sync.h"

#endif
