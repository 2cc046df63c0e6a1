/* Task futures: running a task function with its per-thread context, storing its outcome, and
 * the life of a bytes task's argument copy. */
#include <stdarg.h>
#include <stdio.h>

#include "core/internal.h"
#include "core/trace.h"

enum { MESSAGE_MAX = 4096 };

/* What a running task may set besides its return value. Lives on the invoking stack frame;
 * nested invocations (a task that runs another synchronously) save and restore it. */
typedef struct task_context {
    cf_dtor dtor;
    char *message;
} task_context;

static _Thread_local task_context *current CF__TLS_FAST;

void *cf__task_context_swap(void *ctx)
{
    task_context *old = current;
    current = ctx;
    return old;
}

int cf_task_fail(int code, const char *fmt, ...)
{
    if (code == 0)
        code = CF_ETASK;
    if (!current || !fmt)
        return code;
    char *msg = cf__malloc(MESSAGE_MAX);
    if (!msg)
        return code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, MESSAGE_MAX, fmt, ap);
    va_end(ap);
    cf__free(current->message);
    current->message = msg;
    return code;
}

void cf_task_set_result_dtor(cf_dtor dtor)
{
    if (current)
        current->dtor = dtor;
}

void cf__outcome_discard(cf__outcome *o, bool bytes)
{
    if (bytes)
        (o->dtor ? o->dtor : cf__free)(o->value);
    else if (o->dtor && o->value)
        o->dtor(o->value);
    cf__free(o->message);
    *o = (cf__outcome){0};
}

/* Runs the task function with a fresh context whose destructor starts as `dtor`. Inlined into
 * its callers, so the usual calls (dtor NULL) pay nothing for the explicit form. */
static inline void invoke(cf__outcome *out, void *fn, bool bytes, const void *arg, size_t len,
                          cf_dtor dtor)
{
    task_context ctx = {.dtor = dtor};
    task_context *saved = current;
    current = &ctx;
    void *value = NULL;
    size_t value_len = 0;
    int rc;
    if (bytes)
        rc = ((cf_bytes_fn)fn)(arg, len, &value, &value_len);
    else
        rc = ((cf_fn)fn)((void *)arg, &value);
    current = saved;
    if (bytes && !value)
        value_len = 0; /* a NULL buffer has no bytes, whatever length the task claimed */
    /* A bytes result is a malloc()ed buffer (freed with free) or a shared block (bytes.h). */
    cf_dtor result_dtor = ctx.dtor;
    if (bytes)
        result_dtor = cf__block_adopt_result(value, value_len) ? cf__block_release : NULL;
    *out = (cf__outcome){.rc = rc, .value = value, .len = value_len, .dtor = result_dtor};
    if (rc) {
        /* A failed task's result is discarded (freed, or passed to its destructor). */
        out->message = NULL;
        cf__outcome_discard(out, bytes);
        out->rc = rc;
        out->message = ctx.message;
    } else if (CF__UNLIKELY(ctx.message != NULL)) {
        cf__free(ctx.message); /* cf_task_fail() without returning its code */
    }
}

void cf__task_invoke(cf__outcome *out, void *fn, bool bytes, const void *arg, size_t len)
{
    invoke(out, fn, bytes, arg, len, NULL);
}

void cf__task_invoke_dtor(cf__outcome *out, void *fn, void *arg, cf_dtor dtor)
{
    invoke(out, fn, false, arg, 0, dtor);
}

/* Invokes the task recorded in `f` (which the caller has set running; `s` is its state word).
 * The usual pointer task
 * is decided by one test of the state word; bytes tasks and tasks with a destructor given at
 * submit take the other branch. */
static void invoke_future(cf__outcome *out, cf_future *f, uint32_t s)
{
    if (CF__LIKELY(!(s & (CF__F_TASK_BYTES | CF__F_TASK_DTOR)))) {
        invoke(out, f->fn, false, f->arg, 0, NULL);
        return;
    }
    if (s & CF__F_TASK_DTOR) {
        /* The destructor waited in `dtor`, which nothing else uses before the future is done. */
        invoke(out, f->fn, false, f->arg, 0, f->dtor);
        return;
    }
    const cf__bytes *arg = f->arg;
    invoke(out, f->fn, true, arg->data, arg->len, NULL);
    /* Only this thread touches the argument while the task runs; free it early. */
    cf__task_arg_release(f);
}

void cf__task_complete(cf_future *f, cf__outcome *o, bool bytes)
{
    if (cf__future_finish(f, o, bytes) != 0)
        cf__outcome_discard(o, bytes);
}

bool cf__task_complete_quiet(cf_future *f, cf__outcome *o, bool bytes)
{
    int rc = cf__future_finish_quiet(f, o, bytes);
    if (rc == CF_EAGAIN)
        return false;
    if (rc != 0)
        cf__outcome_discard(o, bytes);
    return true;
}

bool cf__task_run_then(cf_future *f, void (*released)(void *), void *ctx)
{
    if (cf_future_set_running_or_notify_cancel(f) != 1)
        return false;
    CF__PROBE2(task__start, f, f->fn);
    uint32_t s = cf__future_load(f);
    bool bytes = s & CF__F_TASK_BYTES;
    cf__outcome o;
    invoke_future(&o, f, s);
    CF__PROBE2(task__finish, f, o.rc);
    if (cf__future_finish_then(f, &o, bytes, released, ctx) != 0)
        cf__outcome_discard(&o, bytes);
    return true;
}

void cf__task_run(cf_future *f)
{
    cf__task_run_then(f, NULL, NULL);
}

/* ---- task futures and the argument of a bytes task ---- */

int cf__task_future_new(cf_future **out, void *fn, bool bytes, const void *arg, size_t len)
{
    cf_future *f = cf__future_alloc(2);
    if (!f)
        return CF_ENOMEM;
    f->fn = fn;
    if (bytes) {
        cf__bytes *copy = cf__bytes_new(arg, len);
        if (!copy) {
            cf__future_discard(f);
            return CF_ENOMEM;
        }
        f->arg = copy;
        atomic_store_explicit(&f->state, CF__F_TASK_BYTES, memory_order_relaxed);
    } else {
        f->arg = (void *)arg;
    }
    *out = f;
    return 0;
}

void cf__task_future_set_dtor(cf_future *f, cf_dtor dtor)
{
    CF__ASSERT(!(cf__future_load(f) & CF__F_TASK_BYTES));
    f->dtor = dtor;
    if (dtor)
        atomic_fetch_or_explicit(&f->state, CF__F_TASK_DTOR, memory_order_relaxed);
}

const cf__bytes *cf__task_arg_bytes(const cf_future *f)
{
    return (cf__future_load(f) & CF__F_TASK_BYTES) ? f->arg : NULL;
}

void cf__task_arg_release(cf_future *f)
{
    if (cf__future_load(f) & CF__F_TASK_BYTES) {
        cf__bytes_free(f->arg);
        f->arg = NULL;
    }
}

/* ---- the task a future carries, for executor implementations (executor_impl.h) ---- */

static bool carries_bytes_task(const cf_future *f)
{
    return cf__future_load(f) & CF__F_TASK_BYTES;
}

cf_fn cf_task_fn(const cf_future *f)
{
    return f && !carries_bytes_task(f) ? (cf_fn)f->fn : NULL;
}

void *cf_task_arg(const cf_future *f)
{
    return f && !carries_bytes_task(f) ? f->arg : NULL;
}

cf_bytes_fn cf_task_bytes_fn(const cf_future *f)
{
    return f && carries_bytes_task(f) ? (cf_bytes_fn)f->fn : NULL;
}

int cf_task_bytes_arg(const void **data, size_t *len, const cf_future *f)
{
    if (!data || !len || !f || !carries_bytes_task(f))
        return CF_EINVAL;
    const cf__bytes *arg = cf__task_arg_bytes(f);
    if (!arg)
        return CF_EINVALSTATE;
    *data = arg->data;
    *len = arg->len;
    return 0;
}

void cf_task_release_arg(cf_future *f)
{
    if (f)
        cf__task_arg_release(f);
}

int cf_task_run(cf_future *f)
{
    if (!f || !f->fn || (carries_bytes_task(f) && !cf__task_arg_bytes(f)))
        return CF_EINVAL;
    bool bytes = carries_bytes_task(f);
    int rc = cf_future_set_running_or_notify_cancel(f);
    if (rc != 1)
        return rc; /* 0: cancelled; CF_EINVALSTATE: running or done already */
    CF__PROBE2(task__start, f, f->fn);
    cf__outcome o;
    invoke_future(&o, f, cf__future_load(f));
    CF__PROBE2(task__finish, f, o.rc);
    cf__task_complete(f, &o, bytes);
    return 1;
}

int cf_task_call_bytes(cf_bytes_fn fn, const void *arg, size_t len, void **result,
                       size_t *result_len, char **message)
{
    if (message)
        *message = NULL;
    if (!fn || !result || !result_len || (!arg && len))
        return CF_EINVAL;
    cf__outcome o;
    cf__task_invoke(&o, (void *)fn, true, arg, len);
    *result = o.value;
    *result_len = o.len;
    if (message)
        *message = o.message;
    else
        cf__free(o.message);
    return o.rc;
}
