/* Internal assertions (see "assertions" in core/internal.h): the report of a broken rule, and
 * the facts the lock assertions need. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/internal.h"

void cf__assert_fail(const char *cond, const char *file, int line, const char *func)
{
    fprintf(stderr, "cfutures: internal rule broken in %s (%s:%d): %s\n", func, file, line, cond);
    abort();
}

bool cf__asserts_enabled(void)
{
#ifdef NDEBUG
    return false;
#else
    return true;
#endif
}

/* The calling thread's id, cached per thread; a fork() child's thread has a new one, so the
 * cache is keyed by the fork generation too. */
static _Thread_local struct {
    pid_t tid;
    uint32_t fork_gen;
} self CF__TLS_FAST;

static pid_t thread_id(void)
{
    uint32_t gen = cf__fork_gen();
    if (!self.tid || self.fork_gen != gen) {
        self.tid = gettid();
        self.fork_gen = gen;
    }
    return self.tid;
}

bool cf__mutex_owned(pthread_mutex_t *mu)
{
#ifdef __GLIBC__
    /* glibc records the owner of every locked mutex (all types) in the public structure. */
    return mu->__data.__owner == thread_id();
#else
    /* Elsewhere: at least locked (by some thread). */
    if (pthread_mutex_trylock(mu) != 0)
        return true;
    pthread_mutex_unlock(mu);
    return false;
#endif
}
