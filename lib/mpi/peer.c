/* Who a process is, and whether it still runs. MPI gives a client no way to learn that a worker
 * rank died on a shared-memory transport: its sends still succeed and its receives never
 * complete. So every side tells the other its pid, machine and pid namespace in the handshake,
 * and a side that finds its peer on the same machine, in the same pid namespace, holds a pidfd
 * on it: the pidfd becomes readable when the process exits, whatever killed it. A pidfd taken
 * while the process runs names that process for good (no pid reuse race). */
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "mpi_internal.h"

static void read_boot_id(char *out, size_t cap)
{
    FILE *fp = fopen("/proc/sys/kernel/random/boot_id", "re");
    out[0] = '\0';
    if (!fp)
        return;
    if (!fgets(out, (int)cap, fp))
        out[0] = '\0';
    fclose(fp);
    out[strcspn(out, "\n")] = '\0';
}

void peer_self(peer_info *out)
{
    memset(out, 0, sizeof(*out));
    out->pid = (int32_t)getpid();
    struct stat st;
    if (stat("/proc/self/ns/pid", &st) == 0)
        out->pid_ns = (uint64_t)st.st_ino;
    read_boot_id(out->boot_id, sizeof(out->boot_id));
    if (gethostname(out->host, sizeof(out->host) - 1) != 0)
        out->host[0] = '\0';
}

int peer_watch(const peer_info *p)
{
    peer_info me;
    peer_self(&me);
    if (p->pid <= 0 || !me.boot_id[0] || strncmp(me.boot_id, p->boot_id, sizeof(me.boot_id)) != 0 ||
        me.pid_ns == 0 || me.pid_ns != p->pid_ns || p->pid == me.pid)
        return -1;
#ifdef SYS_pidfd_open
    int fd = (int)syscall(SYS_pidfd_open, (pid_t)p->pid, 0);
    if (fd >= 0)
        fcntl(fd, F_SETFD, FD_CLOEXEC);
    return fd;
#else
    return -1;
#endif
}

bool peer_gone(int pidfd)
{
    if (pidfd < 0)
        return false;
    struct pollfd p = {.fd = pidfd, .events = POLLIN};
    return poll(&p, 1, 0) == 1;
}
