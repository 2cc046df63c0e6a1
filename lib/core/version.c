/* Library version. */
#include "core/internal.h"

unsigned cf_version(void)
{
    return (CF_VERSION_MAJOR << 16) | (CF_VERSION_MINOR << 8) | CF_VERSION_PATCH;
}

const char *cf_version_string(void)
{
    return CF_VERSION_STRING;
}
