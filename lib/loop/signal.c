/* Signals as loop callbacks (asyncio's add_signal_handler), through a signalfd.
 *
 * A handled signal is blocked in the loop thread and put in the signalfd's mask; the signalfd is
 * an ordinary reader of the loop, so a delivery becomes a callback on the loop thread, between
 * other callbacks, where it may do anything a callback may (cancel tasks, stop the loop). No
 * code runs in signal context. The signalfd only sees signals that are blocked in every thread
 * that could take them, which is why the documentation asks to block them process-wide (threads
 * created after the call inherit the loop thread's mask).
 *
 * One loop per process handles signals at a time: two signalfds would race for each delivery.
 * The signalfd stays open (with an empty mask when no handler is left) until the loop closes, so
 * a handler may remove itself, or every handler, while the reader loop below is running. */
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "loop/loop_internal.h"

typedef struct handler {
    cf_loop_signal_cb cb;
    void *data;
} handler;

struct cf__signals {
    int fd;
    unsigned count;       /* signals handled */
    sigset_t handled;     /* the signalfd's mask */
    sigset_t was_blocked; /* handled signals the loop thread had blocked before */
    pthread_t thread;     /* whose mask the loop changed */
    handler handlers[_NSIG];
};

/* The loop that handles signals in this process, if any. */
static _Atomic(cf_loop *) signal_owner;

static void release_ownership(cf_loop *loop)
{
    cf_loop *expected = loop;
    atomic_compare_exchange_strong(&signal_owner, &expected, NULL);
}

static void on_signalfd(cf_loop *loop, int fd, unsigned events, void *data)
{
    (void)events;
    struct cf__signals *s = data;
    struct signalfd_siginfo info[8];
    ssize_t n;
    while ((n = read(fd, info, sizeof(info))) > 0) {
        for (size_t i = 0; i < (size_t)n / sizeof(info[0]); i++) {
            int signum = (int)info[i].ssi_signo;
            /* A handler run earlier in this batch may have removed this one. */
            if (signum > 0 && signum < _NSIG && s->handlers[signum].cb)
                s->handlers[signum].cb(loop, signum, s->handlers[signum].data);
        }
    }
}

static int open_signals(cf_loop *loop)
{
    struct cf__signals *s = cf__calloc(1, sizeof(*s));
    if (!s)
        return CF_ENOMEM;
    sigemptyset(&s->handled);
    sigemptyset(&s->was_blocked);
    s->fd = cf__fault(CF__FAULT_FD) ? -1 : signalfd(-1, &s->handled, SFD_NONBLOCK | SFD_CLOEXEC);
    if (s->fd < 0) {
        cf__free(s);
        return CF_EMFILE;
    }
    s->thread = pthread_self();
    loop->signals = s;
    return 0;
}

static bool valid_signal(int signum)
{
    sigset_t one;
    sigemptyset(&one);
    /* glibc refuses the real-time signals it reserves for its threads. */
    return signum > 0 && signum < _NSIG && signum != SIGKILL && signum != SIGSTOP &&
           sigaddset(&one, signum) == 0;
}

/* The ucontext backend switches the signal mask with each coroutine: a mask changed inside a
 * task would not be the loop thread's. */
static bool mask_belongs_to_thread(void)
{
#ifdef CF_CORO_UCONTEXT
    return cf_current_task() == NULL;
#else
    return true;
#endif
}

static int start_handling(cf_loop *loop, struct cf__signals *s, int signum)
{
    if (s->count == 0) {
        int rc = cf_loop_add_reader(loop, s->fd, on_signalfd, s);
        if (rc)
            return rc;
    }
    sigset_t one, old;
    sigemptyset(&one);
    sigaddset(&one, signum);
    pthread_sigmask(SIG_BLOCK, &one, &old);
    if (sigismember(&old, signum))
        sigaddset(&s->was_blocked, signum);
    sigaddset(&s->handled, signum);
    signalfd(s->fd, &s->handled, 0);
    s->count++;
    return 0;
}

int cf_loop_add_signal_handler(cf_loop *loop, int signum, cf_loop_signal_cb cb, void *data)
{
    if (!cb)
        return CF_EINVAL;
    int rc = cf__loop_check(loop);
    if (rc)
        return rc;
    if (!valid_signal(signum))
        return CF_EINVAL;
    if (!mask_belongs_to_thread())
        return CF_EINVALSTATE;
    cf_loop *owner = NULL;
    if (!atomic_compare_exchange_strong(&signal_owner, &owner, loop) && owner != loop)
        return CF_EINVALSTATE;
    if (!loop->signals && (rc = open_signals(loop)) != 0) {
        release_ownership(loop);
        return rc;
    }
    struct cf__signals *s = loop->signals;
    if (!sigismember(&s->handled, signum) && (rc = start_handling(loop, s, signum)) != 0) {
        if (s->count == 0)
            release_ownership(loop);
        return rc;
    }
    s->handlers[signum] = (handler){.cb = cb, .data = data};
    return 0;
}

static void stop_handling(cf_loop *loop, struct cf__signals *s, int signum)
{
    s->handlers[signum] = (handler){0};
    sigdelset(&s->handled, signum);
    signalfd(s->fd, &s->handled, 0);
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, signum);
    if (pthread_equal(s->thread, pthread_self())) {
        /* Deliveries that arrived for the handler go with it, rather than meet the default
         * action once unblocked. */
        struct timespec zero = {0};
        while (sigtimedwait(&one, NULL, &zero) == signum)
            ;
        if (!sigismember(&s->was_blocked, signum))
            pthread_sigmask(SIG_UNBLOCK, &one, NULL);
    }
    sigdelset(&s->was_blocked, signum);
    if (--s->count == 0) {
        cf_loop_remove_reader(loop, s->fd); /* CF_ECLOSED from close: nothing to remove */
        release_ownership(loop);
    }
}

int cf_loop_remove_signal_handler(cf_loop *loop, int signum)
{
    int rc = cf__loop_check(loop);
    if (rc)
        return rc;
    if (signum <= 0 || signum >= _NSIG)
        return CF_EINVAL;
    if (!mask_belongs_to_thread())
        return CF_EINVALSTATE;
    struct cf__signals *s = loop->signals;
    if (!s || !sigismember(&s->handled, signum))
        return 0;
    stop_handling(loop, s, signum);
    return 1;
}

bool cf__loop_signals_active(cf_loop *loop)
{
    return loop->signals && loop->signals->count > 0;
}

void cf__loop_signals_close(cf_loop *loop)
{
    struct cf__signals *s = loop->signals;
    if (!s)
        return;
    for (int signum = 1; signum < _NSIG && s->count; signum++)
        if (sigismember(&s->handled, signum))
            stop_handling(loop, s, signum);
    close(s->fd);
    cf__free(s);
    loop->signals = NULL;
    release_ownership(loop);
}

unsigned cf__loop_signals_handled(const cf_loop *loop)
{
    return loop->signals ? loop->signals->count : 0;
}
