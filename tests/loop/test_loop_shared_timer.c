/* Shared timers (white-box, lib/loop/shared_timer.c): entries of one duration share a timer that
 * is re-armed lazily; every armed entry expires exactly once, not before its deadline, in
 * deadline order; a stopped one never does; durations beyond the shared lists get timers of
 * their own. */
#include "cf_test.h"
#include "loop/shared_timer.h"

typedef struct probe {
    cf__shared_timer t;
    int fired;
    int order;
    double at;
    double deadline;
} probe;

static int fired_total, expected_total;
static cf_loop *loop;

static void expire(cf_loop *l, cf__shared_timer *t)
{
    probe *p = CF__CONTAINER_OF(t, probe, t);
    p->fired++;
    p->order = ++fired_total;
    p->at = cf_test_monotonic();
    if (fired_total == expected_total)
        cf_loop_stop(l);
}

static void setup(void)
{
    fired_total = 0;
    ck_assert_int_eq(cf_loop_new(&loop, NULL), 0);
}

static void teardown(void)
{
    ck_assert_int_eq(cf_loop_free(loop), 0);
}

/* Arms `p` `delay` seconds from now, in the list for `duration` seconds. */
static void arm(probe *p, double delay, double duration)
{
    int64_t now = cf__now_ns();
    p->deadline = (double)(now + (int64_t)(delay * 1e9)) / 1e9;
    ck_assert_int_eq(cf__shared_timer_arm(loop, &p->t, now + (int64_t)(delay * 1e9),
                                          (int64_t)(duration * 1e9), expire),
                     0);
}

static void check_fired_once_on_time(probe *p)
{
    ck_assert_int_eq(p->fired, 1);
    ck_assert(p->at >= p->deadline - 1e-6);
}

START_TEST(test_same_duration_in_order)
{
    probe p[4] = {0};
    for (int i = 0; i < 4; i++)
        arm(&p[i], 0.02 + 0.005 * i, 0.02);
    /* Stopping the head leaves the shared timer armed for it: it must re-arm for the next. */
    cf__shared_timer_stop(loop, &p[0].t);
    cf__shared_timer_stop(loop, &p[0].t); /* twice: no-op */
    expected_total = 3;
    ck_assert_int_eq(cf_loop_run_forever(loop), 0);
    ck_assert_int_eq(p[0].fired, 0);
    for (int i = 1; i < 4; i++) {
        check_fired_once_on_time(&p[i]);
        ck_assert_int_eq(p[i].order, i);
    }
}
END_TEST

START_TEST(test_earlier_deadline_sorted_in)
{
    /* A call that waits a second time within its first deadline arms an earlier deadline than
     * the list's tail: it must still expire first. */
    probe late = {0}, early = {0};
    arm(&late, 0.05, 0.05);
    arm(&early, 0.01, 0.05);
    expected_total = 2;
    ck_assert_int_eq(cf_loop_run_forever(loop), 0);
    check_fired_once_on_time(&early);
    check_fired_once_on_time(&late);
    ck_assert_int_eq(early.order, 1);
    ck_assert_int_eq(late.order, 2);
}
END_TEST

START_TEST(test_many_durations)
{
    /* More durations than shared lists: the rest get timers of their own; all expire. */
    enum { N = 20 };
    probe p[N] = {0};
    for (int i = 0; i < N; i++)
        arm(&p[i], 0.001 * (N - i), 0.001 * (N - i)); /* every duration differs */
    cf__shared_timer_stop(loop, &p[3].t);
    cf__shared_timer_stop(loop, &p[15].t);
    expected_total = N - 2;
    ck_assert_int_eq(cf_loop_run_forever(loop), 0);
    for (int i = 0; i < N; i++) {
        if (i == 3 || i == 15)
            ck_assert_int_eq(p[i].fired, 0);
        else
            check_fired_once_on_time(&p[i]);
    }
    /* Deadline order across the lists and the own timers, by the deadlines actually armed:
     * under valgrind on a loaded machine arming one probe can take longer than the 1 ms between
     * the nominal delays, so p[i] is not always due before p[i - 1]. */
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++)
            if (p[i].fired && p[j].fired && p[i].deadline < p[j].deadline)
                ck_assert(p[i].at <= p[j].at + 1e-3);
}
END_TEST

START_TEST(test_rearm_after_stop_and_expiry)
{
    probe p = {0};
    arm(&p, 3600, 3600);
    cf__shared_timer_stop(loop, &p.t);
    arm(&p, 0.005, 0.005);
    expected_total = 1;
    ck_assert_int_eq(cf_loop_run_forever(loop), 0);
    check_fired_once_on_time(&p);
    arm(&p, 0.005, 0.005);
    expected_total = 2;
    ck_assert_int_eq(cf_loop_run_forever(loop), 0);
    ck_assert_int_eq(p.fired, 2);
}
END_TEST

START_TEST(test_close_with_entries_stopped)
{
    /* Entries stopped before close leave their lists empty, whatever timers are still armed
     * (close drops those). */
    probe p[3] = {0};
    for (int i = 0; i < 3; i++)
        arm(&p[i], 3600, 3600);
    for (int i = 0; i < 3; i++)
        cf__shared_timer_stop(loop, &p[i].t);
    ck_assert_int_eq(cf_loop_close(loop), 0);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(p[i].fired, 0);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("loop_shared_timer");
    TCase *tc = cf_test_tcase("shared_timer");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_same_duration_in_order);
    tcase_add_test(tc, test_earlier_deadline_sorted_in);
    tcase_add_test(tc, test_many_durations);
    tcase_add_test(tc, test_rearm_after_stop_and_expiry);
    tcase_add_test(tc, test_close_with_entries_stopped);
    suite_add_tcase(s, tc);
    return s;
}

CF_TEST_MAIN(suite)
