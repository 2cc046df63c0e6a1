/* The generic executor tests (executor_contract.h) against each executor of the library and
 * against the example executor written on the public implementation interface
 * (examples/thread_per_task.c). The target is named by the first argument. */
#include "executor_contract.h"
#include "thread_per_task.h"

static cf_executor *make_thread_pool(void)
{
    cf_thread_pool_options o = {.max_workers = 2};
    cf_executor *ex = NULL;
    ck_assert_int_eq(cf_thread_pool_new(&ex, &o), 0);
    return ex;
}

static cf_executor *make_process_pool(void)
{
    cf_process_pool_options o = {.max_workers = 2};
    cf_executor *ex = NULL;
    ck_assert_int_eq(cf_process_pool_new(&ex, &o), 0);
    return ex;
}

static cf_executor *make_thread_per_task(void)
{
    cf_executor *ex = NULL;
    ck_assert_int_eq(thread_per_task_new(&ex), 0);
    return ex;
}

static const cf_contract_target targets[] = {
    {"thread_pool", make_thread_pool, true, 2},
    {"process_pool", make_process_pool, false, 2 * 8}, /* a window of 8 per worker */
    {"thread_per_task", make_thread_per_task, true, 0},
};

int main(int argc, char **argv)
{
    for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++)
        if (argc > 1 && strcmp(argv[1], targets[i].name) == 0)
            cf_contract = &targets[i];
    if (!cf_contract) {
        fprintf(stderr, "usage: %s thread_pool|process_pool|thread_per_task\n", argv[0]);
        return 2;
    }
    Suite *s = suite_create(cf_contract->name);
    suite_add_tcase(s, cf_contract_tcase());
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
