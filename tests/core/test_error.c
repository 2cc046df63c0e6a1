/* Error codes: every code has a name and a message, and unknown codes are handled. */
#include <errno.h>
#include <string.h>

#include "cf_test.h"

#define CHECK_CODE(name, value, msg)                                                               \
    ck_assert_int_eq(CF_##name, value);                                                            \
    ck_assert_int_lt(CF_##name, 0);                                                                \
    ck_assert_str_eq(cf_strerror(CF_##name), msg);                                                 \
    ck_assert_str_eq(cf_err_name(CF_##name), "CF_" #name);

START_TEST(test_every_code_has_name_and_message){CF_ERRNO_MAP(CHECK_CODE)} END_TEST

    START_TEST(test_errno_compatible_codes)
{
    ck_assert_int_eq(CF_EINVAL, -EINVAL);
    ck_assert_int_eq(CF_ENOMEM, -ENOMEM);
    ck_assert_int_eq(CF_ETIMEDOUT, -ETIMEDOUT);
    ck_assert_int_eq(CF_ECANCELLED, -ECANCELED);
    ck_assert_int_eq(CF_EAGAIN, -EAGAIN);
}
END_TEST

START_TEST(test_success_and_unknown)
{
    ck_assert_str_eq(cf_err_name(0), "CF_OK");
    ck_assert_str_eq(cf_strerror(0), "success");
    ck_assert_str_eq(cf_err_name(-99999), "CF_EUNKNOWN");
    ck_assert_str_eq(cf_strerror(-99999), "unknown error");
    ck_assert_str_eq(cf_strerror(12345), "unknown error");
}
END_TEST

START_TEST(test_codes_are_distinct)
{
    int codes[] = {
#define CF_LIST_CODE(name, value, msg) CF_##name,
        CF_ERRNO_MAP(CF_LIST_CODE)
#undef CF_LIST_CODE
    };
    size_t n = sizeof(codes) / sizeof(codes[0]);
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            ck_assert_int_ne(codes[i], codes[j]);
}
END_TEST

START_TEST(test_version)
{
    ck_assert_uint_eq(cf_version(),
                      (CF_VERSION_MAJOR << 16) | (CF_VERSION_MINOR << 8) | CF_VERSION_PATCH);
    ck_assert_str_eq(cf_version_string(), CF_VERSION_STRING);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("error");
    TCase *tc = cf_test_tcase("codes");
    tcase_add_test(tc, test_every_code_has_name_and_message);
    tcase_add_test(tc, test_errno_compatible_codes);
    tcase_add_test(tc, test_success_and_unknown);
    tcase_add_test(tc, test_codes_are_distinct);
    tcase_add_test(tc, test_version);
    suite_add_tcase(s, tc);
    return s;
}

CF_TEST_MAIN(suite)
