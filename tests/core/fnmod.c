/* A module loaded at run time by test_fn_name.c, built in three variants (FNMOD_VARIANT): two
 * builds that differ in their code (so in their build-id) and one linked without a build-id. */
#include <stdlib.h>

int fnmod_variant(const void *arg, size_t len, void **result, size_t *result_len);

int fnmod_variant(const void *arg, size_t len, void **result, size_t *result_len)
{
    (void)arg;
    (void)len;
    int *out = malloc(sizeof(*out));
    if (!out)
        return -12;
    *out = FNMOD_VARIANT;
    *result = out;
    *result_len = sizeof(*out);
    return 0;
}
