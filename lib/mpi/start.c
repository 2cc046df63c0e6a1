/* The two ways to start (mpi.h): the ranks of a communicator (a job launched with mpirun), or
 * workers spawned with MPI_Comm_spawn(). Both make a session (a communicator of our own, the
 * client's rank, the workers' ranks) and hand it to the client or the worker side. Every check
 * whose answer the ranks must agree on is made on all of them before anything is sent, so that a
 * refused start returns the same code everywhere instead of leaving workers waiting. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mpi_internal.h"

/* docs/abi.md: the options keep their size; new fields come out of `reserved`. */
_Static_assert(sizeof(void *) != 8 || sizeof(cf_mpi_options) == 152,
               "cf_mpi_options must keep its size: carve new fields out of `reserved`");

static bool reserved_zero(const cf_mpi_options *o)
{
    for (size_t i = 0; i < sizeof(o->reserved) / sizeof(o->reserved[0]); i++)
        if (o->reserved[i])
            return false;
    return true;
}

static int check_options(const cf_mpi_options *o)
{
    if (!reserved_zero(o) || o->window > CF_MPI_WINDOW_MAX)
        return CF_EINVAL;
    return 0;
}

/* CF_EINVALSTATE unless MPI is initialised and not finalised. */
static int mpi_usable(void)
{
    int init = 0, fini = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fini);
    return init && !fini ? 0 : CF_EINVALSTATE;
}

static bool thread_multiple(void)
{
    int level = MPI_THREAD_SINGLE;
    MPI_Query_thread(&level);
    return level >= MPI_THREAD_MULTIPLE;
}

/* A duplicate of `comm` that returns errors instead of aborting the job. */
static int private_comm(MPI_Comm comm, MPI_Comm *out)
{
    int rc = MPI_Comm_dup(comm, out);
    if (rc != MPI_SUCCESS)
        return mpi_failed(rc, "MPI_Comm_dup", NULL, 0);
    MPI_Comm_set_errhandler(*out, MPI_ERRORS_RETURN);
    return 0;
}

int cf_mpi_executor_new(cf_executor **out, MPI_Comm comm, const cf_mpi_options *options)
{
    static const cf_mpi_options defaults = {0};
    if (!out)
        return CF_EINVAL;
    *out = NULL;
    const cf_mpi_options *o = options ? options : &defaults;
    int rc = check_options(o);
    if (rc == 0)
        rc = mpi_usable();
    if (rc)
        return rc;
    int inter = 0, size = 0, rank = 0;
    if (comm == MPI_COMM_NULL || MPI_Comm_test_inter(comm, &inter) != MPI_SUCCESS || inter)
        return CF_EINVAL;
    MPI_Comm_size(comm, &size);
    MPI_Comm_rank(comm, &rank);
    if (size < 2 || o->root < 0 || o->root >= size)
        return CF_EINVAL;
    session s = {.client = o->root, .nworkers = size - 1};
    if ((rc = private_comm(comm, &s.comm)) != 0)
        return rc;
    if (rank != o->root)
        return worker_serve(&s);
    s.ranks = malloc((size_t)s.nworkers * sizeof(int));
    rc = s.ranks ? (thread_multiple() ? 0 : CF_ENOTSUP) : CF_ENOMEM;
    if (rc) {
        int all[1];
        session refuse = s;
        if (!s.ranks) {
            /* Not even room for the list: address the workers one at a time. */
            for (int r = 0; r < size; r++) {
                if (r == o->root)
                    continue;
                all[0] = r;
                refuse.ranks = all;
                refuse.nworkers = 1;
                client_refuse(&refuse, rc);
            }
        } else {
            for (int r = 0, i = 0; r < size; r++)
                if (r != o->root)
                    s.ranks[i++] = r;
            client_refuse(&s, rc);
        }
        MPI_Comm_free(&s.comm);
        free(s.ranks);
        return rc;
    }
    for (int r = 0, i = 0; r < size; r++)
        if (r != o->root)
            s.ranks[i++] = r;
    return client_start(out, &s, o->window);
}

/* ---- spawning ---- */

/* The path of this program, as MPI_Comm_spawn needs it (it starts the command on the target
 * host through its own daemon, where /proc/self/exe would name the daemon). */
static char *own_program(void)
{
    char *path = malloc(PATH_MAX);
    if (!path)
        return NULL;
    ssize_t n = readlink("/proc/self/exe", path, PATH_MAX - 1);
    if (n <= 0) {
        free(path);
        return NULL;
    }
    path[n] = '\0';
    return path;
}

static int spawn(session *s, int workers, MPI_Info info, const cf_mpi_options *o)
{
    char *program = o->command ? strdup(o->command) : own_program();
    int *errcodes = malloc((size_t)workers * sizeof(int));
    s->ranks = malloc((size_t)workers * sizeof(int));
    if (!program || !errcodes || !s->ranks) {
        free(program);
        free(errcodes);
        free(s->ranks);
        return CF_ENOMEM;
    }
    MPI_Comm self;
    int rc = private_comm(MPI_COMM_SELF, &self);
    if (rc == 0) {
        s->comm = MPI_COMM_NULL;
        int mrc = MPI_Comm_spawn(program, o->argv ? (char **)o->argv : MPI_ARGV_NULL, workers, info,
                                 0, self, &s->comm, errcodes);
        if (mrc != MPI_SUCCESS || s->comm == MPI_COMM_NULL)
            rc = CF_EAGAIN;
        MPI_Comm_free(&self);
    }
    /* Workers that did start while others failed wait for a HELLO: refuse them. */
    if (rc && s->comm != MPI_COMM_NULL) {
        int n = 0;
        for (int i = 0; i < workers; i++)
            if (errcodes[i] == MPI_SUCCESS)
                s->ranks[n++] = i;
        s->nworkers = n;
        MPI_Comm_set_errhandler(s->comm, MPI_ERRORS_RETURN);
        client_refuse(s, CF_EAGAIN);
        MPI_Comm_free(&s->comm);
    }
    free(program);
    free(errcodes);
    if (rc) {
        free(s->ranks);
        s->ranks = NULL;
        return rc;
    }
    MPI_Comm_set_errhandler(s->comm, MPI_ERRORS_RETURN);
    s->spawned = true;
    s->nworkers = workers;
    for (int i = 0; i < workers; i++)
        s->ranks[i] = i;
    return 0;
}

int cf_mpi_executor_spawn(cf_executor **out, int workers, MPI_Info info,
                          const cf_mpi_options *options)
{
    static const cf_mpi_options defaults = {0};
    if (!out)
        return CF_EINVAL;
    *out = NULL;
    const cf_mpi_options *o = options ? options : &defaults;
    int rc = check_options(o);
    if (rc == 0)
        rc = mpi_usable();
    if (rc)
        return rc;
    MPI_Comm parent = MPI_COMM_NULL;
    MPI_Comm_get_parent(&parent);
    if (parent != MPI_COMM_NULL) {
        /* We are a worker that a cf_mpi_executor_spawn() started: serve the parent. */
        MPI_Comm_set_errhandler(parent, MPI_ERRORS_RETURN);
        session s = {.comm = parent, .spawned = true, .client = 0};
        return worker_serve(&s);
    }
    if (workers < 1)
        return CF_EINVAL;
    if (!thread_multiple())
        return CF_ENOTSUP;
    session s = {0};
    if ((rc = spawn(&s, workers, info, o)) != 0)
        return rc;
    return client_start(out, &s, o->window);
}
