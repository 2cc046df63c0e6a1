/* Library version. */
#include "core/internal.h"

unsigned cf_version(void)
{
    return CF_VERSION_HEX;
}

const char *cf_version_string(void)
{
    return CF_VERSION_STRING;
}
