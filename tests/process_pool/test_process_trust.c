/* Who may talk to a fork server or a worker (white-box): only the process that started it. A
 * program image that finds the fork-server marker in its environment must not serve anyone else:
 *   - a setuid-root program run by an unprivileged user with the marker and the user's socket on
 *     descriptor 3 ignores the marker and runs its main(); a module named by the user's frames is
 *     never loaded (the privilege hole of issue 11);
 *   - a server whose channel was made by a process other than its parent, or by another user,
 *     exits at once without a word;
 *   - a worker whose channel was made by a process other than the pool's exits before reading a
 *     frame.
 * The cases that change users need root (CI runs as root) and setpriv; they say so and pass
 * otherwise. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cf_test.h"
#include "core/internal.h"
#include "process_pool/proc.h"
#include "proc_util.h"

#define SETPRIV "/usr/bin/setpriv"
#define NOBODY  "65534"

extern char **environ;

static bool can_change_users(const char *test)
{
    if (geteuid() != 0 || access(SETPRIV, X_OK) != 0) {
        printf("%s: skipped: needs root and %s (CI runs as root)\n", test, SETPRIV);
        return false;
    }
    return true;
}

/* Our environment plus `extra` (NULL-terminated), for a child to exec with. */
static char **env_with(const char *const *extra)
{
    size_t n = 0, k = 0;
    while (environ[n])
        n++;
    for (const char *const *e = extra; *e; e++)
        k++;
    char **env = calloc(n + k + 1, sizeof(char *));
    ck_assert_ptr_nonnull(env);
    for (size_t i = 0; i < n; i++)
        env[i] = environ[i];
    for (size_t i = 0; i < k; i++)
        env[n + i] = (char *)extra[i];
    return env;
}

/* If main() ever runs in an image started with the marker, it stops at once (see main below). */
static const char *const server_env[] = {"CFUTURES_FORKSERVER=3", "CF_TEST_SCENARIO=not_main",
                                         NULL};

static void copy_file(const char *from, const char *to, mode_t mode)
{
    int in = open(from, O_RDONLY | O_CLOEXEC);
    ck_assert_msg(in >= 0, "open %s: %s", from, strerror(errno));
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0700);
    ck_assert_int_ge(out, 0);
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof(buf))) > 0)
        ck_assert_int_eq(write(out, buf, (size_t)n), n);
    close(in);
    close(out);
    ck_assert_int_eq(chown(to, 0, 0), 0);
    ck_assert_int_eq(chmod(to, mode), 0); /* after chown, which clears the setuid bit */
}

/* Waits up to `seconds` for a control message or the end of the stream on `sock`. Returns 1 (a
 * message, in *m), 0 (end of stream) or -1 (nothing came). */
static int await_ctl(int sock, cf__ctl *m, double seconds)
{
    struct pollfd p = {.fd = sock, .events = POLLIN};
    if (poll(&p, 1, (int)(seconds * 1000)) <= 0)
        return -1;
    int rc = cf__ctl_recv(sock, m, NULL);
    return rc == 1 ? 1 : rc == 0 ? 0 : -1;
}

/* Reads `fd` to its end (at most `cap` - 1 bytes kept), waiting at most `seconds` in all. */
static void read_all(int fd, char *buf, size_t cap, double seconds)
{
    size_t n = 0;
    double end = cf_test_monotonic() + seconds;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        double left = end - cf_test_monotonic();
        if (left <= 0 || poll(&p, 1, (int)(left * 1000) + 1) <= 0)
            break;
        ssize_t k = read(fd, buf + n, cap - 1 - n);
        if (k <= 0)
            break;
        n += (size_t)k;
    }
    buf[n] = '\0';
}

/* Queues the frames a worker acts on: a module to load (the attacker's path), then INIT. */
/* A worker's rings as its pool would set them up: the mapping goes first on its socket, then
 * the MODULE and INIT frames into its request ring. */
static void queue_worker_frames(int sock, const char *module, cf__ring_map *map)
{
    int fd;
    ck_assert_int_eq(cf__ring_map_create(map, &fd), 0);
    ck_assert_int_eq(cf__send_with_fd(sock, "R", 1, fd, true), 1);
    close(fd);
    cf__ring req;
    cf__ring_init(&req, cf__ring_map_requests(map), &map->ctl->req_head, &map->ctl->req_tail);
    cf__frame mod = {.type = CF__FR_MODULE, .id = 0, .len = strlen(module)};
    cf__ring_put_frame(&req, &mod, module);
    cf__frame init = {.type = CF__FR_INIT};
    cf__ring_put_frame(&req, &init, NULL);
    cf__ring_publish(&req);
}

/* Whether a READY frame (the worker read INIT) arrives in the response ring within `seconds`;
 * false once the worker's end of `sock` is closed. */
static bool worker_answers(int sock, cf__ring_map *map, double seconds)
{
    cf__ring resp;
    cf__ring_init(&resp, cf__ring_map_responses(map), &map->ctl->resp_head, &map->ctl->resp_tail);
    unsigned char buf[CF__FRAME_MAX];
    size_t n = 0;
    double end = cf_test_monotonic() + seconds;
    while (n < CF__FRAME_HEADER) {
        int k = cf__ring_take(&resp, buf + n, sizeof(buf) - n);
        if (k < 0)
            return false;
        n += (size_t)k;
        if (k > 0)
            continue;
        char c;
        if (recv(sock, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0 || cf_test_monotonic() > end)
            return false;
        struct pollfd p = {.fd = sock, .events = POLLIN};
        poll(&p, 1, 1);
    }
    cf__frame f;
    const unsigned char *payload;
    size_t used;
    return cf__frame_decode(&f, &payload, &used, buf, n) == 1 && f.type == CF__FR_READY;
}

/* ---- a setuid program never becomes a fork server for its user ---- */

START_TEST(test_setuid_program_ignores_marker)
{
    if (!can_change_users("setuid_program_ignores_marker"))
        return;
    const char *probe = getenv("CF_TEST_TRUST_PROBE"), *evil = getenv("CF_TEST_TRUST_EVIL");
    ck_assert_msg(probe && evil, "meson sets CF_TEST_TRUST_PROBE and CF_TEST_TRUST_EVIL");
    /* A directory every user can enter, on /tmp (the build tree may be on a nosuid mount). */
    char dir[] = "/tmp/cfutures-trust-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    ck_assert_int_eq(chmod(dir, 0755), 0);
    char prog[128], module[128], loaded[160];
    snprintf(prog, sizeof(prog), "%s/probe", dir);
    snprintf(module, sizeof(module), "%s/evil.so", dir);
    snprintf(loaded, sizeof(loaded), "%s.loaded", module);
    copy_file(probe, prog, 04755);
    copy_file(evil, module, 0755);

    /* The attacker: its own socket on descriptor 3, the marker, the setuid program. */
    int ctl[2], out[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ctl), 0);
    ck_assert_int_eq(pipe2(out, O_CLOEXEC), 0);
    char **env = env_with(server_env);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (dup2(ctl[1], 3) < 0 || dup2(out[1], 1) < 0)
            _exit(90);
        char *argv[] = {SETPRIV, "--reuid=" NOBODY, "--regid=" NOBODY, "--clear-groups", "--", prog,
                        NULL};
        execve(SETPRIV, argv, env);
        _exit(91);
    }
    free(env);
    close(ctl[1]);
    close(out[1]);

    /* Everything a fork server would act on: a worker's channel, a module to load, INIT. */
    int wk[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, wk), 0);
    cf__ring_map map = {0};
    queue_worker_frames(wk[0], module, &map);
    cf__ctl spawn = {.type = CF__CTL_SPAWN, .token = 1};
    cf__ctl_send(ctl[0], &spawn, wk[1]);
    close(wk[1]);

    /* A fork server says hello first; a program running its main() prints and exits. */
    cf__ctl m;
    bool hello = await_ctl(ctl[0], &m, CF_TEST_LONG) == 1 && m.type == CF__CTL_HELLO;
    bool answered = hello && worker_answers(wk[0], &map, CF_TEST_LONG);
    close(ctl[0]); /* a server exits when its channel closes */
    char text[256];
    read_all(out[0], text, sizeof(text), CF_TEST_LONG);
    close(out[0]);
    close(wk[0]);
    cf__ring_map_free(&map);
    int status;
    if (waitpid(pid, &status, WNOHANG) == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    char what[64] = "";
    int fd = open(loaded, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t k = read(fd, what, sizeof(what) - 1);
        what[k > 0 ? k : 0] = '\0';
        close(fd);
    }
    unlink(loaded);
    unlink(module);
    unlink(prog);
    rmdir(dir);

    int ruid = -1, euid = -1;
    if (!hello && sscanf(text, "main ruid=%d euid=%d", &ruid, &euid) == 2 && euid != 0) {
        printf("setuid_program_ignores_marker: skipped: a setuid-root program runs with euid %d "
               "here (nosuid mount or no privilege to gain)\n",
               euid);
        return;
    }
    ck_assert_msg(!hello,
                  "the setuid program became a fork server for uid " NOBODY
                  " (its worker %s the attacker's module%s%s)",
                  answered ? "answered after loading" : "was asked to load", what[0] ? ": " : "",
                  what);
    ck_assert_msg(what[0] == '\0', "the attacker's module was loaded: %s", what);
    ck_assert_msg(ruid == 65534 && euid == 0, "main() did not run as expected: \"%s\"", text);
    ck_assert_msg(!strstr(strstr(text, "main ") + 1, "main "), "main() ran twice: \"%s\"", text);
    /* No fresh image of a setuid program can serve (it ignores the marker): no re-execution. */
    ck_assert_msg(strstr(text, "pool CF_ENOTSUP") || strstr(text, "pool CF_OK"),
                  "creating a pool gave: \"%s\"", text);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}
END_TEST

/* ---- a server checks that its channel comes from its parent, as its user ---- */

/* The test program's image, as a path that stays valid in a child (even under valgrind, where
 * /proc/self/exe as a path names valgrind itself). */
static int self_image(char *path, size_t cap)
{
    int fd = open("/proc/self/exe", O_RDONLY);
    ck_assert_int_ge(fd, 0);
    snprintf(path, cap, "/proc/self/fd/%d", fd);
    return fd;
}

/* Starts the test program with the marker and `ctl_end` on descriptor 3, from a child of ours
 * (`via_child`: its parent is not the channel's maker), or as user nobody through setpriv.
 * Returns the pid of our direct child. */
static pid_t start_image(const int ctl[2], bool via_child, bool as_nobody)
{
    char path[64];
    int exe = self_image(path, sizeof(path));
    char **env = env_with(server_env);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(ctl[0]); /* the server must see the end of its channel when the test closes it */
        if (dup2(ctl[1], 3) < 0)
            _exit(90);
        if (as_nobody) {
            char *argv[] = {
                SETPRIV, "--reuid=" NOBODY, "--regid=" NOBODY, "--clear-groups", "--", path, NULL};
            execve(SETPRIV, argv, env);
            _exit(91);
        }
        char *argv[] = {path, NULL};
        if (!via_child) {
            execve(path, argv, env);
            _exit(91);
        }
        /* Our own child runs the image, so its parent is this process, not the channel's maker. */
        pid_t grandchild;
        int spawned = posix_spawn(&grandchild, path, NULL, NULL, argv, env);
        free(env); /* valgrind checks this process for leaks at its _exit() */
        if (spawned != 0)
            _exit(92);
        close(3);
        int status;
        if (waitpid(grandchild, &status, 0) != grandchild)
            _exit(93);
        _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status));
    }
    free(env);
    close(exe);
    return pid;
}

static void check_refused(bool via_child, bool as_nobody)
{
    int ctl[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ctl), 0);
    pid_t pid = start_image(ctl, via_child, as_nobody);
    close(ctl[1]);
    cf__ctl m;
    int rc = await_ctl(ctl[0], &m, CF_TEST_LONG);
    close(ctl[0]);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(rc != 1, "the image served a channel made by %s",
                  via_child ? "a process other than its parent" : "another user");
    ck_assert_msg(rc == 0, "the image neither served nor exited");
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 127,
                  "expected exit code 127 (untrusted channel), got status %#x", status);
}

START_TEST(test_server_refuses_channel_of_another_process)
{
    check_refused(true, false);
}
END_TEST

START_TEST(test_server_refuses_channel_of_another_user)
{
    if (!can_change_users("server_refuses_channel_of_another_user"))
        return;
    check_refused(false, true);
}
END_TEST

/* ---- a worker checks that its channel comes from the pool's process ---- */

/* A socket pair made by another process (a child that hands both ends over and exits). */
static void foreign_pair(int sv[2])
{
    int carrier[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, carrier), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int pair[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0)
            _exit(1);
        char byte = 0;
        ssize_t a = cf__send_with_fd(carrier[1], &byte, 1, pair[0], true);
        ssize_t b = cf__send_with_fd(carrier[1], &byte, 1, pair[1], true);
        _exit(a == 1 && b == 1 ? 0 : 2);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    for (int i = 0; i < 2; i++) {
        char byte;
        struct iovec iov = {.iov_base = &byte, .iov_len = 1};
        union {
            struct cmsghdr align;
            char buf[CMSG_SPACE(sizeof(int))];
        } c;
        struct msghdr msg = {
            .msg_iov = &iov, .msg_iovlen = 1, .msg_control = c.buf, .msg_controllen = sizeof(c)};
        ck_assert_int_eq(recvmsg(carrier[0], &msg, MSG_CMSG_CLOEXEC), 1);
        memcpy(&sv[i], CMSG_DATA(CMSG_FIRSTHDR(&msg)), sizeof(int));
    }
    close(carrier[0]);
    close(carrier[1]);
}

START_TEST(test_worker_refuses_channel_of_another_process)
{
    pid_t server;
    int ctl;
    cf__start how = {.method = CF_PROCESS_START_PROGRAM};
    ck_assert_int_eq(cf__forkserver_start(&how, &server, &ctl), 0);
    /* A channel of our own: the worker serves it (the control case). */
    int own[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, own), 0);
    cf__ring_map map = {0};
    queue_worker_frames(own[0], "", &map);
    cf__ctl spawn = {.type = CF__CTL_SPAWN, .token = 1};
    ck_assert_int_eq(cf__ctl_send(ctl, &spawn, own[1]), 0);
    close(own[1]);
    ck_assert_msg(worker_answers(own[0], &map, CF_TEST_LONG), "a worker did not serve its pool");
    close(own[0]);
    cf__ring_map_free(&map);
    /* A channel made by another process: the worker must exit without reading. */
    int sv[2];
    foreign_pair(sv);
    queue_worker_frames(sv[0], "", &map);
    spawn.token = 2;
    ck_assert_int_eq(cf__ctl_send(ctl, &spawn, sv[1]), 0);
    close(sv[1]);
    ck_assert_msg(!worker_answers(sv[0], &map, CF_TEST_LONG),
                  "a worker served a channel made by another process");
    close(sv[0]);
    cf__ring_map_free(&map);
    /* The server reports how each worker ended: the second one with code 127. */
    int seen = 0;
    while (seen < 2) {
        cf__ctl m;
        ck_assert_int_eq(await_ctl(ctl, &m, CF_TEST_LONG), 1);
        if (m.type == CF__CTL_EXITED && m.token == 2) {
            ck_assert_msg(WIFEXITED(m.value) && WEXITSTATUS(m.value) == 127,
                          "the refusing worker ended with status %#x", m.value);
            seen++;
        } else if (m.type == CF__CTL_EXITED && m.token == 1) {
            seen++;
        }
    }
    close(ctl);
    int status;
    ck_assert_int_eq(waitpid(server, &status, 0), server);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("process_trust");
    TCase *tc = cf_test_tcase("trust");
    tcase_add_test(tc, test_setuid_program_ignores_marker);
    tcase_add_test(tc, test_server_refuses_channel_of_another_process);
    tcase_add_test(tc, test_server_refuses_channel_of_another_user);
    tcase_add_test(tc, test_worker_refuses_channel_of_another_process);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    /* An image started with the marker that reaches main() did not become a server and was not
     * stopped by its checks either: report it (the tests expect 127 or a hello). */
    const char *scenario = getenv("CF_TEST_SCENARIO");
    if (scenario && strcmp(scenario, "not_main") == 0)
        return 99;
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
