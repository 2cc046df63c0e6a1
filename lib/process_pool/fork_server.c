/* The fork server: a fresh, single-threaded image of the program that forks the workers.
 *
 * fork() in a multithreaded process copies locks held by threads that do not exist in the child,
 * so the library never forks the caller. Instead each pool starts this server with posix_spawn()
 * of the program's own executable (opened once, so a binary replaced on disk is still the same
 * file) and a marker in the environment. The library's constructor sees the marker before main()
 * runs and enters the server loop; main() never runs in the server or its workers.
 *
 * The server forks one worker per SPAWN request, handing it the socket it received, reaps every
 * worker through a pidfd and reports its wait status. When the parent's end of the control socket
 * closes (the pool was freed, or the parent died, even by SIGKILL), it kills and reaps whatever
 * workers are left and exits; workers also die with the server (PR_SET_PDEATHSIG). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/internal.h"
#include "process_pool/proc.h"

/* How the parent starts the server image: the control socket at SERVER_FD, the executable at
 * EXE_FD (open only while exec() resolves it), and SERVER_ENV=<SERVER_FD> in the environment.
 * The descriptors are moved into place from numbers at or above FIRST_FREE_FD, which the moves
 * cannot clobber. */
#define SERVER_ENV    "CFUTURES_FORKSERVER"
#define SERVER_FD     3
#define SERVER_FD_STR "3"
#define EXE_FD        4
#define FIRST_FREE_FD 10
#define HELLO_TIMEOUT 30000 /* ms; generous: the image may start under a sanitizer */

extern char **environ;

static int pidfd_open_(pid_t pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

static void close_from(int lo)
{
    if (syscall(SYS_close_range, (unsigned)lo, ~0u, 0) == 0)
        return;
    long max = sysconf(_SC_OPEN_MAX);
    for (int fd = lo; fd < (max > 0 ? max : 1024); fd++)
        close(fd);
}

int cf__reap(pid_t pid)
{
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return status;
}

void cf__kill_and_reap(pid_t pid)
{
    kill(pid, SIGKILL);
    cf__reap(pid);
}

/* ---- control messages ---- */

int cf__ctl_send(int sock, const cf__ctl *m, int fd)
{
    ssize_t n = cf__send_with_fd(sock, m, sizeof(*m), fd, false);
    if (n < 0)
        return (int)n;
    return n == (ssize_t)sizeof(*m) ? 0 : CF_ESYSTEM;
}

int cf__ctl_recv(int sock, cf__ctl *m, int *fd)
{
    cf__fd_cmsg ctl;
    struct iovec iov = {.iov_base = m, .iov_len = sizeof(*m)};
    struct msghdr msg = {
        .msg_iov = &iov,
        .msg_iovlen = 1,
        .msg_control = ctl.buf,
        .msg_controllen = sizeof(ctl.buf),
    };
    ssize_t n;
    do
        n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return cf__errno_code(errno);
    int got = -1;
    cf__cmsg_fds(&msg, &got, fd ? 1 : 0);
    if (fd)
        *fd = got;
    if (n == 0)
        return 0;
    if (n != (ssize_t)sizeof(*m) || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
        if (fd && *fd >= 0) {
            close(*fd);
            *fd = -1;
        }
        return CF_EINVAL;
    }
    return 1;
}

/* ---- the server (runs in the fresh image) ---- */

typedef struct child {
    uint32_t token;
    pid_t pid;
    int pidfd;
} child;

typedef struct server {
    int sock;
    pid_t self;
    child *children;
    size_t n, cap;
    struct pollfd *pfds;
    size_t pcap;
} server;

static _Noreturn void become_worker(server *s, int wsock)
{
    /* Keep only stdio and the worker's socket: no other worker's pidfd, no control socket. */
    if (wsock != SERVER_FD) {
        if (dup2(wsock, SERVER_FD) < 0)
            _exit(CF__WORKER_EXIT_SETUP);
        wsock = SERVER_FD;
    }
    close_from(SERVER_FD + 1);
    /* dup2() cleared close-on-exec: a program a task execs must not hold our socket open. */
    fcntl(wsock, F_SETFD, FD_CLOEXEC);
    /* The server's bookkeeping means nothing here. */
    cf__free(s->children);
    cf__free(s->pfds);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != s->self)
        _exit(CF__WORKER_EXIT_ORPHANED); /* the server died before the death signal was armed */
    prctl(PR_SET_NAME, "cfworker");
    cf__worker_main(wsock);
}

static void spawn(server *s, const cf__ctl *m, int wsock)
{
    cf__ctl reply = {.type = CF__CTL_FAILED, .token = m->token};
    if (cf__grow(&s->children, &s->cap, s->n + 1, sizeof(*s->children)) != 0) {
        reply.value = ENOMEM;
        goto fail;
    }
    pid_t pid = fork();
    if (pid == 0)
        become_worker(s, wsock);
    if (pid < 0) {
        reply.value = errno;
        goto fail;
    }
    close(wsock);
    int pidfd = pidfd_open_(pid);
    if (pidfd < 0) {
        /* Without a pidfd we cannot report its exit: do not keep it. */
        reply.value = errno;
        cf__kill_and_reap(pid);
        cf__ctl_send(s->sock, &reply, -1);
        return;
    }
    s->children[s->n++] = (child){.token = m->token, .pid = pid, .pidfd = pidfd};
    reply = (cf__ctl){.type = CF__CTL_SPAWNED, .token = m->token, .pid = pid};
    cf__ctl_send(s->sock, &reply, -1);
    return;
fail:
    if (wsock >= 0)
        close(wsock); /* the parent sees end-of-stream on the worker's socket */
    cf__ctl_send(s->sock, &reply, -1);
}

static void reap(server *s, size_t i, bool report)
{
    child c = s->children[i];
    int status = cf__reap(c.pid);
    close(c.pidfd);
    s->children[i] = s->children[--s->n];
    if (report) {
        cf__ctl m = {.type = CF__CTL_EXITED, .token = c.token, .pid = c.pid, .value = status};
        cf__ctl_send(s->sock, &m, -1);
    }
}

static _Noreturn void server_exit(server *s)
{
    for (size_t i = 0; i < s->n; i++)
        kill(s->children[i].pid, SIGKILL);
    while (s->n)
        reap(s, 0, false);
    _exit(0);
}

static void handle_control(server *s)
{
    cf__ctl m;
    int fd = -1;
    int rc = cf__ctl_recv(s->sock, &m, &fd);
    if (rc == CF_EAGAIN)
        return;
    if (rc <= 0)
        server_exit(s); /* the parent is gone, or the channel is unusable */
    switch (m.type) {
    case CF__CTL_SPAWN:
        spawn(s, &m, fd);
        return;
    case CF__CTL_KILL:
        for (size_t i = 0; i < s->n; i++)
            if (s->children[i].token == m.token)
                kill(s->children[i].pid, m.value);
        break;
    case CF__CTL_EXIT:
        server_exit(s);
    default:
        break;
    }
    if (fd >= 0)
        close(fd);
}

static _Noreturn void server_main(int sock)
{
    server s = {.sock = sock, .self = getpid()};
    prctl(PR_SET_NAME, "cfforkserver");
    cf__ctl hello = {.type = CF__CTL_HELLO, .pid = s.self};
    if (cf__ctl_send(sock, &hello, -1) != 0)
        _exit(0);
    for (;;) {
        if (cf__grow(&s.pfds, &s.pcap, s.n + 1, sizeof(*s.pfds)) != 0)
            server_exit(&s);
        struct pollfd *pfds = s.pfds;
        pfds[0] = (struct pollfd){.fd = sock, .events = POLLIN};
        for (size_t i = 0; i < s.n; i++)
            pfds[i + 1] = (struct pollfd){.fd = s.children[i].pidfd, .events = POLLIN};
        size_t n = s.n;
        if (poll(pfds, n + 1, -1) < 0) {
            if (errno == EINTR)
                continue;
            server_exit(&s);
        }
        /* Reap first (from the end, as reap() moves the last child into the hole). */
        for (size_t i = n; i > 0; i--)
            if (pfds[i].revents)
                reap(&s, i - 1, true);
        if (pfds[0].revents)
            handle_control(&s);
    }
}

/* Runs in every image of a program linked with cfutures, before main(). In the parent it only
 * checks that the marker is absent. */
__attribute__((constructor)) static void forkserver_constructor(void)
{
    const char *v = getenv(SERVER_ENV);
    if (!v || strcmp(v, SERVER_FD_STR) != 0)
        return;
    struct stat st;
    if (fstat(SERVER_FD, &st) != 0 || !S_ISSOCK(st.st_mode))
        return;
    unsetenv(SERVER_ENV);
    close(EXE_FD);
    server_main(SERVER_FD);
}

/* ---- starting a server (in the parent) ---- */

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
    int opened = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    if (opened < 0)
        return cf__errno_code(errno);
    /* Out of the way of the file actions that move descriptors into place in the image. */
    fd = fcntl(opened, F_DUPFD_CLOEXEC, FIRST_FREE_FD);
    int err = errno;
    close(opened);
    if (fd < 0)
        return cf__errno_code(err);
    int expected = -1;
    if (!atomic_compare_exchange_strong(&exe_fd, &expected, fd)) {
        close(fd); /* another pool opened it first */
        fd = expected;
    }
    *out = fd;
    return 0;
}

/* The environment of the server: ours without any stale marker, plus the marker. */
static char **server_env(void)
{
    size_t n = 0;
    while (environ && environ[n])
        n++;
    char **env = cf__calloc(n + 2, sizeof(char *));
    if (!env)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], SERVER_ENV "=", sizeof(SERVER_ENV)) != 0)
            env[k++] = environ[i];
    env[k++] = SERVER_ENV "=" SERVER_FD_STR;
    env[k] = NULL;
    return env;
}

static int spawn_image(pid_t *pid, int child_end, int image)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", EXE_FD);
    char **env = server_env();
    if (!env)
        return CF_ENOMEM;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    /* Both sources are >= FIRST_FREE_FD, so neither dup2 overwrites the other's source. Everything
     * else is closed: a leaked descriptor (a pipe's write end, say) would outlive the caller's. */
    posix_spawn_file_actions_adddup2(&fa, child_end, SERVER_FD);
    posix_spawn_file_actions_adddup2(&fa, image, EXE_FD);
    posix_spawn_file_actions_addclosefrom_np(&fa, EXE_FD + 1);
    /* A clean signal state: nothing blocked, every signal at its default (an ignored SIGCHLD
     * would make the server's children vanish without a status). */
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    /* An unknown option makes most programs exit at once should the constructor not run. */
    char *argv[] = {program_invocation_name, "--cfutures-forkserver", NULL};
    int err = posix_spawn(pid, path, &fa, &attr, argv, env);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    cf__free(env);
    return err ? cf__errno_code(err) : 0;
}

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
    if (rc != 1 || m.type != CF__CTL_HELLO || m.pid != pid)
        return CF_ESYSTEM;
    return 0;
}

int cf__forkserver_start(pid_t *pid_out, int *sock_out)
{
    int image = -1;
    int rc = program_image(&image);
    if (rc)
        return rc;
    if (cf__fault(CF__FAULT_FD))
        return CF_EMFILE;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        return cf__errno_code(errno);
    int child_end = -1, err = EMFILE;
    if (!cf__fault(CF__FAULT_FD)) {
        child_end = fcntl(sv[1], F_DUPFD_CLOEXEC, FIRST_FREE_FD);
        err = errno;
    }
    close(sv[1]);
    if (child_end < 0) {
        close(sv[0]);
        return cf__errno_code(err);
    }
    pid_t pid;
    rc = cf__fault(CF__FAULT_FORK) ? CF_EAGAIN : spawn_image(&pid, child_end, image);
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
