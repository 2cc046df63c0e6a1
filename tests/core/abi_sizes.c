/* Prints the size of every public struct with a body, and the reserved slots it has left, for
 * check_abi.py to hold against docs/abi.md. A struct added to a public header must be listed
 * here (check_abi.py fails on one it does not see measured). */
#include <stdint.h>
#include <stdio.h>

#include "cfutures.h"
#include "cfutures/executor_impl.h"
#ifdef CF_ABI_HAVE_MPI
#include "cfutures/mpi.h"
#endif

#define GROWABLE(type)                                                                             \
    printf("%s %zu %zu\n", #type, sizeof(type), sizeof(((type *)0)->reserved) / sizeof(uint64_t))
#define FROZEN(type) printf("%s %zu frozen\n", #type, sizeof(type))

int main(void)
{
    printf("pointer %zu\n", sizeof(void *));
    FROZEN(cf_bytes);
    GROWABLE(cf_thread_pool_options);
    GROWABLE(cf_thread_pool_stats);
    GROWABLE(cf_process_pool_options);
    GROWABLE(cf_process_pool_stats);
    GROWABLE(cf_loop_options);
    GROWABLE(cf_loop_task_options);
    GROWABLE(cf_loop_stats);
    GROWABLE(cf_loop_queue_options);
    GROWABLE(cf_executor_ops);
#ifdef CF_ABI_HAVE_MPI
    GROWABLE(cf_mpi_options);
#else
    printf("skip cf_mpi_options\n"); /* mpi.h needs <mpi.h>, absent from this build */
#endif
    return 0;
}
