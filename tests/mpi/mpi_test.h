/* What the MPI suites share. */
#ifndef CF_MPI_TEST_H
#define CF_MPI_TEST_H

/* Under ASan, the MPI programs check for leaks right after their executors are freed and before
 * MPI_Finalize(), and run_mpi.sh turns LSan's check at exit off (leak_check_at_exit=0): Open MPI
 * leaks in MPI_Init()/MPI_Finalize() and in the plugins it unloads before exit, which LSan cannot
 * even name, so no suppression could match them. Before MPI_Finalize() Open MPI's memory is still
 * reachable, and whatever the executor allocated must be gone. Returns non-zero on a leak. */
#if defined(__SANITIZE_ADDRESS__)
#define CF_TEST_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CF_TEST_LSAN 1
#endif
#endif

#ifdef CF_TEST_LSAN
#include <sanitizer/lsan_interface.h>
static inline int cf_test_mpi_leaks(void)
{
    return __lsan_do_recoverable_leak_check();
}
#else
static inline int cf_test_mpi_leaks(void)
{
    return 0;
}
#endif

#endif
