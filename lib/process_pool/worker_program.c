/* cfutures-worker: the helper program of CF_PROCESS_START_HELPER. A process pool whose program
 * cannot be re-executed (a plugin host, a language binding) runs this program as its fork server;
 * its workers dlopen() the shared libraries that hold the tasks. Installed in libexecdir; it
 * only serves a pool that started it (see cf_process_pool_serve()). */
#include <stdio.h>

#include "cfutures.h"

int main(int argc, char **argv)
{
    int rc = cf_process_pool_serve(argc, argv);
    fprintf(stderr,
            "cfutures-worker: this program is started by libcfutures' process pools (%s); it "
            "is not meant to be run by hand\n",
            cf_strerror(rc));
    return 2;
}
