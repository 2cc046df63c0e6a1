/* The MPI executor in a job launched by mpirun (tests/mpi/run_mpi.sh starts it): rank 0 is the
 * client and every other rank serves. The first argument picks the scenario:
 *
 *   suite     the Check suite below on one executor (results in order through map, as_completed
 *             across ranks, an error from a worker, 16 MiB payloads both ways, an MPI future
 *             awaited by a loop task, a function outside every module), ending with shutdown
 *             while work is pending, with cancel_futures;
 *   kill      a worker rank kills itself in the middle of a task (run with --enable-recovery):
 *             every pending and running future fails with CF_EBROKEN, later submits too, and
 *             the other ranks still end cleanly;
 *   mismatch  run as MPMD with a different build of this program on the worker: a task from the
 *             main program is refused with CF_EINVAL and a message saying the build differs,
 *             while a task from a shared library both load runs.
 *
 * Every rank that reaches the end of main() leaves a marker file in $CF_TEST_MPI_DIR, which also
 * holds the gate files of blocking tasks; run_mpi.sh counts the markers, checks mpirun's exit
 * status and that no process of the job is left behind. Check runs without fork (CK_NOFORK): a
 * forked child must not use its parent's MPI state. */
#include <dlfcn.h>
#include <signal.h>
#include <unistd.h>

#include "cf_test_sync.h"
#include "cfutures/mpi.h"
#include "mpi_test.h"

/* Makes the other build of this program a different binary (another build-id). */
#ifdef CF_TEST_OTHER_BUILD
const char cf_test_build_flavour[] = "other build";
#else
const char cf_test_build_flavour[] = "main build";
#endif

static cf_executor *ex;
static const char *dir;
static int world_rank;

/* ---- tasks (they run on the worker ranks) ---- */

static int int_result(int v, void **result, size_t *result_len)
{
    int *out = malloc(sizeof(int));
    if (!out)
        return CF_ENOMEM;
    *out = v;
    *result = out;
    *result_len = sizeof(int);
    return 0;
}

static int my_rank(void)
{
    int r = -1;
    MPI_Comm_rank(MPI_COMM_WORLD, &r);
    return r;
}

/* x squared; fails with -77 for 13, naming the rank that failed it. */
static int square_task(const void *arg, size_t len, void **result, size_t *result_len)
{
    int x;
    if (len != sizeof(x))
        return cf_task_fail(CF_EINVAL, "expected an int, got %zu bytes", len);
    memcpy(&x, arg, sizeof(x));
    if (x == 13)
        return cf_task_fail(-77, "13 is unlucky on rank %d", my_rank());
    return int_result(x * x, result, result_len);
}

/* The rank it ran on, after a millisecond (so that a burst spreads over the workers). */
static int rank_task(const void *arg, size_t len, void **result, size_t *result_len)
{
    (void)arg;
    (void)len;
    cf_test_pause_ms(1);
    return int_result(my_rank(), result, result_len);
}

static uint64_t checksum(const unsigned char *p, size_t len)
{
    uint64_t h = 1469598103934665603u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 1099511628211u;
    return h;
}

/* The argument reversed: a large argument and a large result of the same size. */
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

/* A large result from a small argument: `n` bytes of pattern. */
static int produce_task(const void *arg, size_t len, void **result, size_t *result_len)
{
    uint64_t n;
    if (len != sizeof(n))
        return CF_EINVAL;
    memcpy(&n, arg, sizeof(n));
    unsigned char *out = malloc(n ? n : 1);
    if (!out)
        return CF_ENOMEM;
    for (uint64_t i = 0; i < n; i++)
        out[i] = (unsigned char)(i * 7 + 3);
    *result = out;
    *result_len = n;
    return 0;
}

/* The checksum of a large argument: a small result. */
static int checksum_task(const void *arg, size_t len, void **result, size_t *result_len)
{
    uint64_t *out = malloc(2 * sizeof(uint64_t));
    if (!out)
        return CF_ENOMEM;
    out[0] = checksum(arg, len);
    out[1] = len;
    *result = out;
    *result_len = 2 * sizeof(uint64_t);
    return 0;
}

typedef struct gate_arg {
    char dir[200];
    int id;
} gate_arg;

static void touch(const char *d, const char *what, int id)
{
    char path[300];
    snprintf(path, sizeof(path), "%s/%s.%d", d, what, id);
    FILE *fp = fopen(path, "w");
    if (fp)
        fclose(fp);
}

static bool exists_within(const char *d, const char *what, int id, double seconds)
{
    char path[300];
    snprintf(path, sizeof(path), "%s/%s.%d", d, what, id);
    double end = cf_test_monotonic() + seconds;
    while (access(path, F_OK) != 0) {
        if (cf_test_monotonic() > end)
            return false;
        cf_test_pause_ms(1);
    }
    return true;
}

/* Marks started.<id>, waits for release.0, marks ran.<id>, returns id. */
static int gate_task(const void *arg, size_t len, void **result, size_t *result_len)
{
    gate_arg g;
    if (len != sizeof(g))
        return CF_EINVAL;
    memcpy(&g, arg, sizeof(g));
    touch(g.dir, "started", g.id);
    if (!exists_within(g.dir, "release", 0, CF_TEST_LONG))
        return cf_task_fail(CF_ETIMEDOUT, "nobody released the gate");
    touch(g.dir, "ran", g.id);
    return int_result(g.id, result, result_len);
}

/* Marks dying.<rank>, waits for kill.0, then kills its own rank, as a crash would. */
static int die_task(const void *arg, size_t len, void **result, size_t *result_len)
{
    (void)arg;
    (void)len;
    (void)result;
    (void)result_len;
    touch(dir, "dying", 0);
    if (!exists_within(dir, "kill", 0, CF_TEST_LONG))
        return CF_ETIMEDOUT;
    raise(SIGKILL);
    return 0;
}

/* ---- helpers (client) ---- */

static cf_future *submit_int(cf_bytes_fn fn, int x)
{
    cf_future *f = NULL;
    ck_assert_int_eq(cf_executor_submit_bytes(&f, ex, fn, &x, sizeof(x)), 0);
    return f;
}

static cf_future *submit_gate(int id)
{
    gate_arg g = {.id = id};
    snprintf(g.dir, sizeof(g.dir), "%s", dir);
    cf_future *f = NULL;
    ck_assert_int_eq(cf_executor_submit_bytes(&f, ex, gate_task, &g, sizeof(g)), 0);
    return f;
}

static int int_of(cf_future *f)
{
    const void *data;
    size_t len;
    ck_assert_int_eq(cf_future_result_bytes(&data, &len, f, CF_TEST_LONG), 0);
    ck_assert_uint_eq(len, sizeof(int));
    int v;
    memcpy(&v, data, sizeof(v));
    return v;
}

/* ---- the suite ---- */

START_TEST(test_map_results_in_order)
{
    enum { N = 200 };
    int xs[N];
    cf_bytes args[N];
    for (int i = 0; i < N; i++) {
        xs[i] = i;
        args[i] = (cf_bytes){&xs[i], sizeof(int)};
    }
    size_t chunks[] = {0, 1, 7};
    for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
        cf_map *it;
        ck_assert_int_eq(
            cf_executor_map_bytes(&it, ex, square_task, args, N, CF_TEST_LONG, chunks[c]), 0);
        for (int i = 0; i < N; i++) {
            int rc = cf_map_next(NULL, it);
            if (i == 13) {
                ck_assert_int_eq(rc, CF_ETASK);
                continue;
            }
            ck_assert_int_eq(rc, 0);
            ck_assert_int_eq(int_of(cf_map_current(it)), i * i);
        }
        ck_assert_int_eq(cf_map_next(NULL, it), CF_EOF);
        cf_map_free(it);
    }
}
END_TEST

START_TEST(test_as_completed_across_ranks)
{
    enum { N = 40 };
    int nworkers = cf_mpi_executor_workers(ex);
    ck_assert_int_ge(nworkers, 2);
    cf_future *fs[N];
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(cf_executor_submit_bytes(&fs[i], ex, rank_task, NULL, 0), 0);
    cf_as_completed *it;
    ck_assert_int_eq(cf_as_completed_new(&it, fs, N, CF_TEST_LONG), 0);
    bool seen_rank[64] = {false};
    int yielded = 0, ranks = 0;
    cf_future *f;
    while (cf_as_completed_next(&f, it) == 0) {
        int r = int_of(f);
        ck_assert(r >= 1 && r <= nworkers); /* a worker, never the client */
        ranks += !seen_rank[r];
        seen_rank[r] = true;
        yielded++;
    }
    ck_assert_int_eq(yielded, N);
    ck_assert_int_eq(ranks, nworkers); /* the next task goes to a free worker: all took part */
    cf_as_completed_free(it);
    for (int i = 0; i < N; i++)
        cf_future_unref(fs[i]);
}
END_TEST

START_TEST(test_error_from_a_worker)
{
    cf_future *f = submit_int(square_task, 13);
    ck_assert_int_eq(cf_future_result(NULL, f, CF_TEST_LONG), CF_ETASK);
    int code;
    const char *message;
    ck_assert_int_eq(cf_future_exception(&code, &message, f, 0), 0);
    ck_assert_int_eq(code, -77);
    ck_assert_ptr_nonnull(strstr(message, "13 is unlucky on rank "));
    ck_assert_int_ne(message[strlen("13 is unlucky on rank ")], '0'); /* not the client */
    cf_future_unref(f);
    /* Wrong input is the task's business too: it reports, the executor goes on. */
    char three[3] = "abc";
    ck_assert_int_eq(cf_executor_submit_bytes(&f, ex, square_task, three, 3), 0);
    ck_assert_int_eq(cf_future_exception(&code, &message, f, CF_TEST_LONG), 0);
    ck_assert_int_eq(code, CF_EINVAL);
    ck_assert_str_eq(message, "expected an int, got 3 bytes");
    cf_future_unref(f);
    f = submit_int(square_task, 5);
    ck_assert_int_eq(int_of(f), 25);
    cf_future_unref(f);
}
END_TEST

START_TEST(test_16mib_payloads)
{
    size_t size = 16u << 20;
    unsigned char *big = malloc(size);
    for (size_t i = 0; i < size; i++)
        big[i] = (unsigned char)(i * 131 + (i >> 13));
    /* Both ways at once, and two in flight (both workers). */
    cf_future *rev[2];
    for (int k = 0; k < 2; k++)
        ck_assert_int_eq(cf_executor_submit_bytes(&rev[k], ex, reverse_task, big, size), 0);
    cf_future *sum;
    ck_assert_int_eq(cf_executor_submit_bytes(&sum, ex, checksum_task, big, size), 0);
    uint64_t n = size;
    cf_future *made;
    ck_assert_int_eq(cf_executor_submit_bytes(&made, ex, produce_task, &n, sizeof(n)), 0);
    for (int k = 0; k < 2; k++) {
        const unsigned char *data;
        size_t len;
        ck_assert_int_eq(cf_future_result_bytes((const void **)&data, &len, rev[k], CF_TEST_LONG),
                         0);
        ck_assert_uint_eq(len, size);
        for (size_t i = 0; i < size; i += 4093)
            ck_assert_int_eq(data[i], big[size - 1 - i]);
        ck_assert_int_eq(data[size - 1], big[0]);
        cf_future_unref(rev[k]);
    }
    const uint64_t *s;
    ck_assert_int_eq(cf_future_result_bytes((const void **)&s, NULL, sum, CF_TEST_LONG), 0);
    ck_assert_uint_eq(s[0], checksum(big, size));
    ck_assert_uint_eq(s[1], size);
    const unsigned char *p;
    size_t len;
    ck_assert_int_eq(cf_future_result_bytes((const void **)&p, &len, made, CF_TEST_LONG), 0);
    ck_assert_uint_eq(len, size);
    for (size_t i = 0; i < size; i += 4099)
        ck_assert_int_eq(p[i], (unsigned char)(i * 7 + 3));
    cf_future_unref(sum);
    cf_future_unref(made);
    free(big);
}
END_TEST

#ifndef CF_TEST_NO_COROUTINES
static int loop_task(void *arg, void **result)
{
    (void)arg;
    int x = 9;
    cf_future *f;
    int rc = cf_loop_run_in_executor_bytes(&f, cf_loop_current(), ex, square_task, &x, sizeof(x));
    if (rc)
        return rc;
    rc = cf_await(NULL, f); /* the loop keeps running while a worker rank computes */
    const void *data;
    if (rc == 0 && cf_future_result_bytes(&data, NULL, f, 0) == 0)
        *result = (void *)(intptr_t)(*(const int *)data);
    cf_future_unref(f);
    return rc;
}

START_TEST(test_loop_task_awaits_mpi_future)
{
    cf_loop *loop;
    ck_assert_int_eq(cf_loop_new(&loop, NULL), 0);
    cf_future *task;
    ck_assert_int_eq(cf_loop_create_task(&task, loop, loop_task, NULL, NULL), 0);
    void *v = NULL;
    ck_assert_int_eq(cf_loop_run_until_complete(&v, loop, task), 0);
    ck_assert_int_eq((intptr_t)v, 81);
    cf_future_unref(task);
    ck_assert_int_eq(cf_loop_free(loop), 0);
}
END_TEST
#endif

START_TEST(test_refusals)
{
    static const int data_not_code = 1;
    cf_future *f = (cf_future *)1;
    ck_assert_int_eq(
        cf_executor_submit_bytes(&f, ex, (cf_bytes_fn)(uintptr_t)&data_not_code, NULL, 0),
        CF_EINVAL); /* not code of any module: cannot be named */
    ck_assert_ptr_null(f);
    ck_assert_int_eq(cf_executor_submit(&f, ex, cf_test_square_task, NULL), CF_ENOTSUP);
    ck_assert_str_eq(cf_executor_name(ex), "mpi");
    ck_assert_int_eq(cf_mpi_executor_workers(NULL), CF_EINVAL);
    cf_executor *pool = cf_test_pool(1);
    ck_assert_int_eq(cf_mpi_executor_workers(pool), CF_EINVAL);
    ck_assert_int_eq(cf_executor_free(pool), 0);
    cf_executor *other = (cf_executor *)1;
    cf_mpi_options bad = {.reserved[3] = 1};
    ck_assert_int_eq(cf_mpi_executor_new(&other, MPI_COMM_WORLD, &bad), CF_EINVAL);
    ck_assert_ptr_null(other);
    bad = (cf_mpi_options){.window = CF_MPI_WINDOW_MAX + 1};
    ck_assert_int_eq(cf_mpi_executor_spawn(&other, 1, MPI_INFO_NULL, &bad), CF_EINVAL);
    ck_assert_int_eq(cf_mpi_executor_new(&other, MPI_COMM_SELF, NULL), CF_EINVAL); /* 1 rank */
    ck_assert_int_eq(cf_mpi_executor_spawn(&other, 0, MPI_INFO_NULL, NULL), CF_EINVAL);
}
END_TEST

/* Last: shutdown(wait=false, cancel_futures) while both workers are blocked and more work is
 * queued than their windows hold. */
START_TEST(test_shutdown_cancels_pending)
{
    enum { WINDOW = 2, EXTRA = 5 };
    int nworkers = cf_mpi_executor_workers(ex);
    int n = nworkers * WINDOW + EXTRA;
    cf_future **fs = calloc((size_t)n, sizeof(*fs));
    for (int i = 0; i < n; i++)
        fs[i] = submit_gate(i);
    for (int w = 0; w < nworkers; w++)
        ck_assert(exists_within(dir, "started", w, CF_TEST_LONG));
    ck_assert_int_eq(cf_executor_shutdown(ex, false, true), 0);
    cf_future *late;
    int x = 1;
    ck_assert_int_eq(cf_executor_submit_bytes(&late, ex, square_task, &x, sizeof(x)), CF_ESHUTDOWN);
    touch(dir, "release", 0);
    ck_assert_int_eq(cf_executor_shutdown(ex, true, false), 0);
    int cancelled = 0;
    for (int i = 0; i < n; i++) {
        ck_assert(cf_future_done(fs[i]));
        if (cf_future_cancelled(fs[i])) {
            cancelled++;
            ck_assert(!exists_within(dir, "ran", i, 0));
        } else {
            ck_assert_int_eq(int_of(fs[i]), i);
        }
        cf_future_unref(fs[i]);
    }
    ck_assert_int_ge(cancelled, EXTRA); /* beyond the windows: never dispatched */
    free(fs);
}
END_TEST

/* ---- the other scenarios ---- */

/* One worker dies in the middle of a task while the other is busy and more work is queued. */
START_TEST(test_worker_killed_mid_task)
{
    enum { N = 12 };
    cf_future *fs[N + 1];
    ck_assert_int_eq(cf_executor_submit_bytes(&fs[0], ex, die_task, NULL, 0), 0);
    for (int i = 1; i <= N; i++)
        fs[i] = submit_gate(i); /* the first goes to the other worker, the rest queue */
    ck_assert(exists_within(dir, "dying", 0, CF_TEST_LONG));
    ck_assert(exists_within(dir, "started", 1, CF_TEST_LONG));
    touch(dir, "kill", 0);
    /* The dead rank's future, the other rank's running one and the queued ones all fail. */
    for (int i = 0; i <= N; i++) {
        int code = 0;
        const char *message = NULL;
        ck_assert_int_eq(cf_future_exception(&code, &message, fs[i], CF_TEST_LONG), 0);
        ck_assert_int_eq(code, CF_EBROKEN);
        ck_assert_msg(strstr(message, "an MPI worker (rank ") &&
                          strstr(message, "terminated abruptly while the future was running"),
                      "%s", message);
        cf_future_unref(fs[i]);
    }
    cf_future *late = (cf_future *)1;
    int x = 2;
    ck_assert_int_eq(cf_executor_submit_bytes(&late, ex, square_task, &x, sizeof(x)), CF_EBROKEN);
    ck_assert_ptr_null(late);
    touch(dir, "release", 0); /* the surviving worker's task ends; it is then told to exit */
    ck_assert_int_eq(cf_executor_shutdown(ex, true, false), 0);
}
END_TEST

/* MPMD with another build of this program on the worker. */
START_TEST(test_other_build_refused)
{
    cf_future *f = submit_int(square_task, 3);
    int code = 0;
    const char *message = NULL;
    ck_assert_int_eq(cf_future_exception(&code, &message, f, CF_TEST_LONG), 0);
    ck_assert_int_eq(code, CF_EINVAL);
    ck_assert_msg(strstr(message, "(main program) is a different build here than in the process "
                                  "that sent the task (identity "),
                  "%s", message);
    cf_future_unref(f);
    /* A function in a shared library that both builds load is the same code: it runs. */
    void *lib = dlopen(FNMOD_DIR "/libfnmod_a.so", RTLD_NOW);
    ck_assert_ptr_nonnull(lib);
    cf_bytes_fn fn = (cf_bytes_fn)dlsym(lib, "fnmod_variant");
    ck_assert_ptr_nonnull((void *)fn);
    ck_assert_int_eq(cf_executor_submit_bytes(&f, ex, fn, NULL, 0), 0);
    ck_assert_int_eq(int_of(f), 1);
    cf_future_unref(f);
}
END_TEST

static Suite *suite(const char *scenario)
{
    Suite *s = suite_create("mpi");
    TCase *tc = cf_test_tcase(scenario);
    if (strcmp(scenario, "suite") == 0) {
        tcase_add_test(tc, test_map_results_in_order);
        tcase_add_test(tc, test_as_completed_across_ranks);
        tcase_add_test(tc, test_error_from_a_worker);
        tcase_add_test(tc, test_16mib_payloads);
#ifndef CF_TEST_NO_COROUTINES
        tcase_add_test(tc, test_loop_task_awaits_mpi_future);
#endif
        tcase_add_test(tc, test_refusals);
        tcase_add_test(tc, test_shutdown_cancels_pending);
    } else if (strcmp(scenario, "kill") == 0) {
        tcase_add_test(tc, test_worker_killed_mid_task);
    } else if (strcmp(scenario, "mismatch") == 0) {
        tcase_add_test(tc, test_other_build_refused);
    }
    suite_add_tcase(s, tc);
    return s;
}

static int run_suite(const char *scenario)
{
    SRunner *sr = srunner_create(suite(scenario));
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr) + (srunner_ntests_run(sr) == 0);
    srunner_free(sr);
    return failed;
}

int main(int argc, char **argv)
{
    const char *scenario = argc > 1 ? argv[1] : "suite";
    dir = getenv("CF_TEST_MPI_DIR");
    if (!dir) {
        fprintf(stderr, "CF_TEST_MPI_DIR is not set: run this through tests/mpi/run_mpi.sh\n");
        return 2;
    }
    int provided;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    cf_mpi_options o = {.window = strcmp(scenario, "suite") == 0 ? 2 : 4};
    int rc = cf_mpi_executor_new(&ex, MPI_COMM_WORLD, &o);
    int failed = rc != 0;
    if (rc)
        fprintf(stderr, "rank %d: cf_mpi_executor_new: %s\n", world_rank, cf_err_name(rc));
    if (rc == 0 && ex) {
        failed = run_suite(scenario);
        if (cf_executor_free(ex) != 0)
            failed++;
    }
    if (cf_test_mpi_leaks()) {
        fprintf(stderr, "rank %d: leaks before MPI_Finalize\n", world_rank);
        failed++;
    }
    MPI_Finalize();
    if (failed == 0)
        touch(dir, "exited", world_rank);
    return failed ? 1 : 0;
}
