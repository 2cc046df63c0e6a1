/* The generic executor tests (executor_contract.h) against MPI executors on spawned workers, and
 * the spawn way of starting (cf_mpi_executor_spawn()).
 *
 * This program runs alone (a singleton MPI job; tests/mpi/run_mpi.sh sets up what Open MPI
 * needs). Each contract test wants a fresh executor, but Open MPI 4.1.4 with the PMIx 4 of
 * Debian 12 hangs now and then in MPI_Comm_spawn() (openpmix/openpmix#2735; reproduced here with
 * plain MPI_Comm_spawn/MPI_Comm_disconnect, about one spawn in twenty under load), so workers are
 * spawned once: they join the parent in one intracommunicator (MPI_Intercomm_merge) and, for
 * each test, the parent makes a new executor over it with cf_mpi_executor_new() while the
 * workers serve it from the same call, until told to stop. The spawn way itself gets one test,
 * with its own spawned workers. Around each MPI_Comm_spawn() the parent leaves a marker file, so
 * that run_mpi.sh can tell Open MPI's hang from one of ours and retry only that.
 *
 * Check runs without fork (CK_NOFORK): a forked child must not use its parent's MPI state. */
#include "cfutures/mpi.h"
#include "executor_contract.h"
#include "mpi_test.h"

enum { WORKERS = 2, TAG_CONTROL = 77, NEXT = 1, STOP = 2 };

static MPI_Comm merged = MPI_COMM_NULL; /* parent (rank 0) and the workers */
static int spawns;

/* spawning.<n> before MPI_Comm_spawn(), spawned.<n> after (run_mpi.sh reads them). */
static void spawn_marker(const char *what)
{
    const char *dir = getenv("CF_TEST_MPI_DIR");
    if (!dir)
        return;
    char path[512];
    snprintf(path, sizeof(path), "%s/%s.%d", dir, what, spawns);
    FILE *fp = fopen(path, "w");
    if (fp)
        fclose(fp);
}

static cf_executor *make_mpi(void)
{
    int next = NEXT;
    for (int r = 1; r <= WORKERS; r++)
        ck_assert_int_eq(MPI_Send(&next, 1, MPI_INT, r, TAG_CONTROL, merged), MPI_SUCCESS);
    cf_mpi_options o = {.window = 4};
    cf_executor *ex = NULL;
    ck_assert_int_eq(cf_mpi_executor_new(&ex, merged, &o), 0);
    ck_assert_ptr_nonnull(ex);
    ck_assert_int_eq(cf_mpi_executor_workers(ex), WORKERS);
    return ex;
}

static const cf_contract_target mpi_target = {"mpi_spawned", make_mpi, false, WORKERS * 4};

static int reverse_task(const void *arg, size_t len, void **result, size_t *result_len)
{
    unsigned char *out = malloc(len ? len : 1);
    if (!out)
        return CF_ENOMEM;
    for (size_t i = 0; i < len; i++)
        out[i] = ((const unsigned char *)arg)[len - 1 - i];
    *result = out;
    *result_len = len;
    return 0;
}

/* The spawn way: workers started by the call itself, a map over them, then free, after which
 * the workers have ended. */
START_TEST(test_spawn_way)
{
    cf_executor *ex = NULL;
    spawns++;
    spawn_marker("spawning");
    ck_assert_int_eq(cf_mpi_executor_spawn(&ex, WORKERS, MPI_INFO_NULL, NULL), 0);
    spawn_marker("spawned");
    ck_assert_ptr_nonnull(ex);
    ck_assert_int_eq(cf_mpi_executor_workers(ex), WORKERS);
    enum { N = 16 };
    char words[N][8];
    cf_bytes args[N];
    for (int i = 0; i < N; i++) {
        snprintf(words[i], sizeof(words[i]), "ab%02dcd", i);
        args[i] = (cf_bytes){words[i], strlen(words[i])};
    }
    cf_map *it;
    ck_assert_int_eq(cf_executor_map_bytes(&it, ex, reverse_task, args, N, CF_TEST_LONG, 0), 0);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(cf_map_next(NULL, it), 0);
        const char *data;
        size_t len;
        ck_assert_int_eq(cf_future_result_bytes((const void **)&data, &len, cf_map_current(it), 0),
                         0);
        char want[8];
        for (int k = 0; k < 6; k++)
            want[k] = words[i][5 - k];
        ck_assert_uint_eq(len, 6);
        ck_assert_mem_eq(data, want, 6);
    }
    cf_map_free(it);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

/* A worker spawned for the contract tests: serves one executor per NEXT until STOP. */
static int contract_worker(MPI_Comm parent)
{
    MPI_Comm all;
    MPI_Intercomm_merge(parent, 1, &all);
    int bad = 0, cmd;
    while (MPI_Recv(&cmd, 1, MPI_INT, 0, TAG_CONTROL, all, MPI_STATUS_IGNORE) == MPI_SUCCESS &&
           cmd == NEXT) {
        cf_executor *none = (cf_executor *)1;
        bad += cf_mpi_executor_new(&none, all, NULL) != 0 || none != NULL;
    }
    MPI_Comm_free(&all);
    MPI_Comm_disconnect(&parent);
    return bad;
}

static int run_tests(void)
{
    MPI_Comm inter;
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0)
        return 1;
    self[n] = '\0'; /* the real path: Open MPI's daemon starts the command, not this process */
    char *worker_argv[] = {"--contract-worker", NULL};
    spawns++;
    spawn_marker("spawning");
    int rc = MPI_Comm_spawn(self, worker_argv, WORKERS, MPI_INFO_NULL, 0, MPI_COMM_SELF, &inter,
                            MPI_ERRCODES_IGNORE);
    spawn_marker("spawned");
    if (rc != MPI_SUCCESS)
        return 1;
    MPI_Intercomm_merge(inter, 0, &merged);
    cf_contract = &mpi_target;
    Suite *s = suite_create(cf_contract->name);
    suite_add_tcase(s, cf_contract_tcase());
    TCase *tc = cf_test_tcase("spawn");
    tcase_add_test(tc, test_spawn_way);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    int stop = STOP;
    for (int r = 1; r <= WORKERS; r++)
        MPI_Send(&stop, 1, MPI_INT, r, TAG_CONTROL, merged);
    MPI_Comm_free(&merged);
    MPI_Comm_disconnect(&inter);
    return failed;
}

int main(int argc, char **argv)
{
    int provided;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    MPI_Comm parent;
    MPI_Comm_get_parent(&parent);
    int failed;
    if (parent != MPI_COMM_NULL && argc > 1 && strcmp(argv[1], "--contract-worker") == 0) {
        failed = contract_worker(parent);
    } else if (parent != MPI_COMM_NULL) {
        cf_executor *none = (cf_executor *)1; /* spawned by cf_mpi_executor_spawn(): serve */
        failed = cf_mpi_executor_spawn(&none, 0, MPI_INFO_NULL, NULL) != 0 || none != NULL;
    } else {
        failed = run_tests();
    }
    failed += cf_test_mpi_leaks();
    MPI_Finalize();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
