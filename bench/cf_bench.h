/* What the cfutures workload files (wl_*.c) share besides bench_util.h. */
#ifndef CF_BENCH_H
#define CF_BENCH_H

#include "bench_util.h"
#include "cfutures.h"

/* The worker count of every pool in the benchmark, peers included. */
#define CF_BENCH_WORKERS 2

/* Evaluates a cfutures call; any non-zero return is reported with its name and the run exits. */
#define CF_CHECK(call) BENCH_CHECK_ZERO(call, cf_err_name)

#endif
