/* The module state: one struct per concern, each defined in that concern's
 * header and touched only by that concern's file. No mutable globals. */
#ifndef CM_STATE_H
#define CM_STATE_H

#include "common.h"
#include "blake2b.h"
#include "compress.h"
#include "entry.h"
#include "key.h"
#include "msgpack.h"
#include "refresh.h"
#include "stats.h"
#include "store.h"

struct cm_state {
    PyObject *MalformedError; /* ValueError subclass raised by every decoder */
    cm_msgpack_state msgpack;
    cm_compress_state compress;
    cm_key_state key;
    cm_entry_state entry;
    cm_store_state store;
    cm_stats_state stats;
};

extern PyModuleDef cm_module_def;

#if PY_VERSION_HEX < 0x030B0000
/* public from 3.11; the same function, underscored, in 3.10 */
#define PyType_GetModuleByDef _PyType_GetModuleByDef
#endif

static inline cm_state *
cm_get_state(PyObject *module)
{
    return (cm_state *)PyModule_GetState(module);
}

/* The state from a heap type defined by this module (for methods of its
 * types). */
static inline cm_state *
cm_state_from_type(PyTypeObject *tp)
{
    PyObject *module = PyType_GetModuleByDef(tp, &cm_module_def);
    return module == NULL ? NULL : cm_get_state(module);
}

#endif
