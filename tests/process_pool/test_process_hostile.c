/* A worker that lies (white-box): a task forges what the worker sends, frames in its response
 * ring (cf__worker_publish_raw) and descriptors on its socket (descriptor 3, see fork_server.c),
 * well-formed or not: a result for a task it was not given, a second result for the same task, a
 * frame type only the parent sends, garbage, a truncated frame, a payload memfd that is missing,
 * unsealed, writable or shorter than announced, more descriptors than a message may carry; or it
 * scribbles over the shared mapping itself: ring indices moved back or too far ahead, a consumer
 * index beyond what the parent produced, random bytes over the whole mapping at any moment. Each
 * must break the pool (CF_EBROKEN for every pending future, refusal of later submits), never make
 * the parent read outside what it mapped or received, never hang it, and leave no process
 * behind; a fresh pool works afterwards. Complements test_process_faults.c (deaths) and the
 * fuzzers of the frame decoder and the ring reader (tests/fuzz). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cf_test.h"
#include "core/internal.h"
#include "process_pool/proc.h"
#include "proc_util.h"

enum { WORKER_FD = 3 };

/* Sends descriptors on the worker's socket, as the worker does before a frame that needs one. */
static void send_fds(const int *fds, int nfds)
{
    char byte = 'F';
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(100 * sizeof(int))];
    } ctl;
    memset(&ctl, 0, sizeof(ctl));
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    msg.msg_control = ctl.buf;
    msg.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
    memcpy(CMSG_DATA(c), fds, (size_t)nfds * sizeof(int));
    ssize_t sent = sendmsg(WORKER_FD, &msg, MSG_NOSIGNAL);
    (void)sent;
}

/* Rings the doorbell (any byte on the socket wakes a sleeping manager). */
static void ring(void)
{
    char byte = 'D';
    ssize_t sent = send(WORKER_FD, &byte, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)sent;
}

/* Publishes one frame (and first its descriptors) as the worker would. */
static void forge(const cf__frame *f, const void *payload, const int *fds, int nfds)
{
    static unsigned char buf[CF__FRAME_MAX];
    size_t n = cf__frame_encode(buf, f, payload);
    if (nfds)
        send_fds(fds, nfds);
    cf__worker_publish_raw(buf, n);
}

static int memfd_with(size_t size, unsigned seals)
{
    int fd = memfd_create("forged", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return -1;
    if (ftruncate(fd, (off_t)size) != 0)
        return -1;
    if (seals)
        fcntl(fd, F_ADD_SEALS, seals);
    return fd;
}

#define ALL_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL)

/* After a lie that only the parent's next look at the rings can catch: make sure it looks (the
 * doorbell), then wait to be killed, so the genuine result never comes to cover the lie. */
static _Noreturn void await_death(void)
{
    ring();
    for (;;)
        pause();
}

/* Tells the test (through the FIFO named by `path`) that the lie is in place. */
static void signal_test(const char *path)
{
    int fd = open(path, O_WRONLY);
    if (fd >= 0) {
        ssize_t n = write(fd, "x", 1);
        (void)n;
        close(fd);
    }
}

/* The forging task: the argument names the lie (and, after a colon, a FIFO to signal). The first
 * task a fresh pool dispatches has id 0, so a lie "about this task" uses id 0. */
static int liar(const void *arg, size_t len, void **result, size_t *result_len)
{
    char what[300];
    snprintf(what, sizeof(what), "%.*s", (int)len, (const char *)arg);
    char *fifo = strchr(what, ':');
    if (fifo)
        *fifo++ = '\0';
    cf__ring_map *map = cf__worker_map();
    cf__ring_ctl *ctl = map ? map->ctl : NULL;
    uint32_t head = ctl ? atomic_load(&ctl->resp_head) : 0;
    cf__frame f = {.type = CF__FR_RESULT, .id = 0};
    if (!ctl) {
        return cf_task_fail(CF_EINVAL, "not in a worker");
    } else if (strcmp(what, "wrong_id") == 0) {
        f.id = 12345;
        forge(&f, NULL, NULL, 0);
    } else if (strcmp(what, "parent_type") == 0) {
        f.type = CF__FR_TASK;
        forge(&f, NULL, NULL, 0);
    } else if (strcmp(what, "garbage") == 0) {
        unsigned char junk[96];
        memset(junk, 0xab, sizeof(junk));
        cf__worker_publish_raw(junk, sizeof(junk));
    } else if (strcmp(what, "truncated") == 0) {
        uint32_t magic = CF__FRAME_MAGIC;
        cf__worker_publish_raw(&magic, sizeof(magic));
        _exit(0);
    } else if (strcmp(what, "fd_missing") == 0) {
        f.flags = CF__FRAME_FD;
        f.len = 100;
        forge(&f, NULL, NULL, 0);
    } else if (strcmp(what, "fd_unsealed") == 0) {
        int fd = memfd_with(100, 0);
        f.flags = CF__FRAME_FD;
        f.len = 100;
        forge(&f, NULL, &fd, 1);
    } else if (strcmp(what, "fd_writable") == 0) {
        /* Sealed against shrinking, not against writing: the worker could change the bytes
         * under a caller reading them in place. */
        int fd = memfd_with(1 << 20, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
        f.flags = CF__FRAME_FD;
        f.len = 1 << 20;
        forge(&f, NULL, &fd, 1);
    } else if (strcmp(what, "fd_short") == 0) {
        int fd = memfd_with(10, ALL_SEALS);
        f.flags = CF__FRAME_FD;
        f.len = 1 << 20;
        forge(&f, NULL, &fd, 1);
    } else if (strcmp(what, "fd_offset") == 0) {
        int fd = memfd_with(1 << 20, ALL_SEALS);
        f.flags = CF__FRAME_FD;
        f.len = 1 << 20;
        f.fd_offset = 4096; /* the payload would end past the file */
        forge(&f, NULL, &fd, 1);
    } else if (strcmp(what, "fd_flood") == 0) {
        int fds[80];
        for (int i = 0; i < 80; i++)
            fds[i] = memfd_with(1, ALL_SEALS);
        f.flags = CF__FRAME_FD;
        f.len = 1;
        forge(&f, NULL, fds, 80);
    } else if (strcmp(what, "duplicate") == 0) {
        static char big[CF__FRAME_INLINE_MAX];
        memset(big, 'd', sizeof(big));
        f.len = sizeof(big);
        forge(&f, big, NULL, 0); /* this task's result, early; the real one follows */
    } else if (strcmp(what, "head_ahead") == 0) {
        atomic_store(&ctl->resp_head, head + CF__RING_CAP + 16);
        await_death();
    } else if (strcmp(what, "head_back") == 0) {
        /* Once the parent has taken everything published, an index behind that is a lie it
         * can tell (before, it is only a slower writer). */
        ring();
        while (atomic_load(&ctl->resp_tail) != head)
            usleep(1000);
        atomic_store(&ctl->resp_head, head - 16);
        await_death();
    } else if (strcmp(what, "tail_ahead") == 0 && fifo) {
        /* Claims to have consumed requests the parent never wrote. */
        atomic_store(&ctl->req_tail, atomic_load(&ctl->req_head) + 4096);
        signal_test(fifo);
        await_death();
    }
    *result = malloc(1);
    *result_len = 0;
    return 0;
}

static int ok_task(const void *arg, size_t len, void **result, size_t *result_len)
{
    (void)arg;
    (void)len;
    *result = malloc(1);
    *result_len = 0;
    return 0;
}

static void check_lie(const char *what, bool liar_may_succeed)
{
    int children = proc_util_count_children();
    cf_executor *ex;
    ck_assert_int_eq(cf_process_pool_new(&ex, &(cf_process_pool_options){.max_workers = 1}), 0);
    cf_future *lie, *after;
    ck_assert_int_eq(cf_executor_submit_bytes(&lie, ex, liar, what, strlen(what)), 0);
    int rc = cf_executor_submit_bytes(&after, ex, ok_task, "", 0);
    ck_assert(rc == 0 || rc == CF_EBROKEN);
    int code = 0;
    ck_assert_int_eq(cf_future_exception(&code, NULL, lie, CF_TEST_LONG), 0);
    if (!liar_may_succeed || code)
        ck_assert_msg(code == CF_EBROKEN, "%s: the lying task gave %s", what, cf_err_name(code));
    if (rc == 0) {
        ck_assert_int_eq(cf_future_exception(&code, NULL, after, CF_TEST_LONG), 0);
        ck_assert_msg(code == CF_EBROKEN, "%s: the next task gave %s", what, cf_err_name(code));
        cf_future_unref(after);
    }
    cf_future *f = (cf_future *)1;
    ck_assert_int_eq(cf_executor_submit_bytes(&f, ex, ok_task, "", 0), CF_EBROKEN);
    ck_assert_ptr_null(f);
    cf_future_unref(lie);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    ck_assert_int_eq(proc_util_count_children(), children);
    /* A fresh pool is not affected. */
    ck_assert_int_eq(cf_process_pool_new(&ex, &(cf_process_pool_options){.max_workers = 1}), 0);
    ck_assert_int_eq(cf_executor_submit_bytes(&f, ex, ok_task, "", 0), 0);
    ck_assert_int_eq(cf_future_result(NULL, f, CF_TEST_LONG), 0);
    cf_future_unref(f);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}

START_TEST(test_result_for_another_task)
{
    check_lie("wrong_id", false);
}
END_TEST

START_TEST(test_frame_type_of_the_parent)
{
    check_lie("parent_type", false);
}
END_TEST

START_TEST(test_payload_descriptor_missing)
{
    check_lie("fd_missing", false);
}
END_TEST

START_TEST(test_payload_memfd_unsealed)
{
    check_lie("fd_unsealed", false);
}
END_TEST

START_TEST(test_payload_memfd_shorter_than_announced)
{
    check_lie("fd_short", false);
}
END_TEST

START_TEST(test_payload_memfd_writable)
{
    check_lie("fd_writable", false);
}
END_TEST

START_TEST(test_payload_beyond_memfd)
{
    check_lie("fd_offset", false);
}
END_TEST

START_TEST(test_descriptor_flood)
{
    check_lie("fd_flood", false);
}
END_TEST

START_TEST(test_garbage_in_ring)
{
    check_lie("garbage", false);
}
END_TEST

START_TEST(test_truncated_frame)
{
    check_lie("truncated", false);
}
END_TEST

START_TEST(test_ring_head_too_far_ahead)
{
    check_lie("head_ahead", false);
}
END_TEST

START_TEST(test_ring_head_moved_back)
{
    check_lie("head_back", false);
}
END_TEST

/* The worker claims it consumed more requests than the parent wrote: caught when the parent
 * next writes to it (the next task, submitted once the lie is in place). */
START_TEST(test_ring_tail_beyond_head)
{
    char fifo[64];
    proc_util_make_fifo(fifo, sizeof(fifo));
    cf_executor *ex;
    ck_assert_int_eq(cf_process_pool_new(&ex, &(cf_process_pool_options){.max_workers = 1}), 0);
    char arg[128];
    snprintf(arg, sizeof(arg), "tail_ahead:%s", fifo);
    cf_future *lie = NULL, *after = NULL;
    ck_assert_int_eq(cf_executor_submit_bytes(&lie, ex, liar, arg, strlen(arg)), 0);
    int fd = open(fifo, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    char byte;
    ck_assert_int_eq(read(fd, &byte, 1), 1);
    close(fd);
    int rc = cf_executor_submit_bytes(&after, ex, ok_task, "", 0);
    ck_assert(rc == 0 || rc == CF_EBROKEN);
    int code = 0;
    ck_assert_int_eq(cf_future_exception(&code, NULL, lie, CF_TEST_LONG), 0);
    ck_assert_int_eq(code, CF_EBROKEN);
    if (after) {
        ck_assert_int_eq(cf_future_exception(&code, NULL, after, CF_TEST_LONG), 0);
        ck_assert_int_eq(code, CF_EBROKEN);
        cf_future_unref(after);
    }
    cf_future_unref(lie);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    unlink(fifo);
}
END_TEST

/* ---- a worker that scribbles over its shared mapping ---- */

/* Writes random words all over the mapping for a while. Another process does it (a child of the
 * worker, sharing the mapping), as an attacker would: the worker's own code is not part of the
 * race, and ThreadSanitizer, which sees one process, rightly sees no race in the parent. */
static _Noreturn void scribble(unsigned char *base, int started)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    uint64_t x = 0x9e3779b97f4a7c15u ^ (uint64_t)getpid();
    int64_t end = cf__now_ns() + CF__NS_PER_S / 3;
    for (bool first = true; cf__now_ns() < end; first = false) {
        if (!first && started >= 0) {
            ssize_t w = write(started, "", 1);
            (void)w;
            close(started);
            started = -1;
        }
        for (int i = 0; i < 256; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            size_t at = (size_t)(x % CF__RING_SIZE) & ~(size_t)3;
            uint32_t v = (uint32_t)(x >> 32);
            /* Indices get plausible values now and then, so that the reader also sees frames
             * that decode and lengths that fit. */
            if ((x & 3) == 0)
                v &= 0x3ffff;
            *(volatile uint32_t *)(base + at) = v;
        }
        sched_yield();
    }
    _exit(0);
}

/* Starts a process that scribbles over the worker's whole mapping (control page and both rings)
 * while the worker goes on answering tasks as far as it can. */
static int scribbler(const void *arg, size_t len, void **result, size_t *result_len)
{
    (void)arg, (void)len, (void)result, (void)result_len;
    cf__ring_map *map = cf__worker_map();
    if (!map)
        return cf_task_fail(CF_EINVAL, "not in a worker");
    int p[2];
    if (pipe(p) != 0)
        return CF_EMFILE;
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        scribble(map->base, p[1]);
    }
    close(p[1]);
    /* The task ends once the scribbling is under way, so that the tasks after it meet it (on
     * an idle machine they could all be done before the scribbler ran at all). */
    char c;
    while (pid > 0 && read(p[0], &c, 1) < 0 && errno == EINTR)
        ;
    close(p[0]);
    return pid > 0 ? 0 : CF_EAGAIN;
}

/* Whatever is written into the worker's mapping at any moment, every future ends (with whatever
 * outcome the confused worker gives, or CF_EBROKEN), the parent neither crashes nor reads outside
 * its mapping (the sanitizers and valgrind watch), kill always ends the pool, and no process is
 * left. */
START_TEST(test_scribbler)
{
    int children = proc_util_count_children();
    int broken = 0;
    for (int round = 0; round < 3; round++) {
        cf_executor *ex;
        ck_assert_int_eq(cf_process_pool_new(&ex, &(cf_process_pool_options){.max_workers = 1}), 0);
        enum { N = 4096, BATCH = 16 }; /* N: more than the half second can submit */
        cf_future *fs[N];
        ck_assert_int_eq(cf_executor_submit_bytes(&fs[0], ex, scribbler, "", 0), 0);
        size_t n = 1;
        static char payload[1000];
        /* Keep the rings busy while the scribbler runs (a third of a second, from the end of
         * its task). */
        double end = cf_test_monotonic() + 0.5;
        while (n + BATCH <= N && cf_test_monotonic() < end) {
            size_t first = n;
            for (; n < first + BATCH; n++) {
                int rc =
                    cf_executor_submit_bytes(&fs[n], ex, ok_task, payload, n * 7 % sizeof(payload));
                if (rc) {
                    ck_assert_int_eq(rc, CF_EBROKEN);
                    break;
                }
            }
            if (n < first + BATCH)
                break;
            cf_wait(NULL, NULL, fs + first, BATCH, CF_ALL_COMPLETED, 0.05);
        }
        /* Whatever state it left, kill ends the pool. */
        ck_assert_int_eq(cf_process_pool_kill(ex), 0);
        for (size_t i = 0; i < n; i++) {
            int code = 0;
            int rc = cf_future_exception(&code, NULL, fs[i], CF_TEST_LONG);
            /* Any outcome: a lying worker may spoil the results of its tasks (garbage in its
             * request ring can even make it run them with another function or argument). */
            ck_assert_msg(rc == 0 || rc == CF_ECANCELLED,
                          "a future of a scribbling worker did not end: %s", cf_err_name(rc));
            broken += code == CF_EBROKEN;
            cf_future_unref(fs[i]);
        }
        ck_assert_int_eq(cf_executor_free(ex), 0);
        ck_assert_int_eq(proc_util_count_children(), children);
    }
    /* The scribbling did break something (else the test proves nothing). */
    ck_assert_int_gt(broken, 0);
}
END_TEST

/* The early (forged) result is accepted as the task's; the genuine one that follows answers no
 * task: the pool breaks then. */
START_TEST(test_second_result_for_a_task)
{
    check_lie("duplicate", true);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("process_hostile");
    TCase *tc = cf_test_tcase("lies");
    tcase_add_test(tc, test_result_for_another_task);
    tcase_add_test(tc, test_frame_type_of_the_parent);
    tcase_add_test(tc, test_payload_descriptor_missing);
    tcase_add_test(tc, test_payload_memfd_unsealed);
    tcase_add_test(tc, test_payload_memfd_shorter_than_announced);
    tcase_add_test(tc, test_payload_memfd_writable);
    tcase_add_test(tc, test_payload_beyond_memfd);
    tcase_add_test(tc, test_descriptor_flood);
    tcase_add_test(tc, test_garbage_in_ring);
    tcase_add_test(tc, test_truncated_frame);
    tcase_add_test(tc, test_ring_head_too_far_ahead);
    tcase_add_test(tc, test_ring_head_moved_back);
    tcase_add_test(tc, test_ring_tail_beyond_head);
    tcase_add_test(tc, test_scribbler);
    tcase_add_test(tc, test_second_result_for_a_task);
    suite_add_tcase(s, tc);
    return s;
}

CF_TEST_MAIN(suite)
