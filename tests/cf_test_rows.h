/* The table of the hostile-input suites: ROW(expression, allowed results...) evaluates a call
 * with a bad input and fails the test unless the result is one of the allowed ones (the codes
 * the header documents). Every row is counted; cf_test_rows_report() prints the rows tried since
 * its last call, one line per test whether Check runs each test in a process of its own or all
 * of them in one (.ci/matrix sums the lines). */
#ifndef CF_TEST_ROWS_H
#define CF_TEST_ROWS_H

#include <limits.h>
#include <stdio.h>

#include "cf_test.h"

static unsigned long cf_test_rows_tried, cf_test_rows_reported;

static inline void cf_test_check_row(const char *expr, int line, long long got,
                                     const long long *allowed)
{
    cf_test_rows_tried++;
    for (const long long *a = allowed; *a != LLONG_MIN; a++)
        if (got == *a)
            return;
    ck_abort_msg("line %d: %s gave %lld (%s)", line, expr, got, cf_err_name((int)got));
}

#define ROW(expr, ...)                                                                             \
    cf_test_check_row(#expr, __LINE__, (long long)(expr),                                          \
                      (const long long[]){__VA_ARGS__, LLONG_MIN})

static inline void cf_test_rows_report(void)
{
    printf("hostile: %lu bad inputs tried\n", cf_test_rows_tried - cf_test_rows_reported);
    fflush(stdout);
    cf_test_rows_reported = cf_test_rows_tried;
}

#endif
