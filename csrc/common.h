/* Included first by every file in csrc/: Python.h, the forward declaration of
 * the module state, and the hooks each concern gives module.c. */
#ifndef CM_COMMON_H
#define CM_COMMON_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if PY_VERSION_HEX < 0x030A0000
#error "fastapi-cachemate needs Python >= 3.10"
#endif

#if defined(__GNUC__)
#define CM_LIKELY(x) __builtin_expect(!!(x), 1)
#define CM_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define CM_LIKELY(x) (x)
#define CM_UNLIKELY(x) (x)
#endif

typedef struct cm_state cm_state;

/* Every concern (msgpack, compress, blake2b, key, entry, refresh, store) has:
 *   int  cm_<concern>_exec(PyObject *module, cm_state *st);   functions,
 * types, constants int  cm_<concern>_traverse(cm_state *st, visitproc visit,
 * void *arg); void cm_<concern>_clear(cm_state *st); module.c calls them in
 * order; each touches only its own part of cm_state. */
#define CM_DECLARE_CONCERN(name)                                        \
    int cm_##name##_exec(PyObject *module, cm_state *st);               \
    int cm_##name##_traverse(cm_state *st, visitproc visit, void *arg); \
    void cm_##name##_clear(cm_state *st)

#endif
