/* The fork server: a single-threaded process that forks the workers of one pool.
 *
 * fork() in a multithreaded process copies locks held by threads that do not exist in the child,
 * so the library never forks workers from the caller. Each pool starts one of these servers
 * (process_pool/start.c says how: a fresh image of the program, the cfutures-worker helper, or a
 * fork of a single-threaded caller), and the server forks the workers from its clean state.
 *
 * The server forks one worker per SPAWN request, handing it the socket it received, reaps every
 * worker through a pidfd and reports its wait status. When the parent's end of the control socket
 * closes (the pool was freed, or the parent died, even by SIGKILL), it kills and reaps whatever
 * workers are left and exits; workers also die with the server (PR_SET_PDEATHSIG).
 *
 * It serves only its parent: before reading anything it checks that its channel was made by its
 * parent process as its own user (SO_PEERCRED), and exits at once otherwise. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/internal.h"
#include "process_pool/proc.h"

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
    pid_t parent;   /* the pool's process, which made every channel we serve */
    bool own_image; /* the program here is the pool's (not the helper) */
    child *children;
    size_t n, cap;
    struct pollfd *pfds;
    size_t pcap;
} server;

static _Noreturn void become_worker(server *s, int wsock)
{
    /* Keep only stdio and the worker's socket: no other worker's pidfd, no control socket. */
    if (wsock != CF__SERVER_FD) {
        if (dup2(wsock, CF__SERVER_FD) < 0)
            _exit(CF__WORKER_EXIT_SETUP);
        wsock = CF__SERVER_FD;
    }
    close_from(CF__SERVER_FD + 1);
    /* dup2() cleared close-on-exec: a program a task execs must not hold our socket open. */
    fcntl(wsock, F_SETFD, FD_CLOEXEC);
    /* The server's bookkeeping means nothing here. */
    cf__free(s->children);
    cf__free(s->pfds);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != s->self)
        _exit(CF__WORKER_EXIT_ORPHANED); /* the server died before the death signal was armed */
    prctl(PR_SET_NAME, "cfworker");
    cf__worker_main(wsock, s->parent, s->own_image);
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
    int pidfd = cf__fd_above_stdio(pidfd_open_(pid));
    /* Kernels before 5.3 (and valgrind, which runs a CF_PROCESS_START_FORK server) have no
     * pidfd_open: such a child is reaped by polling instead (see server_main). */
    if (pidfd < 0 && errno == ENOSYS) {
        pidfd = -1;
    } else if (pidfd < 0) {
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

/* Reaps child `i` (waiting for it unless `nohang`; then false if it has not exited). */
static bool reap(server *s, size_t i, bool report, bool nohang)
{
    child c = s->children[i];
    int status = 0;
    pid_t r;
    while ((r = waitpid(c.pid, &status, nohang ? WNOHANG : 0)) < 0 && errno == EINTR)
        ;
    if (r == 0)
        return false;
    if (c.pidfd >= 0)
        close(c.pidfd);
    s->children[i] = s->children[--s->n];
    if (report) {
        cf__ctl m = {.type = CF__CTL_EXITED, .token = c.token, .pid = c.pid, .value = status};
        cf__ctl_send(s->sock, &m, -1);
    }
    return true;
}

static _Noreturn void server_exit(server *s)
{
    for (size_t i = 0; i < s->n; i++)
        kill(s->children[i].pid, SIGKILL);
    while (s->n)
        reap(s, 0, false, false);
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
        for (size_t i = 0; i < s->n; i++) {
            if (s->children[i].token != m.token)
                continue;
            kill(s->children[i].pid, m.value);
            /* A stopped worker (SIGSTOP, job control, a debugger) keeps the signal pending
             * until it is continued: continue it, as kill(1) and systemd do. */
            if (m.value != SIGKILL)
                kill(s->children[i].pid, SIGCONT);
        }
        break;
    case CF__CTL_EXIT:
        server_exit(s);
    default:
        break;
    }
    if (fd >= 0)
        close(fd);
}

static _Noreturn void server_main(int sock, pid_t parent, bool own_image)
{
    server s = {.sock = sock, .self = getpid(), .parent = parent, .own_image = own_image};
    prctl(PR_SET_NAME, "cfforkserver");
    cf__ctl hello = {.type = CF__CTL_HELLO, .pid = s.self, .value = CF__PROTOCOL_VERSION};
    if (cf__ctl_send(sock, &hello, -1) != 0)
        _exit(0);
    for (;;) {
        if (cf__grow(&s.pfds, &s.pcap, s.n + 1, sizeof(*s.pfds)) != 0)
            server_exit(&s);
        struct pollfd *pfds = s.pfds;
        pfds[0] = (struct pollfd){.fd = sock, .events = POLLIN};
        bool polling = false; /* a child without a pidfd: look every few milliseconds */
        for (size_t i = 0; i < s.n; i++) {
            pfds[i + 1] = (struct pollfd){.fd = s.children[i].pidfd, .events = POLLIN};
            polling |= s.children[i].pidfd < 0;
        }
        size_t n = s.n;
        if (poll(pfds, n + 1, polling ? 10 : -1) < 0) {
            if (errno == EINTR)
                continue;
            server_exit(&s);
        }
        /* Reap first (from the end, as reap() moves the last child into the hole). */
        for (size_t i = n; i > 0; i--) {
            if (pfds[i].revents)
                reap(&s, i - 1, true, false);
            else if (s.children[i - 1].pidfd < 0)
                reap(&s, i - 1, true, true);
        }
        if (pfds[0].revents)
            handle_control(&s);
    }
}

/* Opens /dev/null on whichever of 0, 1 and 2 is closed (the program was started with them
 * closed), before anything else is opened: otherwise a worker's channel, received later, would
 * land there and a task's printf would write into it. The workers inherit these three. */
static void open_stdio(void)
{
    for (int fd = STDIN_FILENO; fd <= STDERR_FILENO; fd++) {
        if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF)
            continue;
        /* 0-2 are filled in order, so the lowest free number is `fd` itself. */
        int opened = open("/dev/null", O_RDWR);
        if (opened != fd)
            _exit(CF__WORKER_EXIT_SETUP);
    }
}

/* Serves `sock`, the channel from `parent`, until the pool is done. `own_image`: the program
 * running here is the pool's own (not the helper), so tasks of its main program can run. */
static _Noreturn void serve(int sock, pid_t parent, bool own_image)
{
    if (!cf__channel_trusted(sock, parent)) {
        static const char msg[] = "cfutures: descriptor 3 is not a fork-server channel from this "
                                  "process's parent and user; exiting\n";
        ssize_t n = write(STDERR_FILENO, msg, sizeof(msg) - 1);
        (void)n;
        _exit(CF__WORKER_EXIT_UNTRUSTED);
    }
    open_stdio();
    server_main(sock, parent, own_image);
}

/* CF_PROCESS_START_PROGRAM: runs in every image of a program linked with cfutures, before
 * main(). In the parent it only checks that the marker is absent.
 *
 * The marker is a request to serve whoever holds descriptor 3, so it is honoured only when the
 * requester is the process that started us, as our own user: never in a setuid, setgid or
 * file-capability program (AT_SECURE: the environment and descriptors come from a less
 * privileged user, who would have a privileged worker dlopen() a path of their choosing), and
 * only on a channel that our parent made with our effective uid (SO_PEERCRED, in serve()). */
__attribute__((constructor)) static void forkserver_constructor(void)
{
    if (getauxval(AT_SECURE))
        return;
    const char *v = secure_getenv(CF__SERVER_ENV);
    if (!v || strcmp(v, CF__SERVER_FD_STR) != 0)
        return;
    struct stat st;
    if (fstat(CF__SERVER_FD, &st) != 0 || !S_ISSOCK(st.st_mode))
        return;
    unsetenv(CF__SERVER_ENV);
    close(CF__EXE_FD);
    serve(CF__SERVER_FD, getppid(), true);
}

/* CF_PROCESS_START_HELPER: the helper program's main() calls this. The helper is an ordinary
 * program, not setuid: whoever runs it serves with their own privileges, so the request comes
 * through argv rather than the environment, and works in secure mode too (a setuid program's
 * pool runs its helper with the same ids). */
int cf_process_pool_serve(int argc, char **argv)
{
    struct stat st;
    if (argc < 2 || !argv || !argv[1] || strcmp(argv[1], CF__SERVER_ARG) != 0 ||
        fstat(CF__SERVER_FD, &st) != 0 || !S_ISSOCK(st.st_mode))
        return CF_EINVAL;
    serve(CF__SERVER_FD, getppid(), false);
}

/* CF_PROCESS_START_FORK: the child of the pool's fork(), a copy of the caller. It keeps only
 * stdio and its channel, and a clean signal state (the caller's handlers and mask mean nothing
 * to a server). */
_Noreturn void cf__forkserver_forked(int sock, pid_t parent)
{
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            signal(sig, SIG_DFL);
    if (sock != CF__SERVER_FD && dup2(sock, CF__SERVER_FD) < 0)
        _exit(CF__WORKER_EXIT_SETUP);
    close_from(CF__SERVER_FD + 1);
    serve(CF__SERVER_FD, parent, true);
}
