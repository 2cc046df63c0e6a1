/* Starting a pool's fork server, in the parent: the start methods (cf_process_start).
 *
 *   PROGRAM  posix_spawn() of the program's own executable (/proc/self/exe, opened once, so a
 *            binary replaced on disk is still the same file) with the marker in its environment;
 *            the library's constructor (fork_server.c) sees it before main() runs. Needs the
 *            library in the program's initial image: loaded with dlopen(), the constructor would
 *            not run in the fresh image and the host's main() would run again instead.
 *   HELPER   posix_spawn() of cfutures-worker, a program that only serves (it dlopen()s the
 *            modules of the tasks as they come).
 *   FORK     fork() of the caller when the pool is created, for single-threaded programs.
 *   AUTO     PROGRAM when the library is in the program's initial image (and the program is not
 *            setuid), else HELPER: never the host's main() again.
 * Every method ends the same way: the server sends a hello on its channel, and the parent waits
 * for it before the pool is usable. */
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <link.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/internal.h"
#include "process_pool/proc.h"

/* Where the helper is installed (meson sets it from libexecdir). */
#ifndef CF_WORKER_PROGRAM
#define CF_WORKER_PROGRAM "/usr/local/libexec/cfutures-worker"
#endif
#define WORKER_PROGRAM_NAME "cfutures-worker"

/* Descriptors are moved into place in the server image from numbers at or above FIRST_FREE_FD,
 * which the moves cannot clobber (the lowest such number, so that a process allowed few
 * descriptors works). */
#define FIRST_FREE_FD (CF__EXE_FD + 1)
#define HELLO_TIMEOUT 30000 /* ms; generous: the image may start under a sanitizer */

extern char **environ;

/* ---- is the library in the program's initial image? ----
 * A fresh image of the program runs the library's constructor only if the library is loaded
 * with the program: it is the program itself (linked statically), or in the closure of the
 * program's DT_NEEDED entries. Anything else (dlopen(), LD_PRELOAD) counts as "not at start":
 * the safe answer, which only makes AUTO choose the helper. */

typedef struct loaded_object {
    uintptr_t base;
    const ElfW(Dyn) * dyn;
    bool ours;     /* holds the library's code */
    bool needed;   /* in the closure */
    bool expanded; /* its own DT_NEEDED entries were followed */
} loaded_object;

typedef struct object_list {
    loaded_object *v;
    size_t n, cap;
    bool failed;
} object_list;

static bool holds(const struct dl_phdr_info *info, uintptr_t addr)
{
    for (size_t i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && addr >= lo && addr - lo < ph->p_memsz)
            return true;
    }
    return false;
}

static int collect_object(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    object_list *l = data;
    const ElfW(Dyn) *dyn = NULL;
    for (size_t i = 0; i < info->dlpi_phnum; i++)
        if (info->dlpi_phdr[i].p_type == PT_DYNAMIC)
            dyn = (const ElfW(Dyn) *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
    if (cf__grow(&l->v, &l->cap, l->n + 1, sizeof(*l->v)) != 0) {
        l->failed = true;
        return 1;
    }
    l->v[l->n++] = (loaded_object){
        .base = info->dlpi_addr,
        .dyn = dyn,
        .ours = holds(info, (uintptr_t)(const void *)cf_process_pool_new),
    };
    return 0;
}

/* The string table of an object. The loader rebases the dynamic section's pointers in place on
 * most targets, not all: a value below the load address has not been rebased. */
static const char *string_table(const loaded_object *o)
{
    for (const ElfW(Dyn) *d = o->dyn; d && d->d_tag != DT_NULL; d++)
        if (d->d_tag == DT_STRTAB)
            return (const char *)(d->d_un.d_ptr < o->base ? o->base + d->d_un.d_ptr
                                                          : d->d_un.d_ptr);
    return NULL;
}

static const char *soname(const loaded_object *o)
{
    const char *strtab = string_table(o);
    for (const ElfW(Dyn) *d = o->dyn; strtab && d && d->d_tag != DT_NULL; d++)
        if (d->d_tag == DT_SONAME)
            return strtab + d->d_un.d_val;
    return NULL;
}

/* Marks the objects that `o` names in its DT_NEEDED entries. */
static void mark_needed(object_list *l, const loaded_object *o)
{
    const char *strtab = string_table(o);
    for (const ElfW(Dyn) *d = o->dyn; strtab && d && d->d_tag != DT_NULL; d++) {
        if (d->d_tag != DT_NEEDED)
            continue;
        for (size_t i = 0; i < l->n; i++) {
            const char *so = soname(&l->v[i]);
            if (so && strcmp(so, strtab + d->d_un.d_val) == 0)
                l->v[i].needed = true;
        }
    }
}

/* 1 or 0, or CF_ENOMEM. */
static int compute_loaded_at_start(void)
{
    object_list l = {0};
    dl_iterate_phdr(collect_object, &l);
    int at_start = l.failed ? CF_ENOMEM : 0;
    if (!l.failed && l.n > 0) {
        /* The program is the first object; follow DT_NEEDED until nothing changes. */
        l.v[0].needed = true;
        for (bool more = true; more;) {
            more = false;
            for (size_t i = 0; i < l.n; i++) {
                if (l.v[i].needed && !l.v[i].expanded) {
                    l.v[i].expanded = more = true;
                    mark_needed(&l, &l.v[i]);
                }
            }
        }
        for (size_t i = 0; i < l.n; i++)
            at_start |= l.v[i].ours && l.v[i].needed;
    }
    cf__free(l.v);
    return at_start;
}

/* Computed once (the answer cannot change): -1 until then. */
static _Atomic int loaded_at_start = -1;

/* 1 or 0, or CF_ENOMEM (not remembered). */
static int library_loaded_at_start(void)
{
    int v = atomic_load(&loaded_at_start);
    if (v < 0) {
        v = compute_loaded_at_start();
        if (v >= 0)
            atomic_store(&loaded_at_start, v);
    }
    return v;
}

/* ---- descriptors for the server image ---- */

/* Moves `fd` to FIRST_FREE_FD or above, where the file actions cannot clobber it, closing the
 * original. Returns the descriptor, or -1 with errno (EMFILE when no such number is free:
 * F_DUPFD's EINVAL means the limit itself is below FIRST_FREE_FD). */
static int out_of_the_way(int fd)
{
    if (fd >= FIRST_FREE_FD)
        return fd;
    int moved = fcntl(fd, F_DUPFD_CLOEXEC, FIRST_FREE_FD);
    int err = errno;
    close(fd);
    errno = err == EINVAL ? EMFILE : err;
    return moved;
}

/* The program image, opened by the first pool and kept for the life of the process. A failed
 * open (descriptors exhausted, say) is not remembered: the next pool tries again. */
static _Atomic int exe_fd = -1;

static int program_image(int *out)
{
    int fd = atomic_load(&exe_fd);
    if (fd >= 0) {
        *out = fd;
        return 0;
    }
    if (cf__fault(CF__FAULT_FD))
        return CF_EMFILE;
    fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || (fd = out_of_the_way(fd)) < 0)
        return cf__errno_code(errno);
    int expected = -1;
    if (!atomic_compare_exchange_strong(&exe_fd, &expected, fd)) {
        close(fd); /* another pool opened it first */
        fd = expected;
    }
    *out = fd;
    return 0;
}

/* ---- spawning a server image (PROGRAM, HELPER) ---- */

/* The environment of the server: ours without any stale marker, plus the marker if asked. */
static char **server_env(bool marker)
{
    size_t n = 0;
    while (environ && environ[n])
        n++;
    char **env = cf__calloc(n + 2, sizeof(char *));
    if (!env)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], CF__SERVER_ENV "=", sizeof(CF__SERVER_ENV)) != 0)
            env[k++] = environ[i];
    if (marker)
        env[k++] = CF__SERVER_ENV "=" CF__SERVER_FD_STR;
    env[k] = NULL;
    return env;
}

/* Starts `path` (the program image through CF__EXE_FD when `image` >= 0) with the server's
 * channel on CF__SERVER_FD, nothing else open beyond stdio, and a clean signal state. */
static int spawn_server(pid_t *pid, const char *path, int child_end, int image)
{
    char **env = server_env(image >= 0);
    if (!env)
        return CF_ENOMEM;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    /* Both sources are >= FIRST_FREE_FD, so neither dup2 overwrites the other's source. Everything
     * else is closed: a leaked descriptor (a pipe's write end, say) would outlive the caller's. */
    posix_spawn_file_actions_adddup2(&fa, child_end, CF__SERVER_FD);
    if (image >= 0)
        posix_spawn_file_actions_adddup2(&fa, image, CF__EXE_FD);
    posix_spawn_file_actions_addclosefrom_np(&fa, image >= 0 ? CF__EXE_FD + 1 : CF__SERVER_FD + 1);
    /* Nothing blocked, every signal at its default (an ignored SIGCHLD would make the server's
     * children vanish without a status). */
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    /* The program image gets an unknown option too, so that most programs stop at once should
     * the constructor not run. */
    char *argv[] = {image >= 0 ? program_invocation_name : (char *)path, CF__SERVER_ARG, NULL};
    int err = posix_spawn(pid, path, &fa, &attr, argv, env);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    cf__free(env);
    return err ? cf__errno_code(err) : 0;
}

/* ---- finding the helper ---- */

static bool executable(const char *path)
{
    struct stat st;
    return faccessat(AT_FDCWD, path, X_OK, AT_EACCESS) == 0 && stat(path, &st) == 0 &&
           S_ISREG(st.st_mode);
}

/* The helper: the option; else cfutures-worker next to the library (a build tree), else the
 * installed one. */
static int find_helper(char *out, size_t cap, const char *option)
{
    if (option) {
        if (strlen(option) >= cap || !executable(option))
            return CF_EINVAL;
        strcpy(out, option);
        return 0;
    }
    Dl_info info;
    char lib[PATH_MAX];
    if (dladdr((const void *)cf_process_pool_new, &info) && info.dli_fname &&
        realpath(info.dli_fname, lib)) {
        char *slash = strrchr(lib, '/');
        if (slash && (size_t)(slash - lib) + sizeof("/" WORKER_PROGRAM_NAME) <= cap) {
            snprintf(out, cap, "%.*s/%s", (int)(slash - lib), lib, WORKER_PROGRAM_NAME);
            if (executable(out))
                return 0;
        }
    }
    if (strlen(CF_WORKER_PROGRAM) < cap && executable(CF_WORKER_PROGRAM)) {
        strcpy(out, CF_WORKER_PROGRAM);
        return 0;
    }
    return CF_ENOTSUP;
}

/* ---- FORK ---- */

/* Threads of this process, or 0 if unknown. */
static int thread_count(void)
{
    char buf[2048];
    int fd = cf__fd_above_stdio(open("/proc/self/status", O_RDONLY | O_CLOEXEC));
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    const char *t = strstr(buf, "\nThreads:");
    return t ? atoi(t + sizeof("\nThreads:") - 1) : 0;
}

static int fork_server(pid_t *pid, int parent_end, int child_end)
{
    pid_t p = fork();
    if (p == 0) {
        close(parent_end);
        cf__forkserver_forked(child_end, getppid());
    }
    if (p < 0)
        return cf__errno_code(errno);
    *pid = p;
    return 0;
}

/* ---- the hello, and the whole start ---- */

/* Waits for the server's hello. */
static int await_hello(int sock, pid_t pid)
{
    struct pollfd p = {.fd = sock, .events = POLLIN};
    int rc;
    do
        rc = poll(&p, 1, HELLO_TIMEOUT);
    while (rc < 0 && errno == EINTR);
    if (rc <= 0)
        return CF_ESYSTEM;
    cf__ctl m;
    rc = cf__ctl_recv(sock, &m, NULL);
    if (rc != 1 || m.type != CF__CTL_HELLO || m.pid != pid || m.value != CF__PROTOCOL_VERSION)
        return CF_ESYSTEM;
    return 0;
}

/* Chooses the method and checks that it can work here, before anything is created. */
static int choose(cf__start *how, char *helper, size_t cap, int *image)
{
    bool secure = getauxval(AT_SECURE) != 0;
    int at_start = library_loaded_at_start();
    if (at_start < 0)
        return at_start;
    if (how->method == CF_PROCESS_START_AUTO)
        how->method = !secure && at_start ? CF_PROCESS_START_PROGRAM : CF_PROCESS_START_HELPER;
    switch (how->method) {
    case CF_PROCESS_START_PROGRAM:
        /* A fresh image of a setuid (or setgid, or file-capability) program is started in
         * secure mode too, where the constructor ignores the marker; one that did not load the
         * library at start would not run the constructor at all. Either way it would run the
         * host's main() again. */
        if (secure || !at_start)
            return CF_ENOTSUP;
        return program_image(image);
    case CF_PROCESS_START_HELPER:
        return find_helper(helper, cap, how->worker_program);
    case CF_PROCESS_START_FORK:
        return !how->fork_with_threads && thread_count() > 1 ? CF_EDEADLK : 0;
    default:
        return CF_EINVAL;
    }
}

int cf__forkserver_start(cf__start *how, pid_t *pid_out, int *sock_out)
{
    char helper[PATH_MAX];
    int image = -1;
    int rc = choose(how, helper, sizeof(helper), &image);
    if (rc)
        return rc;
    if (cf__fault(CF__FAULT_FD))
        return CF_EMFILE;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0 ||
        cf__fd_pair_above_stdio(sv) != 0)
        return cf__errno_code(errno);
    int child_end = -1, err = EMFILE;
    if (!cf__fault(CF__FAULT_FD)) {
        child_end = out_of_the_way(sv[1]);
        err = errno;
    } else {
        close(sv[1]);
    }
    if (child_end < 0) {
        close(sv[0]);
        return cf__errno_code(err);
    }
    pid_t pid;
    if (cf__fault(CF__FAULT_FORK)) {
        rc = CF_EAGAIN;
    } else if (how->method == CF_PROCESS_START_FORK) {
        rc = fork_server(&pid, sv[0], child_end);
    } else if (how->method == CF_PROCESS_START_HELPER) {
        rc = spawn_server(&pid, helper, child_end, -1);
    } else {
        char path[64];
        snprintf(path, sizeof(path), "/proc/self/fd/%d", CF__EXE_FD);
        rc = spawn_server(&pid, path, child_end, image);
    }
    close(child_end);
    if (rc) {
        close(sv[0]);
        return rc;
    }
    rc = await_hello(sv[0], pid);
    if (rc == 0)
        rc = cf__set_nonblock(sv[0]);
    if (rc) {
        cf__kill_and_reap(pid);
        close(sv[0]);
        return rc;
    }
    *pid_out = pid;
    *sock_out = sv[0];
    return 0;
}
