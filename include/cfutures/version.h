/* cfutures: version information. */
#ifndef CFUTURES_VERSION_H
#define CFUTURES_VERSION_H

#define CF_VERSION_MAJOR  0
#define CF_VERSION_MINOR  1
#define CF_VERSION_PATCH  0
#define CF_VERSION_STRING "0.1.0"

#ifdef __cplusplus
extern "C" {
#endif

/* Returns the library version as (major << 16) | (minor << 8) | patch. Thread-safe. */
unsigned cf_version(void);

/* Returns the library version as a static string such as "0.1.0". Thread-safe. */
const char *cf_version_string(void);

#ifdef __cplusplus
}
#endif
#endif
