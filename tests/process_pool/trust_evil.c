/* The attacker's module of test_process_trust: if a worker ever loads it, its constructor leaves
 * "<its own path>.loaded" holding the ids it ran with. */
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

__attribute__((constructor)) static void trust_evil_loaded(void)
{
    Dl_info info;
    if (!dladdr((void *)trust_evil_loaded, &info) || !info.dli_fname)
        return;
    char path[4096];
    snprintf(path, sizeof(path), "%s.loaded", info.dli_fname);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    char line[64];
    int n = snprintf(line, sizeof(line), "uid=%d euid=%d\n", (int)getuid(), (int)geteuid());
    ssize_t w = write(fd, line, (size_t)n);
    (void)w;
    close(fd);
}
