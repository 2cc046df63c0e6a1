/* The loop's default executor (run_in_executor with a NULL executor): the loop's own thread
 * pool, created on first use and owned by the loop, or one the user sets (borrowed); and
 * asyncio's shutdown_default_executor, which shuts it down with wait on a helper thread so
 * that the loop keeps running meanwhile, and completes a loop future when it is done.
 *
 * A helper thread is joined on the loop thread when its completion arrives; if the loop closes
 * first, the completion is dropped (the future ends cancelled) and cf_loop_free joins the
 * thread before it frees the executor the helper may still be shutting down. */
#include <errno.h>
#include <math.h>

#include "loop/loop_internal.h"

int cf__loop_default_executor(cf_executor **out, cf_loop *loop)
{
    int rc = cf__loop_check(loop);
    if (rc)
        return rc;
    if (loop->default_shutdown)
        return CF_ESHUTDOWN;
    if (loop->user_executor) {
        *out = loop->user_executor;
        return 0;
    }
    if (!loop->default_executor) {
        cf_thread_pool_options o = {.max_workers = loop->default_workers,
                                    .thread_name_prefix = "cfloop"};
        rc = cf_thread_pool_new(&loop->default_executor, &o);
        if (rc)
            return rc;
    }
    *out = loop->default_executor;
    return 0;
}

int cf_loop_set_default_executor(cf_loop *loop, cf_executor *executor)
{
    int rc = cf__loop_check(loop);
    if (rc)
        return rc;
    loop->user_executor = executor;
    /* A new executor takes work again after a shutdown of the previous one. */
    if (executor)
        loop->default_shutdown = false;
    return 0;
}

/* ---- shutdown_default_executor ---- */

typedef struct shutdown_job {
    struct shutdown_job *next; /* loop->shutdown_jobs (loop thread) */
    cf_loop *loop;
    cf_executor *executor;
    cf_future *done;         /* the loop future handed out (a reference) */
    cf_loop_handle finished; /* posted by the helper once the executor is shut down */
    cf_loop_handle *timer;   /* the timeout, if any */
    pthread_t thread;
    bool joined;
} shutdown_job;

static void job_unlink(cf_loop *loop, shutdown_job *job)
{
    shutdown_job **pp = (shutdown_job **)&loop->shutdown_jobs;
    while (*pp != job)
        pp = &(*pp)->next;
    *pp = job->next;
}

static void job_free(shutdown_job *job)
{
    if (!job->joined)
        pthread_join(job->thread, NULL);
    cf_future_unref(job->done);
    cf__free(job);
}

static void *helper_main(void *arg)
{
    shutdown_job *job = arg;
    cf_executor_shutdown(job->executor, true, false);
    cf__loop_post(job->loop, &job->finished);
    return NULL;
}

static void finished_run(cf_loop *loop, cf_loop_handle *h)
{
    shutdown_job *job = h->data;
    pthread_join(job->thread, NULL); /* it has posted: it is about to return */
    job->joined = true;
    cf__loop_timer_cancel(&job->timer);
    if (!cf_future_done(job->done))
        cf_future_set_result(job->done, NULL, NULL);
    job_unlink(loop, job);
    job_free(job);
}

/* The loop closed first: the future can never complete. The thread (maybe the caller of this
 * very function) is joined by cf_loop_free. */
static void finished_drop(cf_loop_handle *h)
{
    shutdown_job *job = h->data;
    cf_future_cancel(job->done);
}

static const cf__handle_kind finished_kind = {.run = finished_run, .drop = finished_drop};

static void timeout_run(cf_loop *loop, cf_loop_handle *h)
{
    (void)loop;
    shutdown_job *job = h->data;
    cf__loop_timer_fired(&job->timer, h);
    cf_future_set_exception(job->done, CF_ETIMEDOUT,
                            "the default executor did not shut down in time");
}

static void timeout_drop(cf_loop_handle *h)
{
    shutdown_job *job = h->data;
    cf__loop_timer_fired(&job->timer, h);
}

static const cf__handle_kind timeout_kind = {.run = timeout_run, .drop = timeout_drop};

int cf_loop_shutdown_default_executor(cf_future **out, cf_loop *loop, double timeout)
{
    if (!out)
        return CF_EINVAL;
    *out = NULL;
    if (isnan(timeout))
        return CF_EINVAL;
    int rc = cf__loop_check(loop);
    if (rc)
        return rc;
    cf_future *done;
    rc = cf_loop_create_future(&done, loop);
    if (rc)
        return rc;
    cf_executor *ex = loop->user_executor ? loop->user_executor : loop->default_executor;
    if (!ex) {
        loop->default_shutdown = true;
        cf_future_set_result(done, NULL, NULL); /* nothing was ever started */
        *out = done;
        return 0;
    }
    shutdown_job *job = cf__calloc(1, sizeof(*job));
    rc = job ? 0 : CF_ENOMEM;
    if (job) {
        job->loop = loop;
        job->executor = ex;
        job->done = cf_future_ref(done);
        cf__loop_handle_embed(&job->finished, loop, &finished_kind, job);
        if (timeout >= 0) {
            job->timer = cf__loop_timer_new(loop, &timeout_kind, job, cf__deadline_after(timeout));
            rc = job->timer ? 0 : CF_ENOMEM;
        }
    }
    if (rc == 0) {
        rc = cf__fault(CF__FAULT_THREAD) ? EAGAIN
                                         : pthread_create(&job->thread, NULL, helper_main, job);
        if (rc)
            rc = rc == EAGAIN ? CF_EAGAIN : CF_ENOMEM;
    }
    if (rc) {
        if (job) {
            cf__loop_timer_cancel(&job->timer);
            job->joined = true; /* never started */
            job_free(job);
        }
        cf_future_unref(done);
        return rc;
    }
    loop->default_shutdown = true;
    job->next = loop->shutdown_jobs;
    loop->shutdown_jobs = job;
    *out = done;
    return 0;
}

void cf__loop_join_shutdown_jobs(cf_loop *loop)
{
    while (loop->shutdown_jobs) {
        shutdown_job *job = loop->shutdown_jobs;
        loop->shutdown_jobs = job->next;
        job_free(job);
    }
}
