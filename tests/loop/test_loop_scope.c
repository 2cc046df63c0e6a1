/* Structured concurrency in loop tasks: task groups (asyncio.TaskGroup) and timeout scopes
 * (asyncio.timeout). The loop is stepped one iteration at a time where an interleaving
 * matters, and deadlines are set in the past ("expires in the next iteration") rather than
 * waited for, so nothing depends on the speed of the machine. Replayed asyncio bugs:
 *   gh-95289   TaskGroup: the group's own cancellation of the parent must be withdrawn
 *   gh-116720  nested/outer cancellation must not be swallowed by a TaskGroup
 *   gh-102780  timeout() used after the task caught a cancellation
 *   gh-134471  timeout(0) must not swallow a cancellation pending before it
 *   asyncio#201 / #343: an item handed to Queue.get as its timeout expires is not lost */
#include <stdint.h>
#include <stdlib.h>

#include "cf_test_sync.h"

#ifndef CF_TEST_NO_COROUTINES

static cf_loop *new_loop(void)
{
    cf_loop *loop;
    ck_assert_int_eq(cf_loop_new(&loop, NULL), 0);
    return loop;
}

static cf_future *spawn(cf_loop *loop, cf_fn fn, void *arg)
{
    cf_future *t;
    ck_assert_int_eq(cf_loop_create_task(&t, loop, fn, arg, NULL), 0);
    return t;
}

static void step(cf_loop *loop)
{
    ck_assert_int_eq(cf_loop_stop(loop), 0);
    ck_assert_int_eq(cf_loop_run_forever(loop), 0);
}

static int run(cf_loop *loop, cf_future *t)
{
    return cf_loop_run_until_complete(NULL, loop, t);
}

/* ---- children ---- */

static int child_value(void *arg, void **result)
{
    ck_assert_int_eq(cf_sleep(0), 0);
    *result = arg;
    return 0;
}

/* Fails with the code in arg after `1` yield. */
static int child_fail(void *arg, void **result)
{
    (void)result;
    ck_assert_int_eq(cf_sleep(0), 0);
    cf_task_fail((int)(intptr_t)arg, "child failed");
    return (int)(intptr_t)arg;
}

/* Fails at once, without yielding. */
static int child_fail_now(void *arg, void **result)
{
    (void)result;
    return (int)(intptr_t)arg;
}

/* Sleeps (practically) forever; counts its cancellation. */
static int child_sleeper(void *arg, void **result)
{
    (void)result;
    int rc = cf_sleep(3600);
    if (rc == CF_ECANCELLED && arg)
        (*(int *)arg)++;
    return rc;
}

/* ---- task groups ---- */

typedef struct gstate {
    cf_loop_task_group *g;
    cf_future *kids[4];
    int exit_rc;
    int body_rc;
    int after; /* the parent's next suspension after exit */
    int cancelled_kids;
    cf_loop_event *event;
    size_t nfailed;
    int failed_codes[4];
} gstate;

static void collect_failures(gstate *s)
{
    s->nfailed = cf_loop_task_group_failure_count(s->g);
    for (size_t i = 0; i < s->nfailed && i < 4; i++) {
        int code;
        ck_assert_int_eq(cf_future_exception(&code, NULL, cf_loop_task_group_failure(s->g, i), 0),
                         0);
        s->failed_codes[i] = code;
    }
    ck_assert_ptr_null(cf_loop_task_group_failure(s->g, s->nfailed));
}

static int group_values(void *arg, void **result)
{
    (void)result;
    gstate *s = arg;
    ck_assert_int_eq(cf_loop_task_group_enter(&s->g), 0);
    for (intptr_t i = 0; i < 3; i++)
        ck_assert_int_eq(
            cf_loop_task_group_create_task(&s->kids[i], s->g, child_value, (void *)(i + 10), NULL),
            0);
    ck_assert_int_eq(cf_loop_task_group_create_task(NULL, s->g, child_value, NULL, NULL), 0);
    s->exit_rc = cf_loop_task_group_exit(s->g, 0);
    ck_assert_int_eq(cf_loop_task_group_exit(s->g, 0), CF_EINVALSTATE); /* once */
    ck_assert_int_eq(cf_loop_task_group_create_task(NULL, s->g, child_value, NULL, NULL),
                     CF_EINVALSTATE);
    collect_failures(s);
    cf_loop_task_group_free(s->g);
    return 0;
}

START_TEST(test_group_waits_for_all)
{
    cf_loop *loop = new_loop();
    gstate s = {.exit_rc = 1};
    cf_future *t = spawn(loop, group_values, &s);
    ck_assert_int_eq(run(loop, t), 0);
    ck_assert_int_eq(s.exit_rc, 0);
    ck_assert_uint_eq(s.nfailed, 0);
    for (intptr_t i = 0; i < 3; i++) {
        void *v;
        ck_assert_int_eq(cf_future_result(&v, s.kids[i], 0), 0);
        ck_assert_ptr_eq(v, (void *)(i + 10));
        cf_future_unref(s.kids[i]);
    }
    cf_future_unref(t);
    cf_loop_free(loop);
}
END_TEST

/* The first failure cancels the other children and interrupts the parent's body; exit reports
 * CF_ETASK and the group's own cancellation of the parent is withdrawn (gh-95289): the parent
 * carries on, and its next suspension is not cancelled. */
static int group_first_failure(void *arg, void **result)
{
    (void)result;
    gstate *s = arg;
    ck_assert_int_eq(cf_loop_task_group_enter(&s->g), 0);
    ck_assert_int_eq(cf_loop_task_group_create_task(&s->kids[0], s->g, child_fail,
                                                    (void *)(intptr_t)-1001, NULL),
                     0);
    ck_assert_int_eq(
        cf_loop_task_group_create_task(&s->kids[1], s->g, child_sleeper, &s->cancelled_kids, NULL),
        0);
    ck_assert_int_eq(
        cf_loop_task_group_create_task(&s->kids[2], s->g, child_sleeper, &s->cancelled_kids, NULL),
        0);
    s->body_rc = cf_loop_event_wait(s->event); /* never set: the failure interrupts it */
    ck_assert_int_eq(cf_loop_task_group_create_task(NULL, s->g, child_value, NULL, NULL),
                     CF_EINVALSTATE); /* shutting down */
    s->exit_rc = cf_loop_task_group_exit(s->g, s->body_rc);
    collect_failures(s);
    s->after = cf_sleep(0);
    cf_loop_task_group_free(s->g);
    return 0;
}

START_TEST(test_group_first_failure_cancels_the_rest)
{
    cf_loop *loop = new_loop();
    gstate s = {.exit_rc = 1, .after = 1};
    ck_assert_int_eq(cf_loop_event_new(&s.event, loop), 0);
    cf_future *t = spawn(loop, group_first_failure, &s);
    ck_assert_int_eq(run(loop, t), 0);
    ck_assert(!cf_future_cancelled(t));
    ck_assert_int_eq(s.body_rc, CF_ECANCELLED);
    ck_assert_int_eq(s.exit_rc, CF_ETASK);
    ck_assert_int_eq(s.after, 0);
    ck_assert_uint_eq(s.nfailed, 1);
    ck_assert_int_eq(s.failed_codes[0], -1001);
    ck_assert_int_eq(s.cancelled_kids, 2);
    ck_assert(cf_future_cancelled(s.kids[1]));
    ck_assert(cf_future_cancelled(s.kids[2]));
    for (int i = 0; i < 3; i++)
        cf_future_unref(s.kids[i]);
    cf_future_unref(t);
    cf_loop_event_free(s.event);
    cf_loop_free(loop);
}
END_TEST

/* Several children fail in the same iteration: every failure is reported, in order. */
static int group_many_failures(void *arg, void **result)
{
    (void)result;
    gstate *s = arg;
    ck_assert_int_eq(cf_loop_task_group_enter(&s->g), 0);
    for (intptr_t i = 0; i < 3; i++)
        ck_assert_int_eq(
            cf_loop_task_group_create_task(NULL, s->g, child_fail_now, (void *)(-2000 - i), NULL),
            0);
    ck_assert_int_eq(
        cf_loop_task_group_create_task(&s->kids[0], s->g, child_sleeper, &s->cancelled_kids, NULL),
        0);
    s->exit_rc = cf_loop_task_group_exit(s->g, 0); /* the parent waits in exit */
    collect_failures(s);
    s->after = cf_sleep(0);
    cf_loop_task_group_free(s->g);
    return 0;
}

START_TEST(test_group_reports_every_failure)
{
    cf_loop *loop = new_loop();
    gstate s = {.exit_rc = 1, .after = 1};
    cf_future *t = spawn(loop, group_many_failures, &s);
    ck_assert_int_eq(run(loop, t), 0);
    ck_assert_int_eq(s.exit_rc, CF_ETASK);
    ck_assert_uint_eq(s.nfailed, 3);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(s.failed_codes[i], -2000 - i);
    ck_assert_int_eq(s.cancelled_kids, 1);
    ck_assert_int_eq(s.after, 0);
    cf_future_unref(s.kids[0]);
    cf_future_unref(t);
    cf_loop_free(loop);
}
END_TEST

/* Cancelled from outside while the body runs: the children are cancelled and exit reports
 * CF_ECANCELLED; the parent ends cancelled. The same while the parent waits in exit. */
static int group_cancelled_body(void *arg, void **result)
{
    (void)result;
    gstate *s = arg;
    ck_assert_int_eq(cf_loop_task_group_enter(&s->g), 0);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(cf_loop_task_group_create_task(&s->kids[i], s->g, child_sleeper,
                                                        &s->cancelled_kids, NULL),
                         0);
    s->body_rc = s->event ? cf_loop_event_wait(s->event) : 0;
    s->exit_rc = cf_loop_task_group_exit(s->g, s->body_rc);
    cf_loop_task_group_free(s->g);
    return s->exit_rc;
}

static void cancelled_from_outside(bool in_body)
{
    cf_loop *loop = new_loop();
    gstate s = {.exit_rc = 1, .body_rc = 1};
    if (in_body)
        ck_assert_int_eq(cf_loop_event_new(&s.event, loop), 0);
    cf_future *t = spawn(loop, group_cancelled_body, &s);
    step(loop);
    step(loop); /* the children sleep; the parent waits (in its body, or in exit) */
    ck_assert_int_eq(s.exit_rc, 1);
    ck_assert(cf_future_cancel(t));
    ck_assert_int_eq(run(loop, t), CF_ECANCELLED);
    ck_assert(cf_future_cancelled(t));
    ck_assert_int_eq(s.exit_rc, CF_ECANCELLED);
    ck_assert_int_eq(s.body_rc, in_body ? CF_ECANCELLED : 0);
    ck_assert_int_eq(s.cancelled_kids, 2);
    for (int i = 0; i < 2; i++) {
        ck_assert(cf_future_cancelled(s.kids[i]));
        cf_future_unref(s.kids[i]);
    }
    cf_future_unref(t);
    cf_loop_event_free(s.event);
    cf_loop_free(loop);
}

START_TEST(test_group_cancelled_in_body)
{
    cancelled_from_outside(true);
}
END_TEST

START_TEST(test_group_cancelled_in_exit)
{
    cancelled_from_outside(false);
}
END_TEST

/* A child fails and the parent is cancelled from outside in the same iteration: the failure
 * is reported (CF_ETASK) and the outside cancellation is not swallowed: it is delivered at the
 * parent's next suspension point (gh-116720). */
static int group_failure_and_outside(void *arg, void **result)
{
    (void)result;
    gstate *s = arg;
    ck_assert_int_eq(cf_loop_task_group_enter(&s->g), 0);
    ck_assert_int_eq(cf_loop_task_group_create_task(&s->kids[0], s->g, child_fail,
                                                    (void *)(intptr_t)-1001, NULL),
                     0);
    s->body_rc = cf_loop_event_wait(s->event);
    s->exit_rc = cf_loop_task_group_exit(s->g, s->body_rc);
    collect_failures(s);
    cf_loop_task_group_free(s->g);
    s->after = cf_sleep(0);
    return s->after;
}

START_TEST(test_group_failure_and_outside_cancel)
{
    cf_loop *loop = new_loop();
    gstate s = {.exit_rc = 1, .after = 1};
    ck_assert_int_eq(cf_loop_event_new(&s.event, loop), 0);
    cf_future *t = spawn(loop, group_failure_and_outside, &s);
    step(loop); /* parent waits on the event */
    step(loop); /* the child yields */
    step(loop); /* the child fails: its completion is processed in the next iteration */
    ck_assert(cf_future_cancel(t));
    ck_assert_int_eq(run(loop, t), CF_ECANCELLED);
    ck_assert_int_eq(s.body_rc, CF_ECANCELLED);
    ck_assert_int_eq(s.exit_rc, CF_ETASK);
    ck_assert_uint_eq(s.nfailed, 1);
    ck_assert_int_eq(s.after, CF_ECANCELLED);
    ck_assert(cf_future_cancelled(t));
    cf_future_unref(s.kids[0]);
    cf_future_unref(t);
    cf_loop_event_free(s.event);
    cf_loop_free(loop);
}
END_TEST

/* The group cancels a parent whose wait was already completed (woken in the same iteration):
 * the body never sees that cancellation, and exit withdraws it entirely (asyncio 3.13's
 * uncancel), so the parent's next suspension is not cancelled. */
static void set_event_cb(cf_loop *loop, void *data)
{
    (void)loop;
    ck_assert_int_eq(cf_loop_event_set(data), 0);
}

static int group_unnoticed_cancel(void *arg, void **result)
{
    (void)result;
    gstate *s = arg;
    ck_assert_int_eq(cf_loop_task_group_enter(&s->g), 0);
    ck_assert_int_eq(cf_loop_task_group_create_task(&s->kids[0], s->g, child_fail_now,
                                                    (void *)(intptr_t)-1001, NULL),
                     0);
    /* The child fails in the next iteration; its completion and this callback both run in the
     * one after, the callback first. */
    ck_assert_int_eq(cf_loop_call_soon(NULL, cf_loop_current(), set_event_cb, s->event), 0);
    s->body_rc = cf_loop_event_wait(s->event);
    s->exit_rc = cf_loop_task_group_exit(s->g, s->body_rc);
    s->after = cf_sleep(0);
    cf_loop_task_group_free(s->g);
    return 0;
}

START_TEST(test_group_unnoticed_cancel_is_withdrawn)
{
    cf_loop *loop = new_loop();
    gstate s = {.exit_rc = 1, .after = 1};
    ck_assert_int_eq(cf_loop_event_new(&s.event, loop), 0);
    cf_future *t = spawn(loop, group_unnoticed_cancel, &s);
    ck_assert_int_eq(run(loop, t), 0);
    ck_assert_int_eq(s.body_rc, 0);
    ck_assert_int_eq(s.exit_rc, CF_ETASK);
    ck_assert_int_eq(s.after, 0);
    ck_assert(!cf_future_cancelled(t));
    cf_future_unref(s.kids[0]);
    cf_future_unref(t);
    cf_loop_event_free(s.event);
    cf_loop_free(loop);
}
END_TEST

/* The body fails: children are cancelled and exit returns the body's code. */
static int group_body_error(void *arg, void **result)
{
    (void)result;
    gstate *s = arg;
    ck_assert_int_eq(cf_loop_task_group_enter(&s->g), 0);
    ck_assert_int_eq(
        cf_loop_task_group_create_task(&s->kids[0], s->g, child_sleeper, &s->cancelled_kids, NULL),
        0);
    ck_assert_int_eq(cf_sleep(0), 0);
    s->exit_rc = cf_loop_task_group_exit(s->g, -3000);
    cf_loop_task_group_free(s->g);
    return 0;
}

START_TEST(test_group_body_error)
{
    cf_loop *loop = new_loop();
    gstate s = {.exit_rc = 1};
    cf_future *t = spawn(loop, group_body_error, &s);
    ck_assert_int_eq(run(loop, t), 0);
    ck_assert_int_eq(s.exit_rc, -3000);
    ck_assert_int_eq(s.cancelled_kids, 1);
    cf_future_unref(s.kids[0]);
    cf_future_unref(t);
    cf_loop_free(loop);
}
END_TEST

/* Children may add children while the parent waits in exit; exit waits for them too. */
typedef struct spawner {
    cf_loop_task_group *g;
    int depth;
    int *ran;
} spawner;

static int child_spawner(void *arg, void **result)
{
    (void)result;
    spawner *sp = arg;
    (*sp->ran)++;
    ck_assert_int_eq(cf_sleep(0), 0);
    if (sp->depth > 0) {
        spawner *next = malloc(sizeof(*next));
        *next = (spawner){.g = sp->g, .depth = sp->depth - 1, .ran = sp->ran};
        ck_assert_int_eq(cf_loop_task_group_create_task(NULL, sp->g, child_spawner, next, NULL), 0);
    }
    free(sp);
    return 0;
}

typedef struct spawn_state {
    int ran;
    int exit_rc;
} spawn_state;

static int group_nested_spawns(void *arg, void **result)
{
    (void)result;
    spawn_state *st = arg;
    cf_loop_task_group *g;
    ck_assert_int_eq(cf_loop_task_group_enter(&g), 0);
    spawner *first = malloc(sizeof(*first));
    *first = (spawner){.g = g, .depth = 4, .ran = &st->ran};
    ck_assert_int_eq(cf_loop_task_group_create_task(NULL, g, child_spawner, first, NULL), 0);
    st->exit_rc = cf_loop_task_group_exit(g, 0);
    ck_assert_int_eq(st->ran, 5);
    cf_loop_task_group_free(g);
    return 0;
}

START_TEST(test_group_children_spawn_children)
{
    cf_loop *loop = new_loop();
    spawn_state st = {.exit_rc = 1};
    cf_future *t = spawn(loop, group_nested_spawns, &st);
    ck_assert_int_eq(run(loop, t), 0);
    ck_assert_int_eq(st.exit_rc, 0);
    ck_assert_int_eq(st.ran, 5);
    cf_future_unref(t);
    cf_loop_free(loop);
}
END_TEST

/* Misuse: outside a task, from another task, from another thread; free before exit cancels
 * the children. */
typedef struct misuse {
    cf_loop_task_group *g;
    int exit_rc;
    int thread_rc;
    int cancelled;
    cf_future *kid;
} misuse;

static int intruder(void *arg, void **result)
{
    (void)result;
    misuse *m = arg;
    m->exit_rc = cf_loop_task_group_exit(m->g, 0);
    return 0;
}

static void *create_from_thread(void *arg)
{
    misuse *m = arg;
    m->thread_rc = cf_loop_task_group_create_task(NULL, m->g, child_value, NULL, NULL);
    return NULL;
}

static int group_abandoned(void *arg, void **result)
{
    (void)result;
    misuse *m = arg;
    ck_assert_int_eq(cf_loop_task_group_enter(&m->g), 0);
    ck_assert_int_eq(
        cf_loop_task_group_create_task(&m->kid, m->g, child_sleeper, &m->cancelled, NULL), 0);
    cf_future *other = NULL;
    ck_assert_int_eq(cf_loop_create_task(&other, cf_loop_current(), intruder, m, NULL), 0);
    ck_assert_int_eq(cf_await(NULL, other), 0);
    cf_future_unref(other);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, create_from_thread, m), 0);
    pthread_join(th, NULL);
    cf_loop_task_group_free(m->g); /* without exit: the child is cancelled */
    return 0;
}

START_TEST(test_group_misuse)
{
    cf_loop_task_group *g = (cf_loop_task_group *)1;
    ck_assert_int_eq(cf_loop_task_group_enter(NULL), CF_EINVAL);
    ck_assert_int_eq(cf_loop_task_group_enter(&g), CF_EINVALSTATE);
    ck_assert_ptr_null(g);
    ck_assert_int_eq(cf_loop_task_group_exit(NULL, 0), CF_EINVAL);
    ck_assert_int_eq(cf_loop_task_group_create_task(NULL, NULL, child_value, NULL, NULL),
                     CF_EINVAL);
    ck_assert_uint_eq(cf_loop_task_group_failure_count(NULL), 0);
    ck_assert_ptr_null(cf_loop_task_group_failure(NULL, 0));
    cf_loop_task_group_free(NULL);

    cf_loop *loop = new_loop();
    misuse m = {.exit_rc = 1, .thread_rc = 1};
    cf_future *t = spawn(loop, group_abandoned, &m);
    ck_assert_int_eq(run(loop, t), 0);
    ck_assert_int_eq(m.exit_rc, CF_EPERM);
    ck_assert_int_eq(m.thread_rc, CF_EPERM);
    ck_assert_int_eq(run(loop, m.kid), CF_ECANCELLED);
    ck_assert_int_eq(m.cancelled, 1);
    cf_future_unref(m.kid);
    cf_future_unref(t);
    cf_loop_free(loop);
}
END_TEST

/* Closing the loop while a parent waits in exit: exit returns CF_ECANCELLED and the children
 * are wound down; nothing leaks. */
START_TEST(test_group_close_while_exiting)
{
    cf_loop *loop = new_loop();
    gstate s = {.exit_rc = 1, .body_rc = 1};
    cf_future *t = spawn(loop, group_cancelled_body, &s);
    step(loop);
    step(loop);
    ck_assert_int_eq(cf_loop_close(loop), 0);
    ck_assert_int_eq(s.exit_rc, CF_ECANCELLED);
    ck_assert(cf_future_cancelled(t));
    for (int i = 0; i < 2; i++) {
        ck_assert(cf_future_cancelled(s.kids[i]));
        cf_future_unref(s.kids[i]);
    }
    cf_future_unref(t);
    cf_loop_free(loop);
}
END_TEST

/* ---- timeout scopes ---- */

typedef struct tstate {
    cf_loop_timeout *outer, *inner;
    cf_loop_event *event;
    cf_loop_queue *queue;
    int body_rc;
    int inner_rc, outer_rc;
    int after;
    bool inner_expired, outer_expired;
    double when;
    void *item;
} tstate;

static tstate new_tstate(cf_loop *loop)
{
    tstate s = {.body_rc = 1, .inner_rc = 1, .outer_rc = 1, .after = 1};
    ck_assert_int_eq(cf_loop_event_new(&s.event, loop), 0);
    return s;
}

static void free_tstate(tstate *s)
{
    cf_loop_event_free(s->event);
    cf_loop_queue_free(s->queue);
}

static int timeout_expires(void *arg, void **result)
{
    (void)result;
    tstate *s = arg;
    ck_assert_int_eq(cf_loop_timeout_enter(&s->outer, 0), 0); /* expires next iteration */
    ck_assert(!cf_loop_timeout_expired(s->outer));
    s->body_rc = cf_loop_event_wait(s->event);
    s->outer_rc = cf_loop_timeout_exit(s->outer, s->body_rc);
    s->outer_expired = cf_loop_timeout_expired(s->outer);
    ck_assert_int_eq(cf_loop_timeout_exit(s->outer, 0), CF_EINVALSTATE);
    ck_assert_int_eq(cf_loop_timeout_reschedule(s->outer, 0), CF_EINVALSTATE);
    cf_loop_timeout_free(s->outer);
    s->after = cf_sleep(0); /* the scope's cancellation was withdrawn */
    return 0;
}

START_TEST(test_timeout_expires)
{
    cf_loop *loop = new_loop();
    tstate s = new_tstate(loop);
    cf_future *t = spawn(loop, timeout_expires, &s);
    ck_assert_int_eq(run(loop, t), 0);
    ck_assert_int_eq(s.body_rc, CF_ECANCELLED);
    ck_assert_int_eq(s.outer_rc, CF_ETIMEDOUT);
    ck_assert(s.outer_expired);
    ck_assert_int_eq(s.after, 0);
    ck_assert(!cf_future_cancelled(t));
    cf_future_unref(t);
    free_tstate(&s);
    cf_loop_free(loop);
}
END_TEST

static int timeout_not_reached(void *arg, void **result)
{
    (void)result;
    tstate *s = arg;
    double before = cf_loop_time(NULL);
    ck_assert_int_eq(cf_loop_timeout_enter(&s->outer, 100), 0);
    s->when = cf_loop_timeout_when(s->outer);
    ck_assert(s->when >= before + 100);
    ck_assert(s->when <= cf_loop_time(NULL) + 100);
    s->body_rc = cf_sleep(0);
    s->outer_rc = cf_loop_timeout_exit(s->outer, -5000); /* any code passes through */
    s->outer_expired = cf_loop_timeout_expired(s->outer);
    cf_loop_timeout_free(s->outer);
    /* No deadline at all. */
    ck_assert_int_eq(cf_loop_timeout_enter(&s->inner, CF_FOREVER), 0);
    ck_assert(cf_loop_timeout_when(s->inner) == CF_FOREVER);
    ck_assert_int_eq(cf_sleep(0), 0);
    s->inner_rc = cf_loop_timeout_exit(s->inner, 0);
    cf_loop_timeout_free(s->inner);
    return 0;
}

START_TEST(test_timeout_not_reached)
{
    cf_loop *loop = new_loop();
    tstate s = new_tstate(loop);
    cf_future *t = spawn(loop, timeout_not_reached, &s);
    ck_assert_int_eq(run(loop, t), 0);
    ck_assert_int_eq(s.body_rc, 0);
    ck_assert_int_eq(s.outer_rc, -5000);
    ck_assert(!s.outer_expired);
    ck_assert_int_eq(s.inner_rc, 0);
    cf_future_unref(t);
    free_tstate(&s);
    cf_loop_free(loop);
}
END_TEST

/* reschedule: from no deadline to one already past (from a callback), and the query. */
static int timeout_rescheduled(void *arg, void **result)
{
    (void)result;
    tstate *s = arg;
    ck_assert_int_eq(cf_loop_timeout_enter(&s->outer, CF_FOREVER), 0);
    ck_assert_int_eq(cf_loop_timeout_reschedule(s->outer, NAN), CF_EINVAL);
    ck_assert_int_eq(cf_loop_timeout_reschedule(s->outer, cf_loop_time(NULL) + 50), 0);
    ck_assert(cf_loop_timeout_when(s->outer) > cf_loop_time(NULL) + 40);
    s->body_rc = cf_loop_event_wait(s->event);
    s->outer_rc = cf_loop_timeout_exit(s->outer, s->body_rc);
    cf_loop_timeout_free(s->outer);
    return 0;
}

START_TEST(test_timeout_reschedule)
{
    cf_loop *loop = new_loop();
    tstate s = new_tstate(loop);
    cf_future *t = spawn(loop, timeout_rescheduled, &s);
    step(loop);
    step(loop); /* waiting with a deadline 50 s away */
    ck_assert_int_eq(s.body_rc, 1);
    ck_assert_int_eq(cf_loop_timeout_reschedule(s.outer, 0), 0); /* already past */
    ck_assert_int_eq(run(loop, t), 0);
    ck_assert_int_eq(s.body_rc, CF_ECANCELLED);
    ck_assert_int_eq(s.outer_rc, CF_ETIMEDOUT);
    cf_future_unref(t);
    free_tstate(&s);
    cf_loop_free(loop);
}
END_TEST

/* Nested scopes: the one whose deadline passed reports CF_ETIMEDOUT, the other passes the
 * outcome on. Then both expire in the same iteration: the inner one sees a request that is not
 * its own and passes CF_ECANCELLED on; the outer one reports CF_ETIMEDOUT. */
static int timeout_nested(void *arg, void **result)
{
    (void)result;
    tstate *s = arg;
    /* The inner deadline passes. */
    ck_assert_int_eq(cf_loop_timeout_enter(&s->outer, 100), 0);
    ck_assert_int_eq(cf_loop_timeout_enter(&s->inner, 0), 0);
    s->body_rc = cf_loop_event_wait(s->event);
    s->inner_rc = cf_loop_timeout_exit(s->inner, s->body_rc);
    s->outer_rc = cf_loop_timeout_exit(s->outer, s->inner_rc);
    ck_assert_int_eq(s->body_rc, CF_ECANCELLED);
    ck_assert_int_eq(s->inner_rc, CF_ETIMEDOUT);
    ck_assert_int_eq(s->outer_rc, CF_ETIMEDOUT);
    ck_assert(cf_loop_timeout_expired(s->inner));
    ck_assert(!cf_loop_timeout_expired(s->outer));
    cf_loop_timeout_free(s->inner);
    cf_loop_timeout_free(s->outer);
    /* The outer deadline passes. */
    ck_assert_int_eq(cf_loop_timeout_enter(&s->outer, 0), 0);
    ck_assert_int_eq(cf_loop_timeout_enter(&s->inner, CF_FOREVER), 0);
    s->body_rc = cf_loop_event_wait(s->event);
    s->inner_rc = cf_loop_timeout_exit(s->inner, s->body_rc);
    s->outer_rc = cf_loop_timeout_exit(s->outer, s->inner_rc);
    ck_assert_int_eq(s->inner_rc, CF_ECANCELLED);
    ck_assert_int_eq(s->outer_rc, CF_ETIMEDOUT);
    cf_loop_timeout_free(s->inner);
    cf_loop_timeout_free(s->outer);
    /* Both pass at once (equal deadlines fire in the order they were set). */
    double now = cf_loop_time(NULL);
    ck_assert_int_eq(cf_loop_timeout_enter_at(&s->outer, now), 0);
    ck_assert_int_eq(cf_loop_timeout_enter_at(&s->inner, now), 0);
    s->body_rc = cf_loop_event_wait(s->event);
    s->inner_rc = cf_loop_timeout_exit(s->inner, s->body_rc);
    s->outer_rc = cf_loop_timeout_exit(s->outer, s->inner_rc);
    s->inner_expired = cf_loop_timeout_expired(s->inner);
    s->outer_expired = cf_loop_timeout_expired(s->outer);
    cf_loop_timeout_free(s->inner);
    cf_loop_timeout_free(s->outer);
    s->after = cf_sleep(0);
    return 0;
}

START_TEST(test_timeout_nested)
{
    cf_loop *loop = new_loop();
    tstate s = new_tstate(loop);
    cf_future *t = spawn(loop, timeout_nested, &s);
    ck_assert_int_eq(run(loop, t), 0);
    ck_assert_int_eq(s.body_rc, CF_ECANCELLED);
    ck_assert(s.inner_expired && s.outer_expired);
    ck_assert_int_eq(s.inner_rc, CF_ECANCELLED);
    ck_assert_int_eq(s.outer_rc, CF_ETIMEDOUT);
    ck_assert_int_eq(s.after, 0);
    cf_future_unref(t);
    free_tstate(&s);
    cf_loop_free(loop);
}
END_TEST

/* The deadline passes and the task is cancelled from outside in the same iteration: exit must
 * not take the outside cancellation for its timeout. */
static int timeout_then_wait(void *arg, void **result)
{
    (void)result;
    tstate *s = arg;
    ck_assert_int_eq(cf_loop_timeout_enter(&s->outer, 3600), 0);
    s->body_rc = cf_loop_event_wait(s->event);
    s->outer_expired = cf_loop_timeout_expired(s->outer);
    s->outer_rc = cf_loop_timeout_exit(s->outer, s->body_rc);
    cf_loop_timeout_free(s->outer);
    return s->outer_rc;
}

START_TEST(test_timeout_and_outside_cancel)
{
    cf_loop *loop = new_loop();
    tstate s = new_tstate(loop);
    cf_future *t = spawn(loop, timeout_then_wait, &s);
    step(loop);
    ck_assert_int_eq(cf_loop_timeout_reschedule(s.outer, 0), 0);
    step(loop);                     /* the deadline passes: the task is woken, cancelled */
    ck_assert_int_eq(s.body_rc, 1); /* and has not run yet when this comes */
    ck_assert(cf_future_cancel(t));
    ck_assert_int_eq(run(loop, t), CF_ECANCELLED);
    ck_assert_int_eq(s.body_rc, CF_ECANCELLED);
    ck_assert(s.outer_expired);
    ck_assert_int_eq(s.outer_rc, CF_ECANCELLED);
    ck_assert(cf_future_cancelled(t));
    cf_future_unref(t);
    free_tstate(&s);
    cf_loop_free(loop);
}
END_TEST

/* gh-102780: a task that caught a cancellation and carries on may still use a timeout scope
 * (in its clean-up, say): the scope converts its own expiry, and nothing is re-delivered. */
static int timeout_after_caught_cancel(void *arg, void **result)
{
    (void)result;
    tstate *s = arg;
    s->body_rc = cf_loop_event_wait(s->event); /* cancelled from outside: caught */
    ck_assert_int_eq(cf_loop_timeout_enter(&s->outer, 0), 0);
    s->inner_rc = cf_loop_event_wait(s->event);
    s->outer_rc = cf_loop_timeout_exit(s->outer, s->inner_rc);
    cf_loop_timeout_free(s->outer);
    s->after = cf_sleep(0);
    return 0;
}

START_TEST(test_timeout_after_caught_cancel)
{
    cf_loop *loop = new_loop();
    tstate s = new_tstate(loop);
    cf_future *t = spawn(loop, timeout_after_caught_cancel, &s);
    step(loop);
    ck_assert(cf_future_cancel(t));
    ck_assert_int_eq(run(loop, t), 0);
    ck_assert_int_eq(s.body_rc, CF_ECANCELLED);
    ck_assert_int_eq(s.inner_rc, CF_ECANCELLED);
    ck_assert_int_eq(s.outer_rc, CF_ETIMEDOUT);
    ck_assert_int_eq(s.after, 0);
    ck_assert(!cf_future_cancelled(t));
    cf_future_unref(t);
    free_tstate(&s);
    cf_loop_free(loop);
}
END_TEST

/* gh-134471: a cancellation requested (not yet delivered) before a timeout(0) scope is entered
 * is not swallowed by it: the body's wait reports it, and exit does not turn it into a
 * timeout. */
static int timeout_with_pending_cancel(void *arg, void **result)
{
    (void)result;
    tstate *s = arg;
    s->inner_rc = cf_loop_event_wait(s->event); /* woken, then cancelled before it runs */
    ck_assert_int_eq(cf_loop_timeout_enter(&s->outer, 0), 0);
    s->body_rc = cf_loop_event_wait(s->event);
    s->outer_rc = cf_loop_timeout_exit(s->outer, s->body_rc);
    cf_loop_timeout_free(s->outer);
    s->after = cf_sleep(0);
    return s->outer_rc;
}

START_TEST(test_timeout_zero_keeps_pending_cancel)
{
    cf_loop *loop = new_loop();
    tstate s = new_tstate(loop);
    cf_future *t = spawn(loop, timeout_with_pending_cancel, &s);
    step(loop);
    ck_assert_int_eq(cf_loop_event_set(s.event), 0);
    ck_assert_int_eq(cf_loop_event_clear(s.event), 0);
    ck_assert(cf_future_cancel(t));
    ck_assert_int_eq(run(loop, t), CF_ECANCELLED);
    ck_assert_int_eq(s.inner_rc, 0);
    ck_assert_int_eq(s.body_rc, CF_ECANCELLED);
    ck_assert_int_eq(s.outer_rc, CF_ECANCELLED);
    ck_assert(cf_future_cancelled(t));
    cf_future_unref(t);
    free_tstate(&s);
    cf_loop_free(loop);
}
END_TEST

/* asyncio#201 / #343 (wait_for losing Queue items): the item is handed to the getter and the
 * deadline passes in the same iteration, before the getter runs. The get completes with the
 * item (not lost), the scope reports the body's success, and the scope's cancellation is
 * withdrawn. */
static void put_cb(cf_loop *loop, void *data)
{
    (void)loop;
    ck_assert_int_eq(cf_loop_queue_try_put(data, (void *)77), 0);
}

static int get_under_timeout(void *arg, void **result)
{
    (void)result;
    tstate *s = arg;
    ck_assert_int_eq(cf_loop_timeout_enter(&s->outer, 3600), 0);
    /* Next iteration: the put runs first, then the deadline (moved to "now" below). */
    ck_assert_int_eq(cf_loop_call_soon(NULL, cf_loop_current(), put_cb, s->queue), 0);
    ck_assert_int_eq(cf_loop_timeout_reschedule(s->outer, 0), 0);
    s->body_rc = cf_loop_queue_get(&s->item, s->queue);
    s->outer_expired = cf_loop_timeout_expired(s->outer);
    s->outer_rc = cf_loop_timeout_exit(s->outer, s->body_rc);
    cf_loop_timeout_free(s->outer);
    s->after = cf_sleep(0);
    return 0;
}

START_TEST(test_timeout_queue_item_not_lost)
{
    cf_loop *loop = new_loop();
    tstate s = new_tstate(loop);
    ck_assert_int_eq(cf_loop_queue_new(&s.queue, loop, NULL), 0);
    cf_future *t = spawn(loop, get_under_timeout, &s);
    ck_assert_int_eq(run(loop, t), 0);
    ck_assert_int_eq(s.body_rc, 0);
    ck_assert_ptr_eq(s.item, (void *)77);
    ck_assert(s.outer_expired);
    ck_assert_int_eq(s.outer_rc, 0);
    ck_assert_int_eq(s.after, 0);
    ck_assert(cf_loop_queue_empty(s.queue));
    cf_future_unref(t);
    free_tstate(&s);
    cf_loop_free(loop);
}
END_TEST

/* Misuse: outside a task, exit from another task, NULLs; free without exit balances the
 * cancellation count (an expired scope freed without exit leaves no request behind). */
typedef struct tmisuse {
    cf_loop_timeout *scope;
    int exit_rc;
    int after;
} tmisuse;

static int timeout_intruder(void *arg, void **result)
{
    (void)result;
    tmisuse *m = arg;
    m->exit_rc = cf_loop_timeout_exit(m->scope, 0);
    return 0;
}

static int timeout_misused(void *arg, void **result)
{
    (void)result;
    tmisuse *m = arg;
    ck_assert_int_eq(cf_loop_timeout_enter(&m->scope, NAN), CF_EINVAL);
    ck_assert_int_eq(cf_loop_timeout_enter_at(&m->scope, NAN), CF_EINVAL);
    ck_assert_int_eq(cf_loop_timeout_enter(NULL, 1), CF_EINVAL);
    ck_assert_int_eq(cf_loop_timeout_enter(&m->scope, 0), 0);
    cf_future *other;
    ck_assert_int_eq(cf_loop_create_task(&other, cf_loop_current(), timeout_intruder, m, NULL), 0);
    ck_assert_int_eq(cf_await(NULL, other), CF_ECANCELLED); /* the deadline passed meanwhile */
    ck_assert(cf_loop_timeout_expired(m->scope));
    cf_future_unref(other);
    cf_loop_timeout_free(m->scope); /* without exit */
    m->after = cf_sleep(0);
    return 0;
}

START_TEST(test_timeout_misuse)
{
    cf_loop_timeout *scope = (cf_loop_timeout *)1;
    ck_assert_int_eq(cf_loop_timeout_enter(&scope, 1), CF_EINVALSTATE);
    ck_assert_ptr_null(scope);
    ck_assert_int_eq(cf_loop_timeout_exit(NULL, 0), CF_EINVAL);
    ck_assert_int_eq(cf_loop_timeout_reschedule(NULL, 0), CF_EINVAL);
    ck_assert(!cf_loop_timeout_expired(NULL));
    ck_assert(cf_loop_timeout_when(NULL) == CF_FOREVER);
    cf_loop_timeout_free(NULL);
    cf_loop *loop = new_loop();
    tmisuse m = {.exit_rc = 1, .after = 1};
    cf_future *t = spawn(loop, timeout_misused, &m);
    ck_assert_int_eq(run(loop, t), 0);
    ck_assert_int_eq(m.exit_rc, CF_EPERM);
    ck_assert_int_eq(m.after, 0);
    cf_future_unref(t);
    cf_loop_free(loop);
}
END_TEST

/* A timeout scope around a task group: the deadline cancels the parent, the group cancels the
 * children, exit of the group reports CF_ECANCELLED and the scope turns it into a timeout. */
static int group_under_timeout(void *arg, void **result)
{
    (void)result;
    gstate *s = arg;
    cf_loop_timeout *scope;
    ck_assert_int_eq(cf_loop_timeout_enter(&scope, 0), 0);
    ck_assert_int_eq(cf_loop_task_group_enter(&s->g), 0);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(cf_loop_task_group_create_task(&s->kids[i], s->g, child_sleeper,
                                                        &s->cancelled_kids, NULL),
                         0);
    s->body_rc = cf_loop_task_group_exit(s->g, 0);
    s->exit_rc = cf_loop_timeout_exit(scope, s->body_rc);
    cf_loop_timeout_free(scope);
    cf_loop_task_group_free(s->g);
    s->after = cf_sleep(0);
    return 0;
}

START_TEST(test_timeout_around_group)
{
    cf_loop *loop = new_loop();
    gstate s = {.exit_rc = 1, .after = 1};
    cf_future *t = spawn(loop, group_under_timeout, &s);
    ck_assert_int_eq(run(loop, t), 0);
    ck_assert_int_eq(s.body_rc, CF_ECANCELLED);
    ck_assert_int_eq(s.exit_rc, CF_ETIMEDOUT);
    ck_assert_int_eq(s.cancelled_kids, 2);
    ck_assert_int_eq(s.after, 0);
    for (int i = 0; i < 2; i++)
        cf_future_unref(s.kids[i]);
    cf_future_unref(t);
    cf_loop_free(loop);
}
END_TEST

#endif /* CF_TEST_NO_COROUTINES */

/* Without coroutines the scopes cannot be entered. */
START_TEST(test_outside_tasks)
{
    cf_loop_task_group *g;
    cf_loop_timeout *t;
    ck_assert_int_eq(cf_loop_task_group_enter(&g), CF_EINVALSTATE);
    ck_assert_int_eq(cf_loop_timeout_enter(&t, 1), CF_EINVALSTATE);
    ck_assert_int_eq(cf_loop_timeout_enter_at(&t, 1), CF_EINVALSTATE);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("loop_scope");
    TCase *tc = cf_test_tcase("basics");
    tcase_add_test(tc, test_outside_tasks);
    suite_add_tcase(s, tc);
#ifndef CF_TEST_NO_COROUTINES
    tc = cf_test_tcase("task_group");
    tcase_add_test(tc, test_group_waits_for_all);
    tcase_add_test(tc, test_group_first_failure_cancels_the_rest);
    tcase_add_test(tc, test_group_reports_every_failure);
    tcase_add_test(tc, test_group_cancelled_in_body);
    tcase_add_test(tc, test_group_cancelled_in_exit);
    tcase_add_test(tc, test_group_failure_and_outside_cancel);
    tcase_add_test(tc, test_group_unnoticed_cancel_is_withdrawn);
    tcase_add_test(tc, test_group_body_error);
    tcase_add_test(tc, test_group_children_spawn_children);
    tcase_add_test(tc, test_group_misuse);
    tcase_add_test(tc, test_group_close_while_exiting);
    suite_add_tcase(s, tc);
    tc = cf_test_tcase("timeout");
    tcase_add_test(tc, test_timeout_expires);
    tcase_add_test(tc, test_timeout_not_reached);
    tcase_add_test(tc, test_timeout_reschedule);
    tcase_add_test(tc, test_timeout_nested);
    tcase_add_test(tc, test_timeout_and_outside_cancel);
    tcase_add_test(tc, test_timeout_after_caught_cancel);
    tcase_add_test(tc, test_timeout_zero_keeps_pending_cancel);
    tcase_add_test(tc, test_timeout_queue_item_not_lost);
    tcase_add_test(tc, test_timeout_misuse);
    tcase_add_test(tc, test_timeout_around_group);
    suite_add_tcase(s, tc);
#endif
    return s;
}

CF_TEST_MAIN(suite)
