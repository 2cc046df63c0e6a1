/* A program that uses the MPI executor as an outside project would (pkg-config cfutures-mpi,
 * CMake's cfutures::mpi component, meson's dependency('cfutures-mpi')). Under `mpirun -n 2` rank
 * 0 runs one bytes task on rank 1; alone (a singleton), it checks that a one-rank communicator is
 * refused. Exit status 0 means it all held. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cfutures.h>
#include <cfutures/mpi.h>

static int negate(const void *arg, size_t len, void **result, size_t *result_len)
{
    int32_t x;
    if (len != sizeof(x))
        return CF_EINVAL;
    memcpy(&x, arg, sizeof(x));
    int32_t *out = malloc(sizeof(*out));
    if (!out)
        return CF_ENOMEM;
    *out = -x;
    *result = out;
    *result_len = sizeof(*out);
    return 0;
}

int main(int argc, char **argv)
{
    int provided, size;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    cf_executor *ex = NULL;
    int rc;
    if (size < 2) {
        rc = cf_mpi_executor_new(&ex, MPI_COMM_WORLD, NULL) == CF_EINVAL ? 0 : 1;
    } else if ((rc = cf_mpi_executor_new(&ex, MPI_COMM_WORLD, NULL)) == 0 && ex) {
        int32_t x = 21;
        cf_future *f;
        const void *data = NULL;
        rc = cf_executor_submit_bytes(&f, ex, negate, &x, sizeof(x));
        if (rc == 0)
            rc = cf_future_result_bytes(&data, NULL, f, 30.0);
        if (rc == 0 && *(const int32_t *)data != -21)
            rc = 1;
        printf("mpi_hello: %s, -21 expected\n", cf_err_name(rc));
        cf_future_unref(f);
        cf_executor_free(ex);
    }
    MPI_Finalize();
    return rc != 0;
}
