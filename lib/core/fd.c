/* Descriptors the library creates stay off 0, 1 and 2.
 *
 * A program started with stdin, stdout or stderr closed (a daemon, `prog <&- >&- 2>&-`) has those
 * numbers free, and the kernel hands out the lowest free number: without care, an epoll set, a
 * socket or a received memfd of ours would become the program's stderr, and one stray
 * fprintf(stderr, ...) would write into it. Every descriptor the library creates or receives
 * passes through here. */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "core/internal.h"

int cf__fd_above_stdio(int fd)
{
    if (fd < 0 || fd > STDERR_FILENO)
        return fd;
    int moved = fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
    int err = errno;
    close(fd);
    if (moved < 0)
        errno = err == EINVAL ? EMFILE : err; /* EINVAL: the limit is at most 3 descriptors */
    return moved;
}

int cf__fd_pair_above_stdio(int sv[2])
{
    sv[0] = cf__fd_above_stdio(sv[0]);
    int err = errno;
    sv[1] = cf__fd_above_stdio(sv[1]);
    if (sv[0] >= 0 && sv[1] >= 0)
        return 0;
    if (sv[1] < 0)
        err = errno;
    if (sv[0] >= 0)
        close(sv[0]);
    if (sv[1] >= 0)
        close(sv[1]);
    sv[0] = sv[1] = -1;
    errno = err;
    return -1;
}
