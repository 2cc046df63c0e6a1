/** @file
 * cfutures: naming task functions across processes.
 *
 * A function pointer means nothing in another process: every module (the main program and each
 * shared library) is loaded at a different address there. An executor that runs tasks in other
 * processes of the same program (the process pool, the MPI executor, one you write on
 * executor_impl.h) names a function by the module that contains it and its offset from the
 * module's load address, and sends each module's identity along: its GNU build-id (the
 * linker's hash of the module's contents, `readelf -n`), or for a module linked without one, a
 * hash of its code. The receiving side finds the same module in its own image, loading it with
 * dlopen() if needed (as Python imports a module to unpickle a function), checks the identity,
 * and rebuilds the pointer. A different binary on the other side (a rebuilt program on another
 * node, a library replaced on disk) is refused with a clear message instead of jumping into
 * the wrong code.
 *
 * Sender:   cf_fn_table_new(), cf_fn_table_name() per task, cf_fn_table_module() to describe a
 *           module number to the receiver once, cf_fn_table_free().
 * Receiver: cf_module_open() once per module number, cf_module_symbol() per task,
 *           cf_module_close().
 *
 * Trust: the receiver loads whatever module path the sender names. Use it only between
 * processes that trust their sender (a program and its own workers).
 */
#ifndef CFUTURES_FN_NAME_H
#define CFUTURES_FN_NAME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** The longest module identity, in bytes. */
#define CF_MODULE_ID_MAX 64

/** The most modules one table numbers. */
#define CF_FN_TABLE_MAX_MODULES 1024

/** Sender side: numbers the modules of the functions it names, densely from 0. */
typedef struct cf_fn_table cf_fn_table;

/** Creates an empty table in `*out`. Returns 0, CF_EINVAL (NULL out), CF_ENOMEM. */
int cf_fn_table_new(cf_fn_table **out);

/** Frees a table. NULL is ignored. */
void cf_fn_table_free(cf_fn_table *table);

/** Names `fn`: stores the number of the module whose executable code contains it (a new number
 * the first time a module is seen, with its path and identity recorded) and fn's offset in that
 * module. Recently named functions are answered from a cache. Returns 0; CF_EINVAL (NULL
 * arguments; `fn` is not inside any loaded module's code: data, heap, stack, JIT code; a module
 * path longer than 4096 bytes); CF_ENOMEM (out of memory, or CF_FN_TABLE_MAX_MODULES modules
 * already). Not thread-safe: one table per lock. */
int cf_fn_table_name(cf_fn_table *table, const void *fn, uint32_t *module, uint64_t *offset);

/** Describes module number `module` of the table for the receiver: its path as the dynamic
 * loader recorded it ("" for the main program) and its identity (`*id_len` bytes, at most
 * CF_MODULE_ID_MAX). Both are borrowed from the table, valid until it is freed. Any out
 * pointer may be NULL. Returns 0, or CF_EINVAL (NULL table, unknown number). Not thread-safe
 * with respect to cf_fn_table_name() on the same table. */
int cf_fn_table_module(const char **path, const void **id, size_t *id_len, const cf_fn_table *table,
                       uint32_t module);

/** Receiver side: a module found (or loaded) in this process. */
typedef struct cf_module cf_module;

/** Finds the module called `path` in this process ("" for the main program), loading it with
 * dlopen(RTLD_NOW | RTLD_LOCAL) if it is not loaded (it then stays loaded for the life of the
 * process), and checks that its identity is the `id_len` bytes at `id` (pass NULL and 0 to skip
 * the check). Returns 0 and the handle in `*out`; CF_EINVAL when the module cannot be found or
 * loaded, has no code, or is a different build (its identity differs): a message saying which,
 * with both identities in hex, goes to `why` (`why_cap` bytes, may be NULL/0); CF_ENOMEM.
 * Thread-safe. */
int cf_module_open(cf_module **out, const char *path, const void *id, size_t id_len, char *why,
                   size_t why_cap);

/** The function at `offset` in the module, or NULL if the offset is outside its executable code.
 * Thread-safe. */
void *cf_module_symbol(const cf_module *module, uint64_t offset);

/** Frees the handle (the module stays loaded). NULL is ignored. */
void cf_module_close(cf_module *module);

#ifdef __cplusplus
}
#endif
#endif
