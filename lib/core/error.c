/* Error codes to text, and errno values to error codes. */
#include <errno.h>

#include "core/internal.h"

/* The numeric values in error.h are Linux's; make sure the platform agrees. */
_Static_assert(CF_EINVAL == -EINVAL && CF_ENOMEM == -ENOMEM && CF_EAGAIN == -EAGAIN &&
                   CF_ETIMEDOUT == -ETIMEDOUT && CF_ECANCELLED == -ECANCELED &&
                   CF_EMFILE == -EMFILE && CF_EDEADLK == -EDEADLK && CF_ENOSYS == -ENOSYS &&
                   CF_ENOTSUP == -ENOTSUP && CF_EPERM == -EPERM && CF_EBADF == -EBADF &&
                   CF_EPIPE == -EPIPE && CF_ENOTSOCK == -ENOTSOCK && CF_EADDRINUSE == -EADDRINUSE &&
                   CF_EADDRNOTAVAIL == -EADDRNOTAVAIL && CF_ENETUNREACH == -ENETUNREACH &&
                   CF_ECONNABORTED == -ECONNABORTED && CF_ECONNRESET == -ECONNRESET &&
                   CF_ENOTCONN == -ENOTCONN && CF_ECONNREFUSED == -ECONNREFUSED &&
                   CF_EHOSTUNREACH == -EHOSTUNREACH,
               "cfutures error codes must equal the negated errno values");

int cf__errno_code(int err)
{
    switch (err) {
    case ENOMEM:
    case ENOBUFS:
        return CF_ENOMEM;
    case EMFILE:
    case ENFILE:
        return CF_EMFILE;
    case EAGAIN:
        return CF_EAGAIN;
    case EPERM:
    case EACCES:
        return CF_EPERM;
    case ENOSYS:
        return CF_ENOSYS;
    default:
        return CF_ESYSTEM;
    }
}

const char *cf_strerror(int code)
{
    switch (code) {
    case 0:
        return "success";
#define CF__ERR_MSG(name, value, msg)                                                              \
    case CF_##name:                                                                                \
        return msg;
        CF_ERRNO_MAP(CF__ERR_MSG)
#undef CF__ERR_MSG
    default:
        return "unknown error";
    }
}

const char *cf_err_name(int code)
{
    switch (code) {
    case 0:
        return "CF_OK";
#define CF__ERR_NAME(name, value, msg)                                                             \
    case CF_##name:                                                                                \
        return "CF_" #name;
        CF_ERRNO_MAP(CF__ERR_NAME)
#undef CF__ERR_NAME
    default:
        return "CF_EUNKNOWN";
    }
}
