/* fork(): the library's one set of pthread_atfork handlers.
 *
 * Objects created before a fork() are unusable in the child. Every executor records the fork
 * generation it was born in; the child's handler bumps the generation first, so the child's
 * calls on inherited executors fail fast with CF_EFORKED instead of waiting on threads that do
 * not exist there.
 *
 * The locks a fork() must not split (held by a thread that does not exist in the child) are
 * taken around it by hooks that the modules owning them install here, and run in one fixed
 * order, whatever order the modules were first used in: the prepare hooks from the outermost
 * level to the innermost (the order in which the library's own code nests those locks), the
 * parent and child hooks in reverse. With handlers registered by each module on first use, the
 * order depended on the program: a fork() could take the futures' depot and then wait for a
 * process pool's lock held by a dispatch that was itself waiting for the depot (issue 11; the
 * dispatch no longer releases futures under the pool's lock either, docs/internals.md).
 *
 * A fork in progress holds `hooks_mu` from prepare to parent/child, so concurrent forks and
 * late installations see a consistent set of hooks. */
#include "core/internal.h"

_Atomic uint32_t cf__fork_generation;

static pthread_once_t fork_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t hooks_mu = PTHREAD_MUTEX_INITIALIZER;
static const cf__fork_hooks *hooks[CF__FORK_LEVELS];
static const cf__fork_hooks *armed[CF__FORK_LEVELS]; /* what the fork in progress prepared */

static void on_prepare(void)
{
    pthread_mutex_lock(&hooks_mu);
    for (int i = 0; i < CF__FORK_LEVELS; i++) {
        armed[i] = hooks[i];
        if (armed[i] && armed[i]->prepare)
            armed[i]->prepare();
    }
}

static void on_parent(void)
{
    for (int i = CF__FORK_LEVELS - 1; i >= 0; i--)
        if (armed[i] && armed[i]->parent)
            armed[i]->parent();
    pthread_mutex_unlock(&hooks_mu);
}

static void on_child(void)
{
    atomic_fetch_add(&cf__fork_generation, 1);
    for (int i = CF__FORK_LEVELS - 1; i >= 0; i--)
        if (armed[i] && armed[i]->child)
            armed[i]->child();
    pthread_mutex_init(&hooks_mu, NULL); /* held across the fork by this, the only thread */
}

static void install(void)
{
    pthread_atfork(on_prepare, on_parent, on_child);
}

void cf__fork_init(void)
{
    pthread_once(&fork_once, install);
}

void cf__fork_hooks_install(cf__fork_level level, const cf__fork_hooks *h)
{
    cf__fork_init();
    pthread_mutex_lock(&hooks_mu);
    if (!hooks[level])
        hooks[level] = h;
    pthread_mutex_unlock(&hooks_mu);
}
