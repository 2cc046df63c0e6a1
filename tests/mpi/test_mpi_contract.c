/* The generic executor tests (executor_contract.h) against MPI executors started the second
 * way: each test spawns two fresh worker processes with cf_mpi_executor_spawn() from this one
 * process (a singleton MPI job; tests/mpi/run_mpi.sh sets up what Open MPI needs). A process
 * that was spawned serves its parent from the same call, then ends. Check runs without fork
 * (CK_NOFORK): a forked child must not use its parent's MPI state. */
#include "cfutures/mpi.h"
#include "executor_contract.h"
#include "mpi_test.h"

static cf_executor *make_mpi(void)
{
    cf_mpi_options o = {.window = 4};
    cf_executor *ex = NULL;
    ck_assert_int_eq(cf_mpi_executor_spawn(&ex, 2, MPI_INFO_NULL, &o), 0);
    ck_assert_ptr_nonnull(ex);
    ck_assert_int_eq(cf_mpi_executor_workers(ex), 2);
    return ex;
}

static const cf_contract_target mpi_target = {"mpi_spawn", make_mpi, false, 2 * 4};

int main(int argc, char **argv)
{
    int provided;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    MPI_Comm parent;
    MPI_Comm_get_parent(&parent);
    if (parent != MPI_COMM_NULL) {
        cf_executor *none = NULL;
        int rc = cf_mpi_executor_spawn(&none, 0, MPI_INFO_NULL, NULL); /* serves, then returns */
        int leaks = cf_test_mpi_leaks();
        MPI_Finalize();
        return rc == 0 && none == NULL && !leaks ? 0 : 1;
    }
    cf_contract = &mpi_target;
    Suite *s = suite_create(cf_contract->name);
    suite_add_tcase(s, cf_contract_tcase());
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    failed += cf_test_mpi_leaks();
    MPI_Finalize();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
