/** @file
 * cfutures: error codes.
 *
 * Every fallible cfutures call returns an int: 0 on success, a negative CF_E* code on failure.
 * Codes that have an errno equivalent use the negated Linux errno value (as libuv does), so a
 * task may return -errno and a user may compare against CF_E* without translation. Codes that
 * are specific to cfutures live in the -4000 range, far from any errno.
 */
#ifndef CFUTURES_ERROR_H
#define CFUTURES_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

/** The single list of codes: XX(name, value, message). */
#define CF_ERRNO_MAP(XX)                                                                           \
    XX(EPERM, -1, "operation not permitted")                                                       \
    XX(EBADF, -9, "bad file descriptor")                                                           \
    XX(EAGAIN, -11, "resource temporarily unavailable")                                            \
    XX(ENOMEM, -12, "out of memory")                                                               \
    XX(EINVAL, -22, "invalid argument")                                                            \
    XX(EMFILE, -24, "too many open files")                                                         \
    XX(EPIPE, -32, "broken pipe")                                                                  \
    XX(EDEADLK, -35, "operation would deadlock")                                                   \
    XX(ENOSYS, -38, "function not implemented")                                                    \
    XX(ENOTSOCK, -88, "not a socket")                                                              \
    XX(ENOTSUP, -95, "operation not supported by this object")                                     \
    XX(EADDRINUSE, -98, "address already in use")                                                  \
    XX(EADDRNOTAVAIL, -99, "address not available")                                                \
    XX(ENETUNREACH, -101, "network is unreachable")                                                \
    XX(ECONNABORTED, -103, "connection aborted")                                                   \
    XX(ECONNRESET, -104, "connection reset by peer")                                               \
    XX(ENOTCONN, -107, "socket is not connected")                                                  \
    XX(ETIMEDOUT, -110, "timed out")                                                               \
    XX(ECONNREFUSED, -111, "connection refused")                                                   \
    XX(EHOSTUNREACH, -113, "host is unreachable")                                                  \
    XX(ECANCELLED, -125, "operation was cancelled")                                                \
    XX(ETASK, -4001, "the task failed (see cf_future_exception)")                                  \
    XX(EBROKEN, -4002, "executor is broken")                                                       \
    XX(ESHUTDOWN, -4003, "executor has been shut down")                                            \
    XX(EINVALSTATE, -4004, "invalid state for this operation")                                     \
    XX(EFULL, -4005, "queue is full")                                                              \
    XX(EOF, -4006, "end of iteration")                                                             \
    XX(EFORKED, -4007, "object was inherited across fork() and cannot be used in this process")    \
    XX(ECLOSED, -4008, "object is closed")                                                         \
    XX(ESYSTEM, -4009, "system call failed")

/** The codes as enum constants: CF_EINVAL, CF_ETIMEDOUT, ... */
typedef enum cf_errno {
#define CF__ERR_ENUM(name, value, msg) CF_##name = (value),
    CF_ERRNO_MAP(CF__ERR_ENUM)
#undef CF__ERR_ENUM
} cf_errno;

/** Returns a static, human-readable message for `code`.
 * Unknown codes give "unknown error". Never returns NULL. Thread-safe. */
const char *cf_strerror(int code);

/** Returns the static symbolic name of `code`, for example "CF_ETIMEDOUT".
 * 0 gives "CF_OK"; unknown codes give "CF_EUNKNOWN". Never returns NULL. Thread-safe. */
const char *cf_err_name(int code);

#ifdef __cplusplus
}
#endif
#endif
