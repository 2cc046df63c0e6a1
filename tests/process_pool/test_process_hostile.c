/* A worker that lies (white-box): a task forges frames on the worker's socket (descriptor 3, see
 * fork_server.c) that are well-formed on the wire but wrong for the parent: a result for a task
 * it was not given, a second result for the same task, a frame type only the parent sends, a
 * payload memfd that is missing, unsealed or shorter than announced, more descriptors than a
 * message may carry. Each must break the pool (CF_EBROKEN for every pending future, refusal of
 * later submits), never make the parent read outside what it received, and leave no process
 * behind; a fresh pool works afterwards. Complements test_process_faults.c (garbage bytes, a
 * truncated frame, deaths) and the decoder's fuzzer (tests/fuzz). */
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cf_test.h"
#include "core/internal.h"
#include "process_pool/frame.h"
#include "proc_util.h"

enum { WORKER_FD = 3 };

/* Sends one frame (and optionally descriptors) the way the worker's channel does. */
static void forge(const cf__frame *f, const void *payload, const int *fds, int nfds)
{
    static unsigned char buf[CF__FRAME_MAX];
    size_t n = cf__frame_encode(buf, f, payload);
    struct iovec iov = {.iov_base = buf, .iov_len = n};
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(100 * sizeof(int))];
    } ctl;
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    if (nfds) {
        memset(&ctl, 0, sizeof(ctl));
        msg.msg_control = ctl.buf;
        msg.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
        memcpy(CMSG_DATA(c), fds, (size_t)nfds * sizeof(int));
    }
    ssize_t sent = sendmsg(WORKER_FD, &msg, MSG_NOSIGNAL);
    (void)sent;
}

static int memfd_with(size_t size, bool sealed)
{
    int fd = memfd_create("forged", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return -1;
    if (ftruncate(fd, (off_t)size) != 0)
        return -1;
    if (sealed)
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
    return fd;
}

/* The forging task: the argument names the lie. The first task a fresh pool dispatches has id
 * 0, so a lie "about this task" uses id 0. */
static int liar(const void *arg, size_t len, void **result, size_t *result_len)
{
    char what[32];
    snprintf(what, sizeof(what), "%.*s", (int)len, (const char *)arg);
    cf__frame f = {.type = CF__FR_RESULT, .id = 0};
    if (strcmp(what, "wrong_id") == 0) {
        f.id = 12345;
        forge(&f, NULL, NULL, 0);
    } else if (strcmp(what, "parent_type") == 0) {
        f.type = CF__FR_TASK;
        forge(&f, NULL, NULL, 0);
    } else if (strcmp(what, "fd_missing") == 0) {
        f.flags = CF__FRAME_FD;
        f.len = 100;
        forge(&f, NULL, NULL, 0);
    } else if (strcmp(what, "fd_unsealed") == 0) {
        int fd = memfd_with(100, false);
        f.flags = CF__FRAME_FD;
        f.len = 100;
        forge(&f, NULL, &fd, 1);
    } else if (strcmp(what, "fd_short") == 0) {
        int fd = memfd_with(10, true);
        f.flags = CF__FRAME_FD;
        f.len = 1 << 20;
        forge(&f, NULL, &fd, 1);
    } else if (strcmp(what, "fd_flood") == 0) {
        int fds[80];
        for (int i = 0; i < 80; i++)
            fds[i] = memfd_with(1, true);
        forge(&f, NULL, fds, 80);
    } else if (strcmp(what, "duplicate") == 0) {
        static char big[CF__FRAME_INLINE_MAX];
        memset(big, 'd', sizeof(big));
        f.len = sizeof(big);
        forge(&f, big, NULL, 0); /* this task's result, early; the real one follows */
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

START_TEST(test_descriptor_flood)
{
    check_lie("fd_flood", false);
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
    tcase_add_test(tc, test_descriptor_flood);
    tcase_add_test(tc, test_second_result_for_a_task);
    suite_add_tcase(s, tc);
    return s;
}

CF_TEST_MAIN(suite)
