/* Clocks, deadlines, futexes and the small lock used inside futures. */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <math.h>
#include <sched.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/internal.h"

int64_t cf__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * CF__NS_PER_S + ts.tv_nsec;
}

int64_t cf__seconds_to_ns(double seconds)
{
    if (seconds >= CF__MAX_SECONDS)
        return CF__FOREVER_NS;
    return seconds <= 0 ? 0 : (int64_t)(seconds * 1e9);
}

int64_t cf__ns_after(int64_t base_ns, int64_t ns)
{
    return ns >= CF__FOREVER_NS - base_ns ? CF__FOREVER_NS : base_ns + ns;
}

int64_t cf__deadline_after(double delay)
{
    return cf__ns_after(cf__now_ns(), cf__seconds_to_ns(delay));
}

int cf__deadline(double timeout, int64_t *deadline_ns)
{
    if (isnan(timeout))
        return CF_EINVAL;
    *deadline_ns = timeout < 0 ? CF__FOREVER_NS : cf__deadline_after(timeout);
    return 0;
}

int cf__timeout_ms(int64_t timeout_ns)
{
    if (timeout_ns < 0)
        return -1;
    int64_t ms = timeout_ns / 1000000 + (timeout_ns % 1000000 != 0);
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

struct timespec cf__timespec(int64_t ns)
{
    struct timespec ts = {.tv_sec = ns / CF__NS_PER_S, .tv_nsec = ns % CF__NS_PER_S};
    return ts;
}

static int futex_wait_op(_Atomic uint32_t *addr, uint32_t expected, int64_t deadline_ns, int op)
{
    for (;;) {
        if (atomic_load_explicit(addr, memory_order_acquire) != expected)
            return 0;
        struct timespec ts, *tsp = NULL;
        if (deadline_ns != CF__FOREVER_NS) {
            if (cf__now_ns() >= deadline_ns)
                return CF_ETIMEDOUT;
            ts = cf__timespec(deadline_ns);
            tsp = &ts;
        }
        /* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time, so a retry after EINTR
         * keeps the original deadline. */
        long rc = syscall(SYS_futex, addr, op, expected, tsp, NULL, FUTEX_BITSET_MATCH_ANY);
        if (rc == 0 || errno == EAGAIN)
            return 0;
        if (errno == ETIMEDOUT)
            return CF_ETIMEDOUT;
        /* EINTR: go round again with the same deadline. */
    }
}

int cf__futex_wait(_Atomic uint32_t *addr, uint32_t expected, int64_t deadline_ns)
{
    return futex_wait_op(addr, expected, deadline_ns, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG);
}

void cf__futex_wake(_Atomic uint32_t *addr, int n)
{
    syscall(SYS_futex, addr, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, n, NULL, NULL, 0);
}

int cf__futex_wait_shared(_Atomic uint32_t *addr, uint32_t expected, int64_t deadline_ns)
{
    return futex_wait_op(addr, expected, deadline_ns, FUTEX_WAIT_BITSET);
}

void cf__futex_wake_shared(_Atomic uint32_t *addr, int n)
{
    syscall(SYS_futex, addr, FUTEX_WAKE, n, NULL, NULL, 0);
}

/* Drepper's three-state futex mutex ("Futexes are tricky", mutex #3). */
void cf__lock_slow(cf__lock *l)
{
    for (int spin = 0; spin < 64; spin++) {
        uint32_t expected = 0;
        if (atomic_compare_exchange_weak_explicit(&l->word, &expected, 1, memory_order_acquire,
                                                  memory_order_relaxed))
            return;
        cf__cpu_relax();
    }
    while (atomic_exchange_explicit(&l->word, 2, memory_order_acquire) != 0)
        cf__futex_wait(&l->word, 2, CF__FOREVER_NS);
}

void cf__unlock_slow(cf__lock *l)
{
    cf__futex_wake(&l->word, 1);
}

int cf__cond_wait_lock(cf__cond *c, cf__lock *l, int64_t deadline_ns)
{
    CF__ASSERT_LOCK_HELD(l);
    uint32_t seen = atomic_load_explicit(&c->seq, memory_order_relaxed);
    c->waiters++;
    cf__lock_release(l);
    int rc = cf__futex_wait(&c->seq, seen, deadline_ns);
    cf__lock_acquire(l);
    c->waiters--;
    return rc;
}

void cf__cond_broadcast(cf__cond *c, cf__lock *l)
{
    CF__ASSERT_LOCK_HELD(l);
    if (c->waiters) {
        atomic_fetch_add_explicit(&c->seq, 1, memory_order_release);
        cf__futex_wake(&c->seq, INT_MAX);
    }
}

_Thread_local char cf__thread_tag CF__TLS_FAST;

int cf__thread_create(pthread_t *thread, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
    if (cf__fault(CF__FAULT_THREAD))
        return CF_EAGAIN;
    int rc = pthread_create(thread, attr, fn, arg);
    return rc == 0 ? 0 : rc == EAGAIN ? CF_EAGAIN : CF_ENOMEM;
}

unsigned cf__cpu_count(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0)
            return (unsigned)n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}
