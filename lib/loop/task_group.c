/* Task groups (asyncio.TaskGroup, Python 3.11, with the fixes of 3.12 and 3.13).
 *
 * The group watches each child with a loop waiter; the child's completion is processed on the
 * loop thread in a later iteration. The first failure aborts the group: every pending child is
 * cancelled, and so is the parent while its body still runs, so that what the body awaits is
 * interrupted. That cancellation is the group's own: exit withdraws it (uncancel), and the
 * parent's count of cancellation requests, compared with its value when the group was entered,
 * tells whether anybody else cancelled the parent meanwhile (gh-95289, gh-102780: a
 * cancellation from outside is never swallowed).
 *
 * The parent parks in exit until no child is pending. A child record lives while its child is
 * pending; failed children are kept (a reference each) for the report. The group is freed when
 * the user has freed it and no child completion is still on its way. */
#include "core/list.h"
#include "loop/loop_internal.h"

typedef struct child child;

struct cf_loop_task_group {
    cf_loop *loop;
    cf_future *parent;  /* a reference */
    cf__dlink *pending; /* children not done yet (child.link) */
    size_t npending;
    cf_future **failed; /* in the order they failed, a reference each */
    size_t nfailed, failed_cap;
    cf__wait_list exit_waiters; /* the parent, in exit */
    uint32_t refs;              /* the user's and one per pending child (loop thread) */
    uint32_t cancelling_at_enter;
    bool aborting;
    bool exiting;
    bool exited;
    bool parent_cancel_requested; /* the group cancelled the parent */
};

struct child {
    cf__dlink link;
    cf__loop_waiter waiter; /* on task */
    cf_loop_task_group *g;
    cf_future *task; /* a reference */
};

static void group_release(cf_loop_task_group *g)
{
    if (--g->refs)
        return;
    for (size_t i = 0; i < g->nfailed; i++)
        cf_future_unref(g->failed[i]);
    cf__free(g->failed);
    cf_future_unref(g->parent);
    cf_loop *loop = g->loop;
    cf__free(g);
    cf__loop_unref(loop);
}

static void group_abort(cf_loop_task_group *g)
{
    g->aborting = true;
    for (cf__dlink *l = g->pending; l; l = l->next)
        cf_future_cancel(CF__CONTAINER_OF(l, child, link)->task);
}

/* Records a failed child; without memory for the record, the failure still aborts the group
 * and is counted through the parent's cancellation, but cannot be listed. */
static void record_failure(cf_loop_task_group *g, cf_future *task)
{
    if (g->nfailed == g->failed_cap &&
        cf__grow((void **)&g->failed, &g->failed_cap, g->nfailed + 1, sizeof(cf_future *)) != 0)
        return;
    g->failed[g->nfailed++] = cf_future_ref(task);
}

static void child_forget(child *c)
{
    cf_loop_task_group *g = c->g;
    cf__dlist_remove(&g->pending, &c->link);
    g->npending--;
    cf_future_unref(c->task);
    cf__free(c);
    if (g->npending == 0 && !cf__wait_list_empty(&g->exit_waiters))
        cf__task_wake(g->exit_waiters.head, 0);
    group_release(g);
}

static void child_done(cf_loop *loop, cf_loop_handle *h)
{
    (void)loop;
    child *c = h->data;
    cf_loop_task_group *g = c->g;
    uint32_t s = cf__future_load(c->task);
    if ((s & CF__S_MASK) == CF__S_FINISHED && (s & CF__F_FAILED)) {
        record_failure(g, c->task);
        if (!g->aborting)
            group_abort(g);
        /* Interrupt the body; exit knows this cancellation is the group's. */
        if (!g->exiting && !g->exited && !g->parent_cancel_requested && cf_future_cancel(g->parent))
            g->parent_cancel_requested = true;
    }
    child_forget(c);
}

/* The loop closed: the child was wound down, and so is the parent. */
static void child_drop(cf_loop_handle *h)
{
    child_forget(h->data);
}

static const cf__handle_kind child_kind = {.run = child_done, .drop = child_drop};

int cf_loop_task_group_enter(cf_loop_task_group **out)
{
    if (!out)
        return CF_EINVAL;
    *out = NULL;
    cf_future *parent = cf_current_task();
    if (!parent)
        return CF_EINVALSTATE;
    cf_loop_task_group *g = cf__calloc(1, sizeof(*g));
    if (!g)
        return CF_ENOMEM;
    g->loop = cf__future_loop(parent);
    cf__loop_ref(g->loop);
    g->parent = cf_future_ref(parent);
    g->refs = 1;
    g->cancelling_at_enter = cf__task_cancelling(parent);
    *out = g;
    return 0;
}

int cf_loop_task_group_create_task(cf_future **out, cf_loop_task_group *group, cf_fn fn, void *arg,
                                   const cf_loop_task_options *options)
{
    if (out)
        *out = NULL;
    if (!group)
        return CF_EINVAL;
    int rc = cf__loop_thread_check(group->loop);
    if (rc)
        return rc;
    if (group->aborting || group->exited)
        return CF_EINVALSTATE;
    child *c = cf__calloc(1, sizeof(*c));
    if (!c)
        return CF_ENOMEM;
    rc = cf_loop_create_task(&c->task, group->loop, fn, arg, options);
    if (rc) {
        cf__free(c);
        return rc;
    }
    c->g = group;
    group->refs++;
    group->npending++;
    cf__dlist_push(&group->pending, &c->link);
    cf__loop_waiter_init(&c->waiter, group->loop, &child_kind, c);
    cf__loop_waiter_watch(&c->waiter, c->task);
    if (out)
        *out = cf_future_ref(c->task);
    return 0;
}

int cf_loop_task_group_exit(cf_loop_task_group *group, int rc)
{
    if (!group)
        return CF_EINVAL;
    cf_future *self = cf_current_task();
    if (!self)
        return CF_EINVALSTATE;
    if (self != group->parent)
        return CF_EPERM;
    if (group->exited)
        return CF_EINVALSTATE;
    group->exiting = true;
    /* The body failed or was cancelled: its children go too. */
    if (rc != 0 && !group->aborting)
        group_abort(group);
    while (group->npending > 0 && !group->loop->closing) {
        cf__wait w = {0};
        /* Cancelled from outside meanwhile: cancel the children and keep waiting. */
        if (cf__task_park(&w, &group->exit_waiters) != 0 && !group->aborting)
            group_abort(group);
    }
    group->exiting = false;
    group->exited = true;
    if (group->loop->closing)
        return CF_ECANCELLED;
    uint32_t requests =
        group->parent_cancel_requested ? cf__task_uncancel(self) : cf__task_cancelling(self);
    bool outside = requests > group->cancelling_at_enter;
    if (group->nfailed > 0 || (group->parent_cancel_requested && rc == CF_ECANCELLED && !outside)) {
        /* The failures win; a cancellation from outside is handed back for the next
         * suspension point instead of being swallowed. */
        if (outside)
            cf__task_cancel_rearm(self);
        return CF_ETASK;
    }
    if (rc != 0 && rc != CF_ECANCELLED)
        return rc;
    return outside || rc == CF_ECANCELLED ? CF_ECANCELLED : 0;
}

size_t cf_loop_task_group_failure_count(const cf_loop_task_group *group)
{
    return group ? group->nfailed : 0;
}

cf_future *cf_loop_task_group_failure(const cf_loop_task_group *group, size_t i)
{
    return group && i < group->nfailed ? group->failed[i] : NULL;
}

void cf_loop_task_group_free(cf_loop_task_group *group)
{
    if (!group)
        return;
    /* Abandoned before exit: nobody will wait for the children, so stop them. */
    if (!group->exited && !group->aborting && !cf_loop_is_closed(group->loop))
        group_abort(group);
    group->exited = true;
    group_release(group);
}
