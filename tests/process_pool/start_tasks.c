/* Task functions in a shared library, as a plugin or a language binding has them: the start
 * methods' tests load it with dlopen() and run its functions in process pools. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cfutures.h"

int start_square(const void *arg, size_t len, void **result, size_t *result_len);
int start_fail(const void *arg, size_t len, void **result, size_t *result_len);
int start_init(const void *arg, size_t len);
int start_read_init(const void *arg, size_t len, void **result, size_t *result_len);

static int init_value = -1;

static int return_int(int v, void **result, size_t *result_len)
{
    int *out = malloc(sizeof(int));
    if (!out)
        return CF_ENOMEM;
    *out = v;
    *result = out;
    *result_len = sizeof(int);
    return 0;
}

/* An int in, its square out. */
int start_square(const void *arg, size_t len, void **result, size_t *result_len)
{
    int x;
    if (len != sizeof(x))
        return cf_task_fail(CF_EINVAL, "expected an int, got %zu bytes", len);
    memcpy(&x, arg, sizeof(x));
    return return_int(x * x, result, result_len);
}

/* Fails with a code and a message. */
int start_fail(const void *arg, size_t len, void **result, size_t *result_len)
{
    (void)arg, (void)len, (void)result, (void)result_len;
    return cf_task_fail(-7, "failed on purpose");
}

/* An initializer: remembers its int. */
int start_init(const void *arg, size_t len)
{
    if (len != sizeof(init_value))
        return CF_EINVAL;
    memcpy(&init_value, arg, sizeof(init_value));
    return 0;
}

int start_read_init(const void *arg, size_t len, void **result, size_t *result_len)
{
    (void)arg, (void)len;
    return return_int(init_value, result, result_len);
}
