/* A plugin host for test_process_start: it is not linked with libcfutures; it dlopen()s the
 * library (argv[1]) and a library of tasks (argv[2]), as a program loading plugins would, and
 * runs a process-pool map of a task. Each run of main() appends a line to the file named by
 * CF_TEST_HOST_COUNTER (whatever its arguments), so the test can check that main() ran once: a
 * pool must never run the host's main() again.
 *   argv[3] "auto": the default start method; prints "ok <sum of squares 0..99>".
 *   argv[3] "program": asks for CF_PROCESS_START_PROGRAM; prints what cf_process_pool_new said.
 * Exits 0 when it could report, 2 on an unexpected argument (as a host given
 * --cfutures-forkserver by a pool that re-ran it would). */
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cfutures.h"

#define LOAD(lib, name)                                                                            \
    __typeof__(&name) p_##name = (__typeof__(&name))dlsym(lib, #name);                             \
    if (!p_##name) {                                                                               \
        fprintf(stderr, "dlsym %s: %s\n", #name, dlerror());                                       \
        return 3;                                                                                  \
    }

int main(int argc, char **argv)
{
    const char *counter = getenv("CF_TEST_HOST_COUNTER");
    if (counter) {
        int fd = open(counter, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd >= 0) {
            ssize_t n = write(fd, "main\n", 5);
            (void)n;
            close(fd);
        }
    }
    if (argc != 4 || (strcmp(argv[3], "auto") != 0 && strcmp(argv[3], "program") != 0)) {
        fprintf(stderr, "usage: %s LIBCFUTURES TASKS auto|program\n", argv[0]);
        return 2;
    }
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    void *tasks = dlopen(argv[2], RTLD_NOW | RTLD_LOCAL);
    if (!lib || !tasks) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 3;
    }
    LOAD(lib, cf_process_pool_new)
    LOAD(lib, cf_executor_map_bytes)
    LOAD(lib, cf_map_next)
    LOAD(lib, cf_map_current)
    LOAD(lib, cf_map_free)
    LOAD(lib, cf_future_result_bytes)
    LOAD(lib, cf_executor_free)
    LOAD(lib, cf_err_name)
    cf_bytes_fn square = (cf_bytes_fn)dlsym(tasks, "start_square");
    if (!square)
        return 3;
    cf_process_pool_options o = {.max_workers = 2};
    if (strcmp(argv[3], "program") == 0)
        o.start_method = CF_PROCESS_START_PROGRAM;
    cf_executor *ex = NULL;
    int rc = p_cf_process_pool_new(&ex, &o);
    if (rc) {
        printf("pool %s\n", p_cf_err_name(rc));
        return 0;
    }
    enum { N = 100 };
    int values[N];
    cf_bytes args[N];
    for (int i = 0; i < N; i++) {
        values[i] = i;
        args[i] = (cf_bytes){.data = &values[i], .len = sizeof(int)};
    }
    cf_map *it;
    rc = p_cf_executor_map_bytes(&it, ex, square, args, N, 60, 0);
    if (rc) {
        printf("map %s\n", p_cf_err_name(rc));
        return 0;
    }
    long sum = 0;
    while ((rc = p_cf_map_next(NULL, it)) == 0) {
        const void *data;
        size_t len;
        int v;
        if (p_cf_future_result_bytes(&data, &len, p_cf_map_current(it), 0) != 0 || len != sizeof(v))
            break;
        memcpy(&v, data, sizeof(v));
        sum += v;
    }
    p_cf_map_free(it);
    p_cf_executor_free(ex);
    printf("%s %ld\n", rc == CF_EOF ? "ok" : p_cf_err_name(rc), sum);
    return 0;
}
