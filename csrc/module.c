/* fastapi_cachemate._native: wires the concerns together. Multi-phase init,
 * module state, heap types only, so the module can be imported again and in
 * subinterpreters. Each concern lives in its own file (see common.h). */
#include "state.h"

#include <zstd.h>

#define CM_NATIVE_VERSION "0.2.0"

typedef struct {
    int (*exec)(PyObject *, cm_state *);
    int (*traverse)(cm_state *, visitproc, void *);
    void (*clear)(cm_state *);
} cm_concern;

#define CONCERN(name)                                             \
    {                                                             \
        cm_##name##_exec, cm_##name##_traverse, cm_##name##_clear \
    }

static const cm_concern concerns[] = {
    CONCERN(blake2b), CONCERN(compress), CONCERN(msgpack), CONCERN(key),
    CONCERN(entry),   CONCERN(refresh),  CONCERN(store),   CONCERN(stats),
};

#define N_CONCERNS (sizeof concerns / sizeof concerns[0])

static int
native_exec(PyObject *module)
{
    cm_state *st = cm_get_state(module);
    st->MalformedError = PyErr_NewExceptionWithDoc(
        "fastapi_cachemate._native.MalformedError",
        "Raised by the decoders on bytes that are not a valid encoding.",
        PyExc_ValueError, NULL);
    if (st->MalformedError == NULL) {
        return -1;
    }
    if (PyModule_AddObjectRef(module, "MalformedError", st->MalformedError) <
        0) {
        return -1;
    }
    if (PyModule_AddStringConstant(module, "__version__", CM_NATIVE_VERSION) <
        0) {
        return -1;
    }
    if (PyModule_AddStringConstant(module, "ZSTD_VERSION",
                                   ZSTD_versionString()) < 0) {
        return -1;
    }
    for (size_t i = 0; i < N_CONCERNS; i++) {
        if (concerns[i].exec(module, st) < 0) {
            return -1;
        }
    }
    return 0;
}

static int
native_traverse(PyObject *module, visitproc visit, void *arg)
{
    cm_state *st = cm_get_state(module);
    Py_VISIT(st->MalformedError);
    for (size_t i = 0; i < N_CONCERNS; i++) {
        int rc = concerns[i].traverse(st, visit, arg);
        if (rc) {
            return rc;
        }
    }
    return 0;
}

static int
native_clear(PyObject *module)
{
    cm_state *st = cm_get_state(module);
    Py_CLEAR(st->MalformedError);
    for (size_t i = 0; i < N_CONCERNS; i++) {
        concerns[i].clear(st);
    }
    return 0;
}

static void
native_free(void *module)
{
    native_clear((PyObject *)module);
}

static PyModuleDef_Slot native_slots[] = {
    {Py_mod_exec, native_exec},
#if PY_VERSION_HEX >= 0x030C0000
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
#if PY_VERSION_HEX >= 0x030D0000
    {Py_mod_gil, Py_MOD_GIL_USED},
#endif
    {0, NULL},
};

PyModuleDef cm_module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "fastapi_cachemate._native",
    .m_doc =
        "The C core of fastapi-cachemate: keys, MessagePack, zstd, entries, "
        "store.",
    .m_size = sizeof(cm_state),
    .m_slots = native_slots,
    .m_traverse = native_traverse,
    .m_clear = native_clear,
    .m_free = native_free,
};

PyMODINIT_FUNC
PyInit__native(void)
{
    return PyModuleDef_Init(&cm_module_def);
}
