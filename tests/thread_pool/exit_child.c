/* A program that returns from main (or calls exit) with work still pending in a thread pool, for
 * tests/thread_pool/test_pool_exit.c. Usage: exit_child MODE N
 *
 *   finish       a finish_at_exit pool of one thread gets N tasks, then main returns. Each task
 *                waits until main has returned (an atexit handler registered after the pool,
 *                so it runs before the pool's) and prints "task I after main".
 *   default      the same pool without the option: the tasks wait for a gate nobody opens,
 *                main returns, and the process must end at once with nothing printed.
 *   exit_in_task a finish_at_exit pool of two threads: task 0 waits until main has returned as
 *                above; task 1 calls exit(0) itself, from a pool thread.
 *   thread_exit  a finish_at_exit pool of one thread: task 0 ends its thread with pthread_exit()
 *                (the pool replaces the thread), task 1 waits until main has returned as above.
 *   fork         a finish_at_exit pool runs a task waiting for the gate; a forked child returns
 *                from main at once (it must not wait for its parent's threads) and prints
 *                "child exited"; then the parent opens the gate and returns as in `finish`.
 *
 * The futures are released at once: nothing is left for a leak checker but the pool itself,
 * which a global registry still reaches. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cfutures.h"

static atomic_bool main_returned;

static void note_main_returned(void)
{
    atomic_store(&main_returned, true);
}

static void pause_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)ms * 1000000L};
    nanosleep(&ts, NULL);
}

static void say(const char *text)
{
    /* write(2): one atomic line, no stdio buffer left unflushed by a cut-off thread. */
    ssize_t n = write(STDOUT_FILENO, text, strlen(text));
    (void)n;
}

/* Waits (polling: the waiting is the point, not its speed) until main has returned. Fails after
 * 60 s, so a broken exit path ends the test instead of hanging it. */
static int wait_for_main_task(void *arg, void **result)
{
    (void)result;
    for (int i = 0; i < 60000 && !atomic_load(&main_returned); i++)
        pause_ms(1);
    if (!atomic_load(&main_returned))
        return CF_ETIMEDOUT;
    char line[64];
    snprintf(line, sizeof(line), "task %d after main\n", (int)(intptr_t)arg);
    say(line);
    return 0;
}

static int never_task(void *arg, void **result)
{
    (void)arg;
    (void)result;
    for (;;)
        pause(); /* the process ends around it */
    return 0;
}

static int thread_exit_task(void *arg, void **result)
{
    (void)arg;
    (void)result;
    pthread_exit(NULL);
}

static int exit_task(void *arg, void **result)
{
    (void)arg;
    (void)result;
    exit(0);
}

static void submit(cf_executor *ex, cf_fn fn, intptr_t arg)
{
    cf_future *f = NULL;
    if (cf_executor_submit(&f, ex, fn, (void *)arg) != 0)
        abort();
    cf_future_unref(f);
}

/* Set in the forked child. Under ASan, a child forked while a pool thread runs may inherit the
 * sanitizer allocator's lock held (docs/reliability.md, known gaps), and LeakSanitizer's check at
 * exit takes that lock: the child would hang there, not in the library. LeakSanitizer asks this
 * hook first; the child's memory is its parent's anyway, which is checked. */
static volatile int forked_child;

int __lsan_is_turned_off(void);
int __lsan_is_turned_off(void)
{
    return forked_child;
}

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    const char *mode = argv[1];
    int n = atoi(argv[2]);
    bool finish = strcmp(mode, "default") != 0;
    cf_thread_pool_options o = {
        .max_workers = strcmp(mode, "exit_in_task") == 0 ? 2 : 1,
        .finish_at_exit = finish,
    };
    cf_executor *ex = NULL;
    if (cf_thread_pool_new(&ex, &o) != 0)
        return 3;
    /* Registered after the pool's handler: runs before it. */
    atexit(note_main_returned);
    if (strcmp(mode, "default") == 0) {
        for (int i = 0; i < n; i++)
            submit(ex, never_task, i);
    } else if (strcmp(mode, "exit_in_task") == 0) {
        submit(ex, wait_for_main_task, 0);
        submit(ex, exit_task, 1);
        for (;;)
            pause(); /* task 1 ends the process */
    } else if (strcmp(mode, "thread_exit") == 0) {
        submit(ex, thread_exit_task, 0);
        submit(ex, wait_for_main_task, 1);
    } else if (strcmp(mode, "fork") == 0) {
        submit(ex, wait_for_main_task, 0);
        pid_t pid = fork();
        if (pid < 0)
            return 4;
        if (pid == 0) {
            forked_child = 1;
            say("child exited\n");
            return 0; /* must not wait for the parent's pool */
        }
        int status;
        if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            return 5;
    } else {
        for (int i = 0; i < n; i++)
            submit(ex, wait_for_main_task, i);
    }
    return 0;
}
