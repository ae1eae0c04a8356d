/* MessagePack for fastapi_cachemate._native: packb / unpackb.
 *
 * The wire format is the msgpack.org specification. For the core types the
 * bytes are exactly those of msgpack-python's
 *     msgpack.packb(obj, use_bin_type=True, datetime=True)
 * (the smallest encoding of every int, length and header):
 *
 *   None                      nil
 *   bool                      false / true
 *   int  -2**63 .. 2**64-1    fixint / int8..int64 / uint8..uint64
 *                             (outside: OverflowError)
 *   float                     float64 (0xcb) always
 *   str                       str (UTF-8); surrogates: UnicodeEncodeError
 *   bytes, bytearray,         bin
 *   memoryview (contiguous)
 *   list, tuple               array           (unpackb returns lists)
 *   dict                      map             (keys any packable object)
 *   Subclasses of these pack like their base class (IntEnum as int,
 *   OrderedDict as a map in items() order, namedtuple as an array).
 *
 * Extension types (ext type code: payload, all integers big-endian):
 *
 *   -1  datetime with tzinfo   the msgpack.org timestamp extension, chosen
 *       exactly as msgpack-python does from the UTC instant (seconds s,
 *       nanoseconds ns):
 *         0 <= s < 2**34 and ns == 0 and s < 2**32: timestamp 32  (4 bytes)
 *         0 <= s < 2**34:                           timestamp 64  (8 bytes,
 *                                                   ns << 34 | s)
 *         otherwise:                                timestamp 96 (12 bytes,
 *                                                   u32 ns, i64 s)
 *       unpackb returns a datetime in UTC (timezone.utc), ns // 1000 as
 *       microseconds.
 *    1  date                   4 bytes: u16 year, u8 month, u8 day
 *    2  time                   6 bytes: u8 hour, u8 minute, u8 second,
 *                              u24 microsecond; an aware time (utcoffset()
 *                              not None) adds i32 UTC offset in seconds
 *                              (10 bytes) and comes back with a fixed
 *                              timezone(timedelta(seconds=offset)).
 *    3  datetime without tzinfo 10 bytes: u16 year, u8 month, u8 day,
 *                              u8 hour, u8 minute, u8 second,
 *                              u24 microsecond
 *    4  uuid.UUID              16 bytes: UUID.bytes
 *    5  decimal.Decimal        str(d) in ASCII (NaN, Infinity, sNaN too)
 *
 *   fold is not kept. Any other ext code, or a payload of the wrong size or
 *   with invalid field values, is a MalformedError.
 *
 * Converted before packing (unpackb gives the converted form back):
 *   enum.Enum member            its .value
 *   pydantic.BaseModel          model_dump() (a map)
 *   dataclass instance          a map of its fields in declaration order
 *                               (dataclasses.fields(), values by getattr)
 *   anything else               TypeError naming the type
 *
 * Limits: containers nest at most CM_MP_MAX_DEPTH (512) deep in both
 * directions (packb: ValueError; unpackb: MalformedError); unpackb refuses
 * inputs over CM_MP_MAX_INPUT (256 MiB), array / map counts larger than the
 * bytes left, truncation, the reserved byte 0xc1, invalid UTF-8, unhashable
 * map keys, unknown ext codes and trailing bytes, all with MalformedError
 * (a ValueError subclass).
 *
 * This file wires the concern into the module; msgpack_pack.c encodes and
 * msgpack_unpack.c decodes.
 */
#include "state.h"

static PyMethodDef msgpack_methods[] = {
    {"packb", (PyCFunction)cm_msgpack_packb, METH_O,
     PyDoc_STR("packb($module, obj, /)\n--\n\n"
               "Encode obj as MessagePack (the same bytes as msgpack-python's "
               "packb(obj, use_bin_type=True, datetime=True) for the core "
               "types).")},
    {"unpackb", (PyCFunction)cm_msgpack_unpackb, METH_O,
     PyDoc_STR("unpackb($module, data, /)\n--\n\n"
               "Decode one MessagePack object from data; MalformedError on "
               "anything invalid.")},
    {NULL, NULL, 0, NULL},
};

static int
intern(PyObject **slot, const char *s)
{
    *slot = PyUnicode_InternFromString(s);
    return *slot == NULL ? -1 : 0;
}

int
cm_msgpack_exec(PyObject *module, cm_state *st)
{
    cm_msgpack_state *ms = &st->msgpack;
    PyObject *enum_mod = NULL;
    int rc = -1;

    ms->datetime_mod = PyImport_ImportModule("datetime");
    if (ms->datetime_mod == NULL) {
        goto done;
    }
    static const struct {
        size_t offset;
        const char *name;
    } dt_classes[] = {
        {offsetof(cm_msgpack_state, dt_datetime), "datetime"},
        {offsetof(cm_msgpack_state, dt_date), "date"},
        {offsetof(cm_msgpack_state, dt_time), "time"},
        {offsetof(cm_msgpack_state, dt_timedelta), "timedelta"},
        {offsetof(cm_msgpack_state, dt_timezone), "timezone"},
    };
    for (size_t i = 0; i < sizeof dt_classes / sizeof dt_classes[0]; i++) {
        PyObject **slot = (PyObject **)((char *)ms + dt_classes[i].offset);
        *slot = PyObject_GetAttrString(ms->datetime_mod, dt_classes[i].name);
        if (*slot == NULL) {
            goto done;
        }
        if (!PyType_Check(*slot)) {
            PyErr_Format(PyExc_TypeError, "datetime.%s is not a class",
                         dt_classes[i].name);
            goto done;
        }
    }
    ms->dt_utc = PyObject_GetAttrString(ms->dt_timezone, "utc");
    if (ms->dt_utc == NULL) {
        goto done;
    }
    /* The C API whenever the datetime module is the C one: always, but in an
     * isolated subinterpreter of Python 3.12, where _datetime cannot load. */
    if (PyObject_HasAttrString(ms->datetime_mod, "datetime_CAPI")) {
        ms->dt_capi = PyCapsule_Import("datetime.datetime_CAPI", 0);
        if (ms->dt_capi == NULL) {
            goto done;
        }
    }
    enum_mod = PyImport_ImportModule("enum");
    if (enum_mod == NULL) {
        goto done;
    }
    ms->Enum = PyObject_GetAttrString(enum_mod, "Enum");
    if (ms->Enum == NULL) {
        goto done;
    }
    if (intern(&ms->str_value, "value") < 0 ||
        intern(&ms->str_utcoffset, "utcoffset") < 0 ||
        intern(&ms->str_model_dump, "model_dump") < 0 ||
        intern(&ms->str_dc_fields, "__dataclass_fields__") < 0 ||
        intern(&ms->str_name, "name") < 0 ||
        intern(&ms->str_bytes, "bytes") < 0 ||
        intern(&ms->str_int, "int") < 0) {
        goto done;
    }
    if (PyModule_AddFunctions(module, msgpack_methods) < 0) {
        goto done;
    }
    rc = 0;
done:
    Py_XDECREF(enum_mod);
    return rc;
}

/* UUID, Decimal and BaseModel are looked up in sys.modules when first
 * needed: while their module is not loaded, no object can be an instance. */
int
cm_mp_resolve_lazy(cm_msgpack_state *ms)
{
    static const struct {
        size_t offset;
        const char *module;
        const char *name;
    } lazy[] = {
        {offsetof(cm_msgpack_state, UUID), "uuid", "UUID"},
        {offsetof(cm_msgpack_state, Decimal), "decimal", "Decimal"},
        {offsetof(cm_msgpack_state, BaseModel), "pydantic", "BaseModel"},
    };
    for (size_t i = 0; i < sizeof lazy / sizeof lazy[0]; i++) {
        PyObject **slot = (PyObject **)((char *)ms + lazy[i].offset);
        PyObject *name = NULL;
        PyObject *mod = NULL;
        if (*slot != NULL) {
            continue;
        }
        name = PyUnicode_FromString(lazy[i].module);
        if (name == NULL) {
            return -1;
        }
        mod = PyImport_GetModule(name);
        Py_DECREF(name);
        if (mod == NULL) {
            if (PyErr_Occurred()) {
                return -1;
            }
            continue; /* not imported: nothing can be an instance */
        }
        *slot = PyObject_GetAttrString(mod, lazy[i].name);
        Py_DECREF(mod);
        if (*slot == NULL) {
            return -1;
        }
    }
    return 0;
}

int
cm_msgpack_traverse(cm_state *st, visitproc visit, void *arg)
{
    cm_msgpack_state *ms = &st->msgpack;
    Py_VISIT(ms->datetime_mod);
    Py_VISIT(ms->dt_datetime);
    Py_VISIT(ms->dt_date);
    Py_VISIT(ms->dt_time);
    Py_VISIT(ms->dt_timedelta);
    Py_VISIT(ms->dt_timezone);
    Py_VISIT(ms->dt_utc);
    Py_VISIT(ms->Enum);
    Py_VISIT(ms->UUID);
    Py_VISIT(ms->Decimal);
    Py_VISIT(ms->BaseModel);
    Py_VISIT(ms->dc_fields);
    return 0;
}

void
cm_msgpack_clear(cm_state *st)
{
    cm_msgpack_state *ms = &st->msgpack;
    ms->dt_capi = NULL;
    Py_CLEAR(ms->datetime_mod);
    Py_CLEAR(ms->dt_datetime);
    Py_CLEAR(ms->dt_date);
    Py_CLEAR(ms->dt_time);
    Py_CLEAR(ms->dt_timedelta);
    Py_CLEAR(ms->dt_timezone);
    Py_CLEAR(ms->dt_utc);
    Py_CLEAR(ms->Enum);
    Py_CLEAR(ms->UUID);
    Py_CLEAR(ms->Decimal);
    Py_CLEAR(ms->BaseModel);
    Py_CLEAR(ms->dc_fields);
    Py_CLEAR(ms->str_value);
    Py_CLEAR(ms->str_utcoffset);
    Py_CLEAR(ms->str_model_dump);
    Py_CLEAR(ms->str_dc_fields);
    Py_CLEAR(ms->str_name);
    Py_CLEAR(ms->str_bytes);
    Py_CLEAR(ms->str_int);
    for (size_t i = 0; i < CM_MP_KEY_CACHE_SIZE; i++) {
        Py_CLEAR(ms->keys[i]);
    }
}
