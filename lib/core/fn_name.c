/* Naming task functions across processes (include/cfutures/fn_name.h): a function is (module
 * path, offset), and each module carries its identity, so that the receiving process rebuilds the
 * pointer in its own copy of the same module or refuses a different build.
 *
 * Modules are matched by the path the dynamic loader recorded ("" for the main program). The
 * identity is the GNU build-id note, read from the loaded image's PT_NOTE segments; a module
 * linked without one is identified by a hash of its executable segments' file contents (code
 * is not relocated in memory for position-independent modules, so both sides hash the same
 * bytes). */
#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <stdio.h>
#include <string.h>

#include "cfutures/fn_name.h"
#include "core/internal.h"

enum {
    PATH_MAX_LEN = 4096, /* longest module path a table records */
    FN_CACHE = 16,       /* recently named functions remembered per table */
    HASH_MARK = 'H',     /* first byte of a code-hash identity, which is 9 bytes long */
};

typedef struct identity {
    unsigned char bytes[CF_MODULE_ID_MAX];
    size_t len;
} identity;

/* ---- reading a loaded module ---- */

static bool is_code(const ElfW(Phdr) * ph)
{
    return ph->p_type == PT_LOAD && (ph->p_flags & PF_X);
}

static bool contains_code(const struct dl_phdr_info *info, uintptr_t addr)
{
    for (size_t i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        if (is_code(ph) && addr >= lo && addr - lo < ph->p_memsz)
            return true;
    }
    return false;
}

static size_t align_up(size_t n, size_t a)
{
    return (n + a - 1) & ~(a - 1);
}

/* Looks for NT_GNU_BUILD_ID in one PT_NOTE segment. */
static bool build_id_in(const struct dl_phdr_info *info, const ElfW(Phdr) * ph, identity *id)
{
    size_t a = ph->p_align == 8 ? 8 : 4;
    const unsigned char *p = (const unsigned char *)(info->dlpi_addr + ph->p_vaddr);
    size_t size = ph->p_memsz, pos = 0;
    while (size - pos >= sizeof(ElfW(Nhdr))) {
        ElfW(Nhdr) nh;
        memcpy(&nh, p + pos, sizeof(nh));
        size_t name_at = pos + sizeof(nh);
        size_t desc_at = name_at + align_up(nh.n_namesz, a);
        size_t next = desc_at + align_up(nh.n_descsz, a);
        if (nh.n_namesz > size || nh.n_descsz > size || next > size || next <= pos)
            return false;
        if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 &&
            memcmp(p + name_at, "GNU", 4) == 0 && nh.n_descsz > 0 &&
            nh.n_descsz <= CF_MODULE_ID_MAX) {
            memcpy(id->bytes, p + desc_at, nh.n_descsz);
            id->len = nh.n_descsz;
            return true;
        }
        pos = next;
    }
    return false;
}

/* FNV-1a over the file-backed bytes of the executable segments. */
static void code_hash(const struct dl_phdr_info *info, identity *id)
{
    uint64_t h = 0xcbf29ce484222325u;
    for (size_t i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (!is_code(ph))
            continue;
        const unsigned char *p = (const unsigned char *)(info->dlpi_addr + ph->p_vaddr);
        for (size_t k = 0; k < ph->p_filesz; k++)
            h = (h ^ p[k]) * 0x100000001b3u;
    }
    id->bytes[0] = HASH_MARK;
    memcpy(id->bytes + 1, &h, sizeof(h));
    id->len = 1 + sizeof(h);
}

static void read_identity(const struct dl_phdr_info *info, identity *id)
{
    for (size_t i = 0; i < info->dlpi_phnum; i++)
        if (info->dlpi_phdr[i].p_type == PT_NOTE && build_id_in(info, &info->dlpi_phdr[i], id))
            return;
    code_hash(info, id);
}

static const char *module_name(const struct dl_phdr_info *info)
{
    return info->dlpi_name ? info->dlpi_name : "";
}

/* ---- sender: the table ---- */

typedef struct table_module {
    char *path;
    identity id;
} table_module;

struct cf_fn_table {
    table_module *modules;
    uint32_t count, cap;
    struct {
        const void *fn;
        uint32_t module;
        uint64_t offset;
    } cache[FN_CACHE];
};

int cf_fn_table_new(cf_fn_table **out)
{
    if (!out)
        return CF_EINVAL;
    *out = cf__calloc(1, sizeof(**out));
    return *out ? 0 : CF_ENOMEM;
}

void cf_fn_table_free(cf_fn_table *t)
{
    if (!t)
        return;
    for (uint32_t i = 0; i < t->count; i++)
        cf__free(t->modules[i].path);
    cf__free(t->modules);
    cf__free(t);
}

typedef struct locate_ctx {
    uintptr_t addr;
    char path[PATH_MAX_LEN + 1];
    uintptr_t offset;
    identity id;
    int rc;
} locate_ctx;

static int locate_cb(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    locate_ctx *c = data;
    if (!contains_code(info, c->addr))
        return 0;
    const char *name = module_name(info);
    if (strlen(name) > PATH_MAX_LEN)
        return 1; /* found, but the path is too long to send: reported as not found */
    strcpy(c->path, name);
    c->offset = c->addr - info->dlpi_addr;
    read_identity(info, &c->id);
    c->rc = 0;
    return 1;
}

static int intern(cf_fn_table *t, const locate_ctx *c, uint32_t *out)
{
    for (uint32_t i = 0; i < t->count; i++) {
        if (strcmp(t->modules[i].path, c->path) == 0) {
            *out = i;
            return 0;
        }
    }
    if (t->count == CF_FN_TABLE_MAX_MODULES)
        return CF_ENOMEM;
    if (t->count == t->cap) {
        uint32_t cap = t->cap ? 2 * t->cap : 4;
        table_module *grown = cf__malloc(cap * sizeof(*grown));
        if (!grown)
            return CF_ENOMEM;
        if (t->count)
            memcpy(grown, t->modules, t->count * sizeof(*grown));
        cf__free(t->modules);
        t->modules = grown;
        t->cap = cap;
    }
    char *path = cf__strdup(c->path);
    if (!path)
        return CF_ENOMEM;
    t->modules[t->count] = (table_module){.path = path, .id = c->id};
    *out = t->count++;
    return 0;
}

int cf_fn_table_name(cf_fn_table *t, const void *fn, uint32_t *module, uint64_t *offset)
{
    if (!t || !fn || !module || !offset)
        return CF_EINVAL;
    size_t h = ((uintptr_t)fn >> 4) % FN_CACHE;
    if (t->cache[h].fn == fn) {
        *module = t->cache[h].module;
        *offset = t->cache[h].offset;
        return 0;
    }
    locate_ctx *c = cf__malloc(sizeof(*c)); /* a path buffer too large for every stack */
    if (!c)
        return CF_ENOMEM;
    c->addr = (uintptr_t)fn;
    c->rc = CF_EINVAL;
    dl_iterate_phdr(locate_cb, c);
    int rc = c->rc ? c->rc : intern(t, c, module);
    if (rc == 0) {
        *offset = c->offset;
        t->cache[h].fn = fn;
        t->cache[h].module = *module;
        t->cache[h].offset = c->offset;
    }
    cf__free(c);
    return rc;
}

int cf_fn_table_module(const char **path, const void **id, size_t *id_len, const cf_fn_table *t,
                       uint32_t module)
{
    if (!t || module >= t->count)
        return CF_EINVAL;
    const table_module *m = &t->modules[module];
    if (path)
        *path = m->path;
    if (id)
        *id = m->id.bytes;
    if (id_len)
        *id_len = m->id.len;
    return 0;
}

/* ---- receiver: modules ---- */

struct cf_module {
    uintptr_t base;
    uintptr_t lo, hi; /* offsets spanned by the executable segments */
    identity id;
};

typedef struct open_ctx {
    const char *path;
    cf_module *m;
    bool found;
} open_ctx;

static int open_cb(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    open_ctx *c = data;
    if (strcmp(module_name(info), c->path) != 0)
        return 0;
    cf_module *m = c->m;
    m->base = info->dlpi_addr;
    m->lo = UINTPTR_MAX;
    m->hi = 0;
    for (size_t i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (!is_code(ph))
            continue;
        if (ph->p_vaddr < m->lo)
            m->lo = ph->p_vaddr;
        if (ph->p_vaddr + ph->p_memsz > m->hi)
            m->hi = ph->p_vaddr + ph->p_memsz;
    }
    c->found = m->lo < m->hi;
    if (c->found)
        read_identity(info, &m->id);
    return 1;
}

static const char *display(const char *path)
{
    return path[0] ? path : "(main program)";
}

static void hex(char *out, const void *bytes, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *b = bytes;
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * len] = '\0';
}

static void explain(char *why, size_t cap, const char *fmt, const char *path, const char *extra)
{
    if (why && cap)
        snprintf(why, cap, fmt, display(path), extra ? extra : "");
}

/* Finds `path` among the loaded modules, loading it first if needed. */
static int find_module(cf_module *m, const char *path, char *why, size_t cap)
{
    open_ctx c = {.path = path, .m = m};
    dl_iterate_phdr(open_cb, &c);
    if (c.found)
        return 0;
    if (path[0] == '\0') {
        explain(why, cap, "the task's module %s has no code here%s", path, NULL);
        return CF_EINVAL;
    }
    /* Loaded by the sender at run time: load it here too. The handle is kept for good. */
    if (!dlopen(path, RTLD_NOW | RTLD_LOCAL)) {
        const char *err = dlerror();
        char detail[600];
        snprintf(detail, sizeof(detail), ": %s", err ? err : "dlopen failed");
        explain(why, cap, "the task's module %s is not loaded here and cannot be loaded%s", path,
                detail);
        return CF_EINVAL;
    }
    dl_iterate_phdr(open_cb, &c);
    if (!c.found) {
        explain(why, cap, "the task's module %s has no code here%s", path, NULL);
        return CF_EINVAL;
    }
    return 0;
}

int cf_module_open(cf_module **out, const char *path, const void *id, size_t id_len, char *why,
                   size_t why_cap)
{
    if (why && why_cap)
        why[0] = '\0';
    if (!out)
        return CF_EINVAL;
    *out = NULL;
    if (!path || (!id && id_len) || id_len > CF_MODULE_ID_MAX)
        return CF_EINVAL;
    cf_module *m = cf__calloc(1, sizeof(*m));
    if (!m)
        return CF_ENOMEM;
    int rc = find_module(m, path, why, why_cap);
    if (rc == 0 && id && (id_len != m->id.len || memcmp(id, m->id.bytes, id_len) != 0)) {
        char here[2 * CF_MODULE_ID_MAX + 1], there[2 * CF_MODULE_ID_MAX + 1], detail[400];
        hex(here, m->id.bytes, m->id.len);
        hex(there, id, id_len);
        snprintf(detail, sizeof(detail), " (identity %s here, %s in the sender)", here, there);
        explain(why, why_cap,
                "the task's module %s is a different build here than in the process that sent "
                "the task%s",
                path, detail);
        rc = CF_EINVAL;
    }
    if (rc) {
        cf__free(m);
        return rc;
    }
    *out = m;
    return 0;
}

void *cf_module_symbol(const cf_module *m, uint64_t offset)
{
    if (!m || offset < m->lo || offset >= m->hi)
        return NULL;
    return (void *)(m->base + (uintptr_t)offset);
}

void cf_module_close(cf_module *m)
{
    cf__free(m);
}
