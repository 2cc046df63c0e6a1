/* The program of test_process_trust's setuid case: linked with the library (statically, so the
 * loader's secure mode cannot refuse a build-tree library path), made setuid-root by the test and
 * run by an unprivileged user with the fork-server marker and the user's own socket on fd 3. Its
 * main() must run normally, once: it reports the real and effective uid it runs with, and what
 * creating a process pool gives (a pool must not re-execute a setuid program). */
#include <stdio.h>
#include <unistd.h>

#include "cfutures.h"

int main(void)
{
    printf("main ruid=%d euid=%d\n", (int)getuid(), (int)geteuid());
    fflush(stdout);
    cf_executor *ex = NULL;
    int rc = cf_process_pool_new(&ex, NULL);
    printf("pool %s\n", cf_err_name(rc));
    if (ex)
        cf_executor_free(ex);
    return 0;
}
