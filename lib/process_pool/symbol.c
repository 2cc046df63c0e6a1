/* Function translation for the process pool. A function pointer means nothing in another program
 * image (ASLR places every module elsewhere), so the parent names a function by the module that
 * contains it and its offset from that module's load address, and the worker rebuilds the
 * pointer from its own copy of the module. Modules are matched by the path the dynamic loader
 * recorded ("" for the main program, which is the same file in both images). */
#include <dlfcn.h>
#include <link.h>
#include <stdio.h>
#include <string.h>

#include "core/internal.h"
#include "process_pool/proc.h"

typedef struct locate_ctx {
    uintptr_t addr;
    char *name;
    size_t cap;
    uintptr_t offset;
    bool found;
} locate_ctx;

static bool in_code(const struct dl_phdr_info *info, uintptr_t addr)
{
    for (size_t i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X))
            continue;
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        if (addr >= lo && addr - lo < ph->p_memsz)
            return true;
    }
    return false;
}

static int locate_cb(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    locate_ctx *c = data;
    if (!in_code(info, c->addr))
        return 0;
    const char *name = info->dlpi_name ? info->dlpi_name : "";
    if (strlen(name) >= c->cap)
        return 1; /* found, but the path is too long to send: reported as not found */
    strcpy(c->name, name);
    c->offset = c->addr - info->dlpi_addr;
    c->found = true;
    return 1;
}

int cf__symbol_locate(char *name, size_t cap, uintptr_t *offset, const void *fn)
{
    locate_ctx c = {.addr = (uintptr_t)fn, .name = name, .cap = cap};
    dl_iterate_phdr(locate_cb, &c);
    if (!c.found)
        return CF_EINVAL;
    *offset = c.offset;
    return 0;
}

typedef struct open_ctx {
    const char *name;
    cf__module *m;
} open_ctx;

static int open_cb(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    open_ctx *c = data;
    const char *name = info->dlpi_name ? info->dlpi_name : "";
    if (strcmp(name, c->name) != 0)
        return 0;
    cf__module *m = c->m;
    m->base = info->dlpi_addr;
    m->lo = UINTPTR_MAX;
    m->hi = 0;
    for (size_t i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X))
            continue;
        if (ph->p_vaddr < m->lo)
            m->lo = ph->p_vaddr;
        if (ph->p_vaddr + ph->p_memsz > m->hi)
            m->hi = ph->p_vaddr + ph->p_memsz;
    }
    m->found = m->lo < m->hi;
    return 1;
}

int cf__symbol_open(cf__module *m, const char *name, char *why, size_t why_cap)
{
    *m = (cf__module){0};
    open_ctx c = {.name = name, .m = m};
    dl_iterate_phdr(open_cb, &c);
    if (m->found)
        return 0;
    /* Loaded by the parent at run time: load it here too, as Python imports a module to
     * unpickle a function. The handle is kept for the worker's lifetime. */
    if (name[0] == '\0' || !dlopen(name, RTLD_NOW | RTLD_LOCAL)) {
        const char *err = name[0] ? dlerror() : NULL;
        snprintf(why, why_cap, "the task's module %s is not loaded in the worker%s%s",
                 name[0] ? name : "(main program)", err ? ": " : "", err ? err : "");
        return CF_EINVAL;
    }
    dl_iterate_phdr(open_cb, &c);
    if (!m->found) {
        snprintf(why, why_cap, "the task's module %s has no code in the worker", name);
        return CF_EINVAL;
    }
    return 0;
}

void *cf__symbol_at(const cf__module *m, uint64_t offset)
{
    if (!m->found || offset < m->lo || offset >= m->hi)
        return NULL;
    return (void *)(m->base + (uintptr_t)offset);
}
