/* fork() awareness: objects created before a fork() are unusable in the child. Every executor
 * records the fork generation it was born in; the child's atfork handler bumps the generation,
 * so the child's calls on inherited executors fail fast with CF_EFORKED instead of waiting on
 * threads that do not exist there or locks that a vanished thread held. */
#include "core/internal.h"

_Atomic uint32_t cf__fork_generation;

static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void on_fork_child(void)
{
    atomic_fetch_add(&cf__fork_generation, 1);
}

static void register_atfork(void)
{
    pthread_atfork(NULL, NULL, on_fork_child);
}

void cf__fork_init(void)
{
    pthread_once(&fork_once, register_atfork);
}
