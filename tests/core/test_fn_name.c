/* Naming task functions across processes (fn_name.h): the sender's table (module numbers,
 * offsets, paths, identities) and the receiver's modules (finding or loading them, checking the
 * identity, rebuilding pointers), including the case it exists for: a module that is a different
 * build on the receiving side (a library replaced on disk after the sender loaded it), which a
 * process-pool worker must refuse with a clear message instead of calling into the wrong code. */
#include <dlfcn.h>
#include <fcntl.h>
#include <unistd.h>

#include "cf_test.h"
#include "cfutures/fn_name.h"

static int local_task(const void *arg, size_t len, void **result, size_t *result_len)
{
    (void)arg;
    (void)len;
    *result = NULL;
    *result_len = 0;
    return 0;
}

static int other_local_task(const void *arg, size_t len, void **result, size_t *result_len)
{
    return local_task(arg, len, result, result_len) + 1;
}

static int some_data = 42;

typedef int (*bytes_fn)(const void *, size_t, void **, size_t *);

START_TEST(test_table_names_functions)
{
    cf_fn_table *t;
    ck_assert_int_eq(cf_fn_table_new(&t), 0);
    uint32_t m1, m2, m3;
    uint64_t o1, o2, o3;
    ck_assert_int_eq(cf_fn_table_name(t, (const void *)local_task, &m1, &o1), 0);
    ck_assert_int_eq(cf_fn_table_name(t, (const void *)other_local_task, &m2, &o2), 0);
    ck_assert_uint_eq(m1, 0);
    ck_assert_uint_eq(m2, 0); /* same module, another offset */
    ck_assert_uint_ne(o1, o2);
    ck_assert_int_eq(cf_fn_table_name(t, (const void *)local_task, &m3, &o3), 0);
    ck_assert(m3 == m1 && o3 == o1);
    ck_assert_int_eq(cf_fn_table_name(t, (const void *)getpid, &m3, &o3), 0);
    ck_assert_uint_eq(m3, 1); /* libc: a new number */
    const char *path;
    const void *id;
    size_t id_len;
    ck_assert_int_eq(cf_fn_table_module(&path, &id, &id_len, t, 0), 0);
    ck_assert_str_eq(path, "");    /* the main program */
    ck_assert_uint_eq(id_len, 20); /* a GNU build-id (SHA-1 by default) */
    ck_assert_int_eq(cf_fn_table_module(&path, NULL, NULL, t, 1), 0);
    ck_assert_ptr_nonnull(strstr(path, "libc"));
    ck_assert_int_eq(cf_fn_table_module(NULL, NULL, NULL, t, 2), CF_EINVAL);
    ck_assert_int_eq(cf_fn_table_module(NULL, NULL, NULL, NULL, 0), CF_EINVAL);
    cf_fn_table_free(t);
    cf_fn_table_free(NULL);
}
END_TEST

START_TEST(test_table_refuses_non_code)
{
    cf_fn_table *t;
    ck_assert_int_eq(cf_fn_table_new(&t), 0);
    uint32_t m;
    uint64_t o;
    void *heap = malloc(16);
    int local;
    ck_assert_int_eq(cf_fn_table_name(t, &some_data, &m, &o), CF_EINVAL);
    ck_assert_int_eq(cf_fn_table_name(t, heap, &m, &o), CF_EINVAL);
    ck_assert_int_eq(cf_fn_table_name(t, &local, &m, &o), CF_EINVAL);
    ck_assert_int_eq(cf_fn_table_name(t, NULL, &m, &o), CF_EINVAL);
    ck_assert_int_eq(cf_fn_table_name(NULL, (const void *)local_task, &m, &o), CF_EINVAL);
    ck_assert_int_eq(cf_fn_table_name(t, (const void *)local_task, NULL, &o), CF_EINVAL);
    ck_assert_int_eq(cf_fn_table_module(NULL, NULL, NULL, t, 0), CF_EINVAL); /* none yet */
    ck_assert_int_eq(cf_fn_table_new(NULL), CF_EINVAL);
    free(heap);
    cf_fn_table_free(t);
}
END_TEST

START_TEST(test_module_open_checks_identity)
{
    cf_fn_table *t;
    ck_assert_int_eq(cf_fn_table_new(&t), 0);
    uint32_t m;
    uint64_t off;
    ck_assert_int_eq(cf_fn_table_name(t, (const void *)local_task, &m, &off), 0);
    const char *path;
    const void *id;
    size_t id_len;
    ck_assert_int_eq(cf_fn_table_module(&path, &id, &id_len, t, m), 0);
    cf_module *mod;
    char why[512];
    ck_assert_int_eq(cf_module_open(&mod, path, id, id_len, why, sizeof(why)), 0);
    ck_assert_str_eq(why, "");
    ck_assert(cf_module_symbol(mod, off) == (void *)local_task);
    ck_assert_ptr_null(cf_module_symbol(mod, UINT64_MAX));
    ck_assert_ptr_null(cf_module_symbol(mod, 0)); /* the ELF header, not code */
    ck_assert_ptr_null(cf_module_symbol(NULL, off));
    cf_module_close(mod);
    cf_module_close(NULL);
    /* No identity given: no check. */
    ck_assert_int_eq(cf_module_open(&mod, path, NULL, 0, NULL, 0), 0);
    cf_module_close(mod);
    /* Another build: refused, saying so with both identities. */
    unsigned char wrong[20];
    memcpy(wrong, id, sizeof(wrong));
    wrong[0] ^= 0xff;
    mod = (cf_module *)1;
    ck_assert_int_eq(cf_module_open(&mod, path, wrong, sizeof(wrong), why, sizeof(why)), CF_EINVAL);
    ck_assert_ptr_null(mod);
    ck_assert_msg(strstr(why, "(main program) is a different build"), "%s", why);
    char hex[3];
    snprintf(hex, sizeof(hex), "%02x", wrong[0]);
    ck_assert_msg(strstr(why, hex), "%s", why);
    /* Not loadable. */
    ck_assert_int_eq(cf_module_open(&mod, "/nonexistent/libnothing.so", NULL, 0, why, sizeof(why)),
                     CF_EINVAL);
    ck_assert_msg(strstr(why, "/nonexistent/libnothing.so") && strstr(why, "cannot be loaded"),
                  "%s", why);
    ck_assert_int_eq(cf_module_open(NULL, "", NULL, 0, NULL, 0), CF_EINVAL);
    ck_assert_int_eq(cf_module_open(&mod, NULL, NULL, 0, NULL, 0), CF_EINVAL);
    ck_assert_int_eq(cf_module_open(&mod, "", NULL, 3, NULL, 0), CF_EINVAL);
    cf_fn_table_free(t);
}
END_TEST

/* ---- modules loaded at run time ---- */

static char scratch[64];

static void scratch_setup(void)
{
    snprintf(scratch, sizeof(scratch), "/tmp/cf-fnname-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(scratch));
}

static void scratch_teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", scratch);
    ck_assert_int_eq(system(cmd), 0);
}

/* Copies a file to `to` through a temporary name and a rename, as an upgrade would. */
static void install_file(const char *from, const char *to)
{
    char tmp[256];
    snprintf(tmp, sizeof(tmp), "%s.new", to);
    int in = open(from, O_RDONLY), out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0755);
    ck_assert(in >= 0 && out >= 0);
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof(buf))) > 0)
        ck_assert_int_eq(write(out, buf, (size_t)n), n);
    close(in);
    close(out);
    ck_assert_int_eq(rename(tmp, to), 0);
}

static bytes_fn load_variant(const char *built, const char *as, void **handle)
{
    install_file(built, as);
    *handle = dlopen(as, RTLD_NOW | RTLD_LOCAL);
    ck_assert_msg(*handle != NULL, "%s", dlerror());
    bytes_fn fn = (bytes_fn)dlsym(*handle, "fnmod_variant");
    ck_assert_ptr_nonnull((void *)fn);
    return fn;
}

static int run_in_new_pool(bytes_fn fn, int *code, char *message, size_t cap)
{
    cf_process_pool_options o = {.max_workers = 1};
    cf_executor *pool;
    ck_assert_int_eq(cf_process_pool_new(&pool, &o), 0);
    cf_future *f;
    ck_assert_int_eq(cf_executor_submit_bytes(&f, pool, fn, NULL, 0), 0);
    const void *data;
    int value = -1;
    int rc = cf_future_result_bytes(&data, NULL, f, CF_TEST_LONG);
    if (rc == 0) {
        memcpy(&value, data, sizeof(value));
    } else {
        const char *msg;
        ck_assert_int_eq(cf_future_exception(code, &msg, f, 0), 0);
        snprintf(message, cap, "%s", msg ? msg : "");
    }
    cf_future_unref(f);
    ck_assert_int_eq(cf_executor_free(pool), 0);
    return value;
}

/* The sender loaded a module, then it was replaced on disk: a new worker loads the new file and
 * must refuse it rather than run code at the old offset. */
START_TEST(test_worker_refuses_replaced_module)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/libtask.so", scratch);
    void *handle;
    bytes_fn fn = load_variant(FNMOD_DIR "/libfnmod_a.so", path, &handle);
    int code = 0;
    char message[1024] = "";
    ck_assert_int_eq(run_in_new_pool(fn, &code, message, sizeof(message)), 1);
    install_file(FNMOD_DIR "/libfnmod_b.so", path); /* an upgrade while we run */
    ck_assert_int_eq(run_in_new_pool(fn, &code, message, sizeof(message)), -1);
    ck_assert_int_eq(code, CF_EINVAL);
    ck_assert_msg(strstr(message, path) && strstr(message, "is a different build"), "%s", message);
    dlclose(handle);
}
END_TEST

/* A module linked without a build-id is identified by a hash of its code: same file, same
 * identity; the check still passes where the file is the same. */
START_TEST(test_module_without_build_id)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/libnoid.so", scratch);
    void *handle;
    bytes_fn fn = load_variant(FNMOD_DIR "/libfnmod_noid.so", path, &handle);
    cf_fn_table *t;
    ck_assert_int_eq(cf_fn_table_new(&t), 0);
    uint32_t m;
    uint64_t off;
    ck_assert_int_eq(cf_fn_table_name(t, (const void *)fn, &m, &off), 0);
    const char *recorded;
    const unsigned char *id;
    size_t id_len;
    ck_assert_int_eq(cf_fn_table_module(&recorded, (const void **)&id, &id_len, t, m), 0);
    ck_assert_str_eq(recorded, path);
    ck_assert_uint_eq(id_len, 9);
    ck_assert_int_eq(id[0], 'H');
    cf_module *mod;
    ck_assert_int_eq(cf_module_open(&mod, path, id, id_len, NULL, 0), 0);
    ck_assert(cf_module_symbol(mod, off) == (void *)fn);
    cf_module_close(mod);
    int code = 0;
    char message[1024];
    ck_assert_int_eq(run_in_new_pool(fn, &code, message, sizeof(message)), 3);
    cf_fn_table_free(t);
    dlclose(handle);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("fn_name");
    TCase *tc = cf_test_tcase("names");
    tcase_add_test(tc, test_table_names_functions);
    tcase_add_test(tc, test_table_refuses_non_code);
    tcase_add_test(tc, test_module_open_checks_identity);
    suite_add_tcase(s, tc);
    tc = cf_test_tcase("modules");
    tcase_add_checked_fixture(tc, scratch_setup, scratch_teardown);
    tcase_add_test(tc, test_worker_refuses_replaced_module);
    tcase_add_test(tc, test_module_without_build_id);
    suite_add_tcase(s, tc);
    return s;
}

CF_TEST_MAIN(suite)
