/* cf_future_set_data / cf_future_get_data: a caller's pointer on a future of every kind (plain,
 * thread pool, process pool, loop future, loop task), read back after cf_wait, as_completed and
 * in done-callbacks; never left over on a recycled future; and setting it while the future
 * completes or while a thread sleeps on it loses neither the pointer nor the outcome. */
#include <sys/wait.h>

#include "cf_test_sync.h"

static cf_future *new_future(void)
{
    cf_future *f = NULL;
    ck_assert_int_eq(cf_future_new(&f), 0);
    return f;
}

START_TEST(test_plain_future)
{
    int a, b;
    cf_future *f = new_future();
    ck_assert_ptr_null(cf_future_get_data(f));
    ck_assert_int_eq(cf_future_set_data(f, &a), 0);
    ck_assert_ptr_eq(cf_future_get_data(f), &a);
    ck_assert_int_eq(cf_future_set_data(f, &b), 0); /* replaced */
    ck_assert_ptr_eq(cf_future_get_data(f), &b);
    /* The outcome and the pointer are independent. */
    ck_assert_int_eq(cf_future_set_result(f, &a, NULL), 0);
    ck_assert_ptr_eq(cf_future_get_data(f), &b);
    void *value = NULL;
    ck_assert_int_eq(cf_future_result(&value, f, 0), 0);
    ck_assert_ptr_eq(value, &a);
    ck_assert_int_eq(cf_future_get_state(f), CF_FUTURE_FINISHED);
    cf_future_set_data(f, NULL);
    ck_assert_ptr_null(cf_future_get_data(f));
    cf_future_unref(f);

    /* Cancelled and failed futures keep it too. */
    f = new_future();
    cf_future_set_data(f, &a);
    ck_assert(cf_future_cancel(f));
    ck_assert(cf_future_cancelled(f));
    ck_assert_ptr_eq(cf_future_get_data(f), &a);
    cf_future_unref(f);
    f = new_future();
    cf_future_set_data(f, &a);
    ck_assert_int_eq(cf_future_set_exception(f, -3, "x"), 0);
    int code = 0;
    ck_assert_int_eq(cf_future_exception(&code, NULL, f, 0), 0);
    ck_assert_int_eq(code, -3);
    ck_assert_ptr_eq(cf_future_get_data(f), &a);
    cf_future_unref(f);

    ck_assert_int_eq(cf_future_set_data(NULL, &a), CF_EINVAL);
    ck_assert_ptr_null(cf_future_get_data(NULL));
}
END_TEST

/* Many futures with data at once, freed in an order unrelated to their creation, each read
 * back right before it goes: the pointers are kept beside the futures (core/future_data.c),
 * in tables that grow and whose removals must not lose the entries after them. A forked child
 * reads the same pointers from its copy. */
START_TEST(test_many_futures_with_data)
{
    enum { N = 5000 };
    static cf_future *fs[N];
    static int slots[N];
    for (int i = 0; i < N; i++) {
        fs[i] = new_future();
        ck_assert_int_eq(cf_future_set_data(fs[i], &slots[i]), 0);
    }
    for (int i = 0; i < N; i++)
        ck_assert_ptr_eq(cf_future_get_data(fs[i]), &slots[i]);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int bad = 0;
        for (int i = 0; i < N; i++)
            bad += cf_future_get_data(fs[i]) != &slots[i];
        int extra;
        bad += cf_future_set_data(fs[0], &extra) != 0 || cf_future_get_data(fs[0]) != &extra;
        _exit(bad ? 1 : 0);
    }
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* Free every 7th (mod N, a permutation since 7 and 5000 are coprime), checking the rest. */
    for (int k = 0; k < N; k++) {
        int i = (int)(((long)k * 7) % N);
        ck_assert_ptr_eq(cf_future_get_data(fs[i]), &slots[i]);
        cf_future_unref(fs[i]);
        fs[i] = NULL;
        if (k % 500 == 0)
            for (int j = 0; j < N; j++)
                if (fs[j])
                    ck_assert_ptr_eq(cf_future_get_data(fs[j]), &slots[j]);
    }
}
END_TEST

/* Futures are recycled: one made after a future with data was freed starts without any. */
START_TEST(test_recycled_future_has_none)
{
    enum { N = 64 };
    int marker;
    cf_future *fs[N];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < N; i++) {
            fs[i] = new_future();
            ck_assert_ptr_null(cf_future_get_data(fs[i]));
            cf_future_set_data(fs[i], &marker);
        }
        for (int i = 0; i < N; i++)
            cf_future_unref(fs[i]);
    }
    cf_executor *ex = cf_test_pool(2);
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < N; i++) {
            ck_assert_int_eq(cf_executor_submit(&fs[i], ex, cf_test_identity_task, NULL), 0);
            ck_assert_ptr_null(cf_future_get_data(fs[i]));
            cf_future_set_data(fs[i], &marker);
        }
        for (int i = 0; i < N; i++) {
            ck_assert_int_eq(cf_future_result(NULL, fs[i], CF_TEST_LONG), 0);
            cf_future_unref(fs[i]);
        }
    }
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

typedef struct job {
    intptr_t input;
    int seen;
} job;

/* Which job finished is read from the future, not searched for in the array. */
START_TEST(test_thread_pool_as_completed_and_wait)
{
    enum { N = 16 };
    cf_executor *ex = cf_test_pool(4);
    job jobs[N];
    cf_future *fs[N];
    for (int i = 0; i < N; i++) {
        jobs[i] = (job){.input = 100 + i};
        ck_assert_int_eq(cf_executor_submit(&fs[i], ex, cf_test_square_task, (void *)jobs[i].input),
                         0);
        cf_future_set_data(fs[i], &jobs[i]);
    }
    cf_as_completed *it = NULL;
    ck_assert_int_eq(cf_as_completed_new(&it, fs, N, CF_TEST_LONG), 0);
    cf_future *f;
    while (cf_as_completed_next(&f, it) == 0) {
        job *j = cf_future_get_data(f);
        ck_assert_ptr_nonnull(j);
        void *value = NULL;
        ck_assert_int_eq(cf_future_result(&value, f, 0), 0);
        ck_assert_int_eq((intptr_t)value, j->input * j->input);
        j->seen++;
    }
    cf_as_completed_free(it);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(jobs[i].seen, 1);

    /* cf_wait(FIRST_COMPLETED) over one blocked and one free task: the done one names itself. */
    cf_test_gate g;
    cf_test_gate_init(&g);
    cf_future *pair[2];
    job blocked = {.input = 1}, quick = {.input = 2};
    ck_assert_int_eq(cf_executor_submit(&pair[0], ex, cf_test_gate_task, &g), 0);
    cf_future_set_data(pair[0], &blocked);
    ck_assert_int_eq(cf_executor_submit(&pair[1], ex, cf_test_identity_task, NULL), 0);
    cf_future_set_data(pair[1], &quick);
    bool done[2];
    ck_assert_int_eq(cf_wait(NULL, done, pair, 2, CF_FIRST_COMPLETED, CF_TEST_LONG), 0);
    ck_assert(!done[0] && done[1]);
    ck_assert_ptr_eq(cf_future_get_data(pair[1]), &quick);
    cf_test_event_set(&g.release);
    ck_assert_int_eq(cf_future_result(NULL, pair[0], CF_TEST_LONG), 0);
    ck_assert_ptr_eq(cf_future_get_data(pair[0]), &blocked);
    for (int i = 0; i < N; i++)
        cf_future_unref(fs[i]);
    cf_future_unref(pair[0]);
    cf_future_unref(pair[1]);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    cf_test_gate_destroy(&g);
}
END_TEST

static void read_data_cb(cf_future *f, void *data)
{
    atomic_store((_Atomic(void *) *)data, cf_future_get_data(f));
}

/* A done-callback running on a worker sees the pointer set before it was added. */
START_TEST(test_done_callback_sees_data)
{
    cf_executor *ex = cf_test_pool(1);
    cf_test_gate g;
    cf_test_gate_init(&g);
    cf_future *f = NULL;
    ck_assert_int_eq(cf_executor_submit(&f, ex, cf_test_gate_task, &g), 0);
    int marker;
    cf_future_set_data(f, &marker);
    _Atomic(void *) seen = NULL;
    ck_assert_int_eq(cf_future_add_done_callback(f, read_data_cb, (void *)&seen), 0);
    cf_test_event_set(&g.release);
    ck_assert_int_eq(cf_executor_free(ex), 0); /* the callback ran before the worker exited */
    ck_assert_ptr_eq(atomic_load(&seen), &marker);
    cf_future_unref(f);
    cf_test_gate_destroy(&g);
}
END_TEST

/* Setting the pointer races with the completion on a worker, thousands of times: neither the
 * pointer nor the outcome may be lost (both live in, or are published through, the state word
 * the completion changes). */
START_TEST(test_set_while_completing)
{
    enum { N = 3000 };
    cf_executor *ex = cf_test_pool(2);
    static cf_future *fs[N];
    static intptr_t inputs[N];
    for (int i = 0; i < N; i++) {
        inputs[i] = i;
        ck_assert_int_eq(cf_executor_submit(&fs[i], ex, cf_test_square_task, (void *)inputs[i]), 0);
        cf_future_set_data(fs[i], &inputs[i]);
    }
    for (int i = 0; i < N; i++) {
        void *value = NULL;
        ck_assert_int_eq(cf_future_result(&value, fs[i], CF_TEST_LONG), 0);
        ck_assert_int_eq((intptr_t)value, (intptr_t)i * i);
        ck_assert_ptr_eq(cf_future_get_data(fs[i]), &inputs[i]);
        ck_assert_int_eq(cf_future_get_state(fs[i]), CF_FUTURE_FINISHED);
        cf_future_unref(fs[i]);
    }
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

typedef struct sleeper {
    cf_future *f;
    _Atomic pid_t tid;
    int rc;
    void *value;
} sleeper;

static void *sleep_on_result(void *arg)
{
    sleeper *s = arg;
    atomic_store(&s->tid, cf_test_gettid());
    s->rc = cf_future_result(&s->value, s->f, CF_TEST_LONG);
    return NULL;
}

/* A thread asleep on the future (a futex on its state word) still wakes when it completes after
 * the pointer was set meanwhile. */
START_TEST(test_set_while_a_thread_sleeps)
{
    cf_future *f = new_future();
    sleeper s = {.f = f};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, sleep_on_result, &s), 0);
    while (atomic_load(&s.tid) == 0)
        cf_test_pause_ms(1);
    cf_test_wait_asleep(atomic_load(&s.tid), CF_TEST_LONG);
    int marker;
    cf_future_set_data(f, &marker);
    ck_assert_int_eq(cf_future_set_result(f, &s, NULL), 0);
    pthread_join(t, NULL);
    ck_assert_int_eq(s.rc, 0);
    ck_assert_ptr_eq(s.value, &s);
    ck_assert_ptr_eq(cf_future_get_data(f), &marker);
    cf_future_unref(f);
}
END_TEST

START_TEST(test_process_pool)
{
    enum { N = 4 };
    cf_process_pool_options o = {.max_workers = 2};
    cf_executor *ex = NULL;
    ck_assert_int_eq(cf_process_pool_new(&ex, &o), 0);
    char inputs[N][8];
    cf_future *fs[N];
    for (int i = 0; i < N; i++) {
        snprintf(inputs[i], sizeof(inputs[i]), "job%d", i);
        ck_assert_int_eq(
            cf_executor_submit_bytes(&fs[i], ex, cf_test_echo_task, inputs[i], strlen(inputs[i])),
            0);
        cf_future_set_data(fs[i], inputs[i]);
    }
    cf_as_completed *it = NULL;
    ck_assert_int_eq(cf_as_completed_new(&it, fs, N, CF_TEST_LONG), 0);
    cf_future *f;
    int count = 0;
    while (cf_as_completed_next(&f, it) == 0) {
        const char *input = cf_future_get_data(f);
        const void *data;
        size_t len;
        ck_assert_int_eq(cf_future_result_bytes(&data, &len, f, 0), 0);
        ck_assert_uint_eq(len, strlen(input));
        ck_assert_mem_eq(data, input, len);
        count++;
    }
    ck_assert_int_eq(count, N);
    cf_as_completed_free(it);
    for (int i = 0; i < N; i++)
        cf_future_unref(fs[i]);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

#ifndef CF_TEST_NO_COROUTINES
static int task_returning_arg(void *arg, void **result)
{
    ck_assert_int_eq(cf_sleep(0), 0);
    *result = arg;
    return 0;
}
#endif

START_TEST(test_loop_futures_and_tasks)
{
    cf_loop *loop = NULL;
    ck_assert_int_eq(cf_loop_new(&loop, NULL), 0);
    int a, b;
    cf_future *lf = NULL;
    ck_assert_int_eq(cf_loop_create_future(&lf, loop), 0);
    cf_future_set_data(lf, &a);
    ck_assert_int_eq(cf_future_set_result(lf, &b, NULL), 0);
    ck_assert_ptr_eq(cf_future_get_data(lf), &a);
    cf_future_unref(lf);
#ifndef CF_TEST_NO_COROUTINES
    cf_future *t = NULL;
    ck_assert_int_eq(cf_loop_create_task(&t, loop, task_returning_arg, &b, NULL), 0);
    cf_future_set_data(t, &a);
    void *value = NULL;
    ck_assert_int_eq(cf_loop_run_until_complete(&value, loop, t), 0);
    ck_assert_ptr_eq(value, &b);
    ck_assert_ptr_eq(cf_future_get_data(t), &a);
    cf_future_unref(t);
#endif
    ck_assert_int_eq(cf_loop_free(loop), 0);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("future_data");
    TCase *tc = cf_test_tcase("data");
    tcase_add_test(tc, test_plain_future);
    tcase_add_test(tc, test_recycled_future_has_none);
    tcase_add_test(tc, test_many_futures_with_data);
    tcase_add_test(tc, test_thread_pool_as_completed_and_wait);
    tcase_add_test(tc, test_done_callback_sees_data);
    tcase_add_test(tc, test_set_while_completing);
    tcase_add_test(tc, test_set_while_a_thread_sleeps);
    tcase_add_test(tc, test_process_pool);
    tcase_add_test(tc, test_loop_futures_and_tasks);
    suite_add_tcase(s, tc);
    return s;
}

CF_TEST_MAIN(suite)
