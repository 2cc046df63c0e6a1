/* Finishing pending work at exit (core/at_exit.c): executors whose work must not be dropped when
 * the program exits (the thread pool's finish_at_exit option) register here. Not installed. */
#ifndef CFUTURES_AT_EXIT_H
#define CFUTURES_AT_EXIT_H

#include "core/internal.h"
#include "core/list.h"

typedef struct cf__at_exit_entry cf__at_exit_entry;
struct cf__at_exit_entry {
    cf__dlink link;
    /* At exit, under the registry lock, newest executor first. begin: stop accepting work and
     * let the workers leave once the queue is empty, without blocking. end: after every counted
     * worker has finished, join the exited threads. */
    void (*begin)(cf__at_exit_entry *e);
    void (*end)(cf__at_exit_entry *e);
    /* Registered: its workers are to be counted (stable from registration to unregistration). */
    bool registered;
};

/* Registers `e` (begin and end set) and installs the atexit handler with the first entry.
 * Returns 0, or CF_ENOMEM if the handler could not be installed. Once the program has begun
 * exiting, nothing is registered (e->registered stays false) and 0 is returned. */
int cf__at_exit_register(cf__at_exit_entry *e);
/* Unregisters `e` (a no-op if it is not registered). Call it before freeing the executor. */
void cf__at_exit_unregister(cf__at_exit_entry *e);

/* Counting the workers of registered executors: starting, by the thread that starts one (before
 * the thread exists); running, first thing in the new thread; gone, the worker's very last act
 * (or the starter's, if the thread could not be started). */
void cf__at_exit_worker_starting(void);
void cf__at_exit_worker_running(void);
void cf__at_exit_worker_gone(void);

#endif
