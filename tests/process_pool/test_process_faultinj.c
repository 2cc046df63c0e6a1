/* Fault injection over the process pool (white-box; meaningful with -Dfault_injection=true,
 * otherwise the walk is skipped). Every allocation, descriptor, mapping, thread and process
 * creation in the parent fails in turn: creation and submits must return a documented error or
 * succeed, every accepted future must finish, and no process may be left behind. */
#include "cf_test.h"
#include "core/internal.h"
#include "proc_util.h"

#ifdef CF_FAULT_INJECTION
static bool documented(int rc)
{
    return rc == CF_ENOMEM || rc == CF_EMFILE || rc == CF_EAGAIN || rc == CF_ESYSTEM;
}
#endif

START_TEST(test_fault_walk)
{
#ifdef CF_FAULT_INJECTION
    static unsigned char big[100000];
    memset(big, 7, sizeof(big));
    unsigned kinds =
        CF__FAULT_ALLOC | CF__FAULT_THREAD | CF__FAULT_FD | CF__FAULT_MMAP | CF__FAULT_FORK;
    int before = proc_util_count_children();
    for (unsigned long nth = 1; nth < 2000; nth++) {
        cf__fault_arm(kinds, nth);
        cf_executor *ex = NULL;
        int rc = cf_process_pool_new(&ex, &(cf_process_pool_options){.max_workers = 2});
        if (rc) {
            cf__fault_arm(0, 0);
            ck_assert_msg(documented(rc), "fault %lu: pool_new gave %s", nth, cf_err_name(rc));
            continue;
        }
        cf_future *fs[3] = {NULL, NULL, NULL};
        for (int i = 0; i < 3; i++) {
            rc = cf_executor_submit_bytes(&fs[i], ex, cf_test_echo_task,
                                          i == 1 ? big : (void *)"abc", i == 1 ? sizeof(big) : 3);
            ck_assert_msg(rc == 0 || documented(rc), "fault %lu: submit gave %s", nth,
                          cf_err_name(rc));
        }
        bool fired = cf__fault_fired();
        cf__fault_arm(0, 0);
        for (int i = 0; i < 3; i++) {
            if (!fs[i])
                continue;
            int code = 0;
            rc = cf_future_exception(&code, NULL, fs[i], CF_TEST_LONG);
            ck_assert_msg(rc == 0, "fault %lu: future %d not done (%s)", nth, i, cf_err_name(rc));
            ck_assert_msg(code == 0 || code == CF_ENOMEM || code == CF_EBROKEN || code == CF_EMFILE,
                          "fault %lu: task %d failed with %s", nth, i, cf_err_name(code));
            cf_future_unref(fs[i]);
        }
        ck_assert_int_eq(cf_executor_free(ex), 0);
        ck_assert_int_eq(proc_util_count_children(), before);
        if (!fired)
            break; /* past the last fault point of this scenario */
        if (getenv("CF_TEST_VERBOSE"))
            fprintf(stderr, "fault %lu ok\n", nth);
    }
#endif
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("process_faultinj");
    TCase *tc = cf_test_tcase("walk");
    tcase_add_test(tc, test_fault_walk);
    suite_add_tcase(s, tc);
    return s;
}

CF_TEST_MAIN(suite)
