/* MessagePack encoder (the format: the comment at the top of msgpack.c).
 *
 * Exact builtin types go first, by pointer comparison of their type; the
 * slow path handles subclasses, datetime types, Enum, UUID, Decimal,
 * Pydantic models and dataclasses. Writes go through the cm_mp_* writers of
 * buffer.h (one reserve per item) into a cm_buf. */
#include "state.h"

#include <datetime.h>

/* datetime.h defines a static PyDateTimeAPI; the API pointer lives in the
 * module state instead, so this file never touches it. */
static inline PyDateTime_CAPI *
unused_global_api(void)
{
    return PyDateTimeAPI;
}

typedef struct {
    cm_state *st;
    cm_msgpack_state *ms;
    cm_buf *b;
    int depth;
} packer;

static int pack_obj(packer *pk, PyObject *o);

/* ---- scalars ---- */

static inline int
pack_unicode(packer *pk, PyObject *o)
{
    if (CM_LIKELY(PyUnicode_IS_COMPACT_ASCII(o))) {
        return cm_mp_str(pk->b, (const char *)PyUnicode_DATA(o),
                         PyUnicode_GET_LENGTH(o));
    }
    Py_ssize_t len;
    const char *s = PyUnicode_AsUTF8AndSize(o, &len);
    if (s == NULL) {
        return -1;
    }
    return cm_mp_str(pk->b, s, len);
}

static int
int_overflow(void)
{
    PyErr_SetString(PyExc_OverflowError,
                    "int out of range for MessagePack: it must be within "
                    "-2**63 .. 2**64-1");
    return -1;
}

static inline int
pack_long(packer *pk, PyObject *o)
{
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (CM_LIKELY(overflow == 0)) {
        if (v == -1 && PyErr_Occurred()) {
            return -1;
        }
        return cm_mp_int(pk->b, (int64_t)v);
    }
    if (overflow < 0) {
        return int_overflow();
    }
    unsigned long long u = PyLong_AsUnsignedLongLong(o);
    if (u == (unsigned long long)-1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) {
            return -1;
        }
        PyErr_Clear();
        return int_overflow();
    }
    return cm_mp_uint(pk->b, (uint64_t)u);
}

/* ---- containers ---- */

static inline int
enter(packer *pk)
{
    if (CM_UNLIKELY(++pk->depth > CM_MP_MAX_DEPTH)) {
        pk->depth--;
        PyErr_Format(PyExc_ValueError,
                     "packb: containers nested deeper than %d levels",
                     CM_MP_MAX_DEPTH);
        return -1;
    }
    if (Py_EnterRecursiveCall(" while packing MessagePack")) {
        pk->depth--;
        return -1;
    }
    return 0;
}

static inline void
leave(packer *pk)
{
    pk->depth--;
    Py_LeaveRecursiveCall();
}

/* A scalar of an exact builtin type packs without running Python code, so
 * a borrowed reference to it is safe. */
static inline int
is_plain_scalar(PyObject *o)
{
    PyTypeObject *t = Py_TYPE(o);
    return t == &PyUnicode_Type || t == &PyLong_Type || t == &PyFloat_Type ||
           o == Py_None || t == &PyBool_Type;
}

/* Pack a borrowed item of a mutable container. */
static inline int
pack_item(packer *pk, PyObject *o)
{
    if (is_plain_scalar(o)) {
        return pack_obj(pk, o);
    }
    Py_INCREF(o);
    int rc = pack_obj(pk, o);
    Py_DECREF(o);
    return rc;
}

static int
pack_list(packer *pk, PyObject *o)
{
    Py_ssize_t n = PyList_GET_SIZE(o);
    if (cm_mp_container(pk->b, 0x90, 0xdc, n, "list") < 0 || enter(pk) < 0) {
        return -1;
    }
    int rc = -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (PyList_GET_SIZE(o) != n) {
            goto changed;
        }
        if (pack_item(pk, PyList_GET_ITEM(o, i)) < 0) {
            goto done;
        }
    }
    if (PyList_GET_SIZE(o) != n) {
        goto changed;
    }
    rc = 0;
    goto done;
changed:
    PyErr_SetString(PyExc_RuntimeError, "list changed size during packb");
done:
    leave(pk);
    return rc;
}

static int
pack_tuple(packer *pk, PyObject *o)
{
    Py_ssize_t n = PyTuple_GET_SIZE(o);
    if (cm_mp_container(pk->b, 0x90, 0xdc, n, "tuple") < 0 || enter(pk) < 0) {
        return -1;
    }
    int rc = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        /* a tuple holds its items for as long as we hold the tuple */
        if (pack_obj(pk, PyTuple_GET_ITEM(o, i)) < 0) {
            rc = -1;
            break;
        }
    }
    leave(pk);
    return rc;
}

static int
pack_dict(packer *pk, PyObject *o)
{
    Py_ssize_t n = PyDict_GET_SIZE(o);
    if (cm_mp_container(pk->b, 0x80, 0xde, n, "dict") < 0 || enter(pk) < 0) {
        return -1;
    }
    int rc = -1;
    Py_ssize_t pos = 0, count = 0;
    PyObject *k = NULL, *v = NULL;
    while (PyDict_Next(o, &pos, &k, &v)) {
        if (++count > n) {
            goto changed;
        }
        if (CM_LIKELY(Py_IS_TYPE(k, &PyUnicode_Type))) {
            /* an exact str packs without running Python code: v is still
             * the dict's when its turn comes */
            if (pack_unicode(pk, k) < 0 || pack_item(pk, v) < 0) {
                goto done;
            }
            continue;
        }
        /* Packing any other key may run Python code (a tzinfo's utcoffset,
         * an Enum's value, model_dump) that replaces or deletes d[k]: the
         * dict's references to k and v may go, ours stay. */
        Py_INCREF(k);
        Py_INCREF(v);
        int r = pack_obj(pk, k);
        if (r == 0) {
            r = pack_obj(pk, v);
        }
        Py_DECREF(k);
        Py_DECREF(v);
        if (r < 0) {
            goto done;
        }
    }
    if (count != n) {
        goto changed;
    }
    rc = 0;
    goto done;
changed:
    PyErr_SetString(PyExc_RuntimeError, "dict changed size during packb");
done:
    leave(pk);
    return rc;
}

/* A dict subclass: in the order of its items(), as msgpack-python. The
 * pairs are copied into a tuple first: items() may return a list that its
 * owner keeps and changes while the pairs are packed. */
static int
pack_mapping_items(packer *pk, PyObject *o)
{
    PyObject *list = PyMapping_Items(o);
    if (list == NULL) {
        return -1;
    }
    PyObject *items = PySequence_Tuple(list);
    Py_DECREF(list);
    if (items == NULL) {
        return -1;
    }
    int rc = -1;
    Py_ssize_t n = PyTuple_GET_SIZE(items);
    if (cm_mp_container(pk->b, 0x80, 0xde, n, "dict") < 0) {
        goto done;
    }
    if (enter(pk) < 0) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        /* a tuple holds its items, and a pair its key and value */
        PyObject *kv = PyTuple_GET_ITEM(items, i);
        if (!PyTuple_Check(kv) || PyTuple_GET_SIZE(kv) != 2) {
            PyErr_SetString(PyExc_TypeError,
                            "items() must return (key, value) pairs");
            leave(pk);
            goto done;
        }
        if (pack_obj(pk, PyTuple_GET_ITEM(kv, 0)) < 0 ||
            pack_obj(pk, PyTuple_GET_ITEM(kv, 1)) < 0) {
            leave(pk);
            goto done;
        }
    }
    leave(pk);
    rc = 0;
done:
    Py_DECREF(items);
    return rc;
}

/* ---- datetime types ---- */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
static int64_t
days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

/* The fields of a date, datetime or time. With the datetime C API (the C
 * implementation of the datetime module) they are read from the object's
 * struct; without it (the pure-Python datetime that an isolated
 * subinterpreter of Python 3.12 gets) from its attributes. */
enum { DT_DATE = 1, DT_TIME = 2 };

typedef struct {
    int v[7];         /* year, month, day, hour, minute, second, microsecond */
    PyObject *tzinfo; /* new reference, or NULL for a date */
} dt_parts;

static int
get_parts(packer *pk, PyObject *o, int what, dt_parts *d)
{
    static const char *const names[7] = {
        "year", "month", "day", "hour", "minute", "second", "microsecond"};
    memset(d, 0, sizeof *d);
    if (pk->ms->dt_capi != NULL) {
        if (what & DT_DATE) {
            d->v[0] = PyDateTime_GET_YEAR(o);
            d->v[1] = PyDateTime_GET_MONTH(o);
            d->v[2] = PyDateTime_GET_DAY(o);
        }
        if (what == (DT_DATE | DT_TIME)) {
            d->v[3] = PyDateTime_DATE_GET_HOUR(o);
            d->v[4] = PyDateTime_DATE_GET_MINUTE(o);
            d->v[5] = PyDateTime_DATE_GET_SECOND(o);
            d->v[6] = PyDateTime_DATE_GET_MICROSECOND(o);
            d->tzinfo = Py_NewRef(PyDateTime_DATE_GET_TZINFO(o));
        }
        else if (what == DT_TIME) {
            d->v[3] = PyDateTime_TIME_GET_HOUR(o);
            d->v[4] = PyDateTime_TIME_GET_MINUTE(o);
            d->v[5] = PyDateTime_TIME_GET_SECOND(o);
            d->v[6] = PyDateTime_TIME_GET_MICROSECOND(o);
            d->tzinfo = Py_NewRef(PyDateTime_TIME_GET_TZINFO(o));
        }
        return 0;
    }
    for (int i = 0; i < 7; i++) {
        if (!(what & (i < 3 ? DT_DATE : DT_TIME))) {
            continue;
        }
        PyObject *attr = PyObject_GetAttrString(o, names[i]);
        if (attr == NULL) {
            goto error;
        }
        long v = PyLong_AsLong(attr);
        Py_DECREF(attr);
        if (v == -1 && PyErr_Occurred()) {
            goto error;
        }
        if (v < 0 || v > 999999) {
            PyErr_Format(PyExc_ValueError, "%s out of range", names[i]);
            goto error;
        }
        d->v[i] = (int)v;
    }
    if (what & DT_TIME) {
        d->tzinfo = PyObject_GetAttrString(o, "tzinfo");
        if (d->tzinfo == NULL) {
            goto error;
        }
    }
    return 0;
error:
    Py_CLEAR(d->tzinfo);
    return -1;
}

/* utcoffset() of a datetime or time as whole microseconds; *is_none set
 * when it returns None. */
static int
utcoffset_us(packer *pk, PyObject *o, int64_t *out, int *is_none)
{
    cm_msgpack_state *ms = pk->ms;
    PyObject *off = PyObject_CallMethodNoArgs(o, ms->str_utcoffset);
    if (off == NULL) {
        return -1;
    }
    *is_none = off == Py_None;
    int rc = 0;
    if (*is_none) {
        /* nothing to read */
    }
    else if (!PyObject_TypeCheck(off, (PyTypeObject *)ms->dt_timedelta)) {
        PyErr_SetString(PyExc_TypeError,
                        "utcoffset() must return a timedelta or None");
        rc = -1;
    }
    else if (ms->dt_capi != NULL) {
        *out = ((int64_t)PyDateTime_DELTA_GET_DAYS(off) * 86400 +
                PyDateTime_DELTA_GET_SECONDS(off)) *
                   1000000 +
               PyDateTime_DELTA_GET_MICROSECONDS(off);
    }
    else {
        static const char *const names[3] = {"days", "seconds",
                                             "microseconds"};
        long long v[3] = {0, 0, 0};
        for (int i = 0; i < 3 && rc == 0; i++) {
            PyObject *attr = PyObject_GetAttrString(off, names[i]);
            if (attr == NULL) {
                rc = -1;
                break;
            }
            v[i] = PyLong_AsLongLong(attr);
            Py_DECREF(attr);
            if (v[i] == -1 && PyErr_Occurred()) {
                rc = -1;
            }
        }
        /* a timedelta: |days| <= 999999999, 0 <= seconds < 86400 */
        if (rc == 0 && (v[0] < -999999999 || v[0] > 999999999)) {
            PyErr_SetString(PyExc_ValueError, "utcoffset() out of range");
            rc = -1;
        }
        *out = (v[0] * 86400 + v[1]) * 1000000 + v[2];
    }
    Py_DECREF(off);
    return rc;
}

static int
pack_aware_datetime(packer *pk, PyObject *o, const dt_parts *d)
{
    int64_t off = 0;
    int is_none = 0;
    if (utcoffset_us(pk, o, &off, &is_none) < 0) {
        return -1;
    }
    if (is_none) {
        PyErr_SetString(PyExc_TypeError,
                        "cannot pack a datetime whose tzinfo.utcoffset() "
                        "returns None");
        return -1;
    }
    int64_t days =
        days_from_civil(d->v[0], (unsigned)d->v[1], (unsigned)d->v[2]);
    int64_t secs =
        days * 86400 + d->v[3] * 3600 + d->v[4] * 60 + (int64_t)d->v[5];
    int64_t us = secs * 1000000 + d->v[6] - off;
    int64_t s = us / 1000000;
    int64_t rem = us % 1000000;
    if (rem < 0) {
        rem += 1000000;
        s -= 1;
    }
    uint32_t ns = (uint32_t)(rem * 1000);
    char buf[12];
    if (s >= 0 && s < ((int64_t)1 << 34)) {
        uint64_t d64 = ((uint64_t)ns << 34) | (uint64_t)s;
        if ((d64 & 0xFFFFFFFF00000000ULL) == 0) {
            cm_store_be32(buf, (uint32_t)d64);
            return cm_mp_ext(pk->b, CM_MP_EXT_TIMESTAMP, buf, 4);
        }
        cm_store_be64(buf, d64);
        return cm_mp_ext(pk->b, CM_MP_EXT_TIMESTAMP, buf, 8);
    }
    cm_store_be32(buf, ns);
    cm_store_be64(buf + 4, (uint64_t)s);
    return cm_mp_ext(pk->b, CM_MP_EXT_TIMESTAMP, buf, 12);
}

static int
pack_datetime(packer *pk, PyObject *o)
{
    dt_parts d;
    if (get_parts(pk, o, DT_DATE | DT_TIME, &d) < 0) {
        return -1;
    }
    int rc;
    if (d.tzinfo != Py_None) {
        rc = pack_aware_datetime(pk, o, &d);
    }
    else {
        char buf[10];
        cm_store_be16(buf, (uint16_t)d.v[0]);
        for (int i = 1; i < 6; i++) {
            buf[i + 1] = (char)d.v[i];
        }
        cm_store_be24(buf + 7, (uint32_t)d.v[6]);
        rc = cm_mp_ext(pk->b, CM_MP_EXT_DATETIME, buf, 10);
    }
    Py_DECREF(d.tzinfo);
    return rc;
}

static int
pack_date(packer *pk, PyObject *o)
{
    dt_parts d;
    if (get_parts(pk, o, DT_DATE, &d) < 0) {
        return -1;
    }
    char buf[4];
    cm_store_be16(buf, (uint16_t)d.v[0]);
    buf[2] = (char)d.v[1];
    buf[3] = (char)d.v[2];
    return cm_mp_ext(pk->b, CM_MP_EXT_DATE, buf, 4);
}

static int
pack_time(packer *pk, PyObject *o)
{
    dt_parts d;
    if (get_parts(pk, o, DT_TIME, &d) < 0) {
        return -1;
    }
    char buf[10];
    buf[0] = (char)d.v[3];
    buf[1] = (char)d.v[4];
    buf[2] = (char)d.v[5];
    cm_store_be24(buf + 3, (uint32_t)d.v[6]);
    int naive = d.tzinfo == Py_None;
    Py_DECREF(d.tzinfo);
    if (naive) {
        return cm_mp_ext(pk->b, CM_MP_EXT_TIME, buf, 6);
    }
    int64_t off = 0;
    int is_none = 0;
    if (utcoffset_us(pk, o, &off, &is_none) < 0) {
        return -1;
    }
    if (is_none) {
        return cm_mp_ext(pk->b, CM_MP_EXT_TIME, buf, 6);
    }
    if (off % 1000000 != 0) {
        PyErr_SetString(PyExc_ValueError,
                        "cannot pack a time whose UTC offset has "
                        "microseconds");
        return -1;
    }
    cm_store_be32(buf + 6, (uint32_t)(int32_t)(off / 1000000));
    return cm_mp_ext(pk->b, CM_MP_EXT_TIME, buf, 10);
}

/* ---- the other supported types ---- */

static int
pack_buffer(packer *pk, PyObject *o)
{
    Py_buffer view;
    if (PyObject_GetBuffer(o, &view, PyBUF_SIMPLE) < 0) {
        return -1;
    }
    int rc = cm_mp_bin(pk->b, (const char *)view.buf, view.len);
    PyBuffer_Release(&view);
    return rc;
}

static int
pack_converted(packer *pk, PyObject *converted)
{
    if (converted == NULL) {
        return -1;
    }
    int rc = -1;
    if (Py_EnterRecursiveCall(" while packing MessagePack") == 0) {
        rc = pack_obj(pk, converted);
        Py_LeaveRecursiveCall();
    }
    Py_DECREF(converted);
    return rc;
}

static int
pack_uuid(packer *pk, PyObject *o)
{
    PyObject *raw = PyObject_GetAttr(o, pk->ms->str_bytes);
    if (raw == NULL) {
        return -1;
    }
    int rc = -1;
    if (!PyBytes_Check(raw) || PyBytes_GET_SIZE(raw) != 16) {
        PyErr_SetString(PyExc_TypeError, "UUID.bytes must be 16 bytes");
    }
    else {
        rc = cm_mp_ext(pk->b, CM_MP_EXT_UUID, PyBytes_AS_STRING(raw), 16);
    }
    Py_DECREF(raw);
    return rc;
}

static int
pack_decimal(packer *pk, PyObject *o)
{
    PyObject *s = PyObject_Str(o);
    if (s == NULL) {
        return -1;
    }
    int rc = -1;
    Py_ssize_t len;
    const char *data = PyUnicode_AsUTF8AndSize(s, &len);
    if (data != NULL) {
        rc = cm_mp_ext(pk->b, CM_MP_EXT_DECIMAL, data, len);
    }
    Py_DECREF(s);
    return rc;
}

static int
pack_dataclass(packer *pk, PyObject *o)
{
    cm_msgpack_state *ms = pk->ms;
    PyObject *fields = NULL;
    PyObject *seq = NULL;
    int rc = -1, entered = 0;
    if (ms->dc_fields == NULL) {
        PyObject *mod = PyImport_ImportModule("dataclasses");
        if (mod == NULL) {
            return -1;
        }
        ms->dc_fields = PyObject_GetAttrString(mod, "fields");
        Py_DECREF(mod);
        if (ms->dc_fields == NULL) {
            return -1;
        }
    }
    fields = PyObject_CallOneArg(ms->dc_fields, o);
    if (fields == NULL) {
        goto done;
    }
    /* a tuple of our own: it holds the fields while their values are read
     * (getattr may run Python code) */
    seq = PySequence_Tuple(fields);
    if (seq == NULL) {
        goto done;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(seq);
    if (cm_mp_container(pk->b, 0x80, 0xde, n, "dataclass") < 0 ||
        enter(pk) < 0) {
        goto done;
    }
    entered = 1;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *name =
            PyObject_GetAttr(PyTuple_GET_ITEM(seq, i), ms->str_name);
        if (name == NULL) {
            goto done;
        }
        PyObject *value = PyObject_GetAttr(o, name);
        if (value == NULL) {
            Py_DECREF(name);
            goto done;
        }
        int r = pack_obj(pk, name);
        if (r == 0) {
            r = pack_obj(pk, value);
        }
        Py_DECREF(name);
        Py_DECREF(value);
        if (r < 0) {
            goto done;
        }
    }
    rc = 0;
done:
    if (entered) {
        leave(pk);
    }
    Py_XDECREF(seq);
    Py_XDECREF(fields);
    return rc;
}

static int
is_instance(PyObject *o, PyObject *cls)
{
    return cls != NULL && PyObject_TypeCheck(o, (PyTypeObject *)cls);
}

static int
pack_slow(packer *pk, PyObject *o)
{
    cm_msgpack_state *ms = pk->ms;

    if (PyBool_Check(o)) {
        return cm_buf_put_byte(pk->b, o == Py_True ? 0xc3 : 0xc2);
    }
    if (PyLong_Check(o)) {
        return pack_long(pk, o);
    }
    if (PyFloat_Check(o)) {
        return cm_mp_float64(pk->b, PyFloat_AS_DOUBLE(o));
    }
    if (PyUnicode_Check(o)) {
        return pack_unicode(pk, o);
    }
    if (PyBytes_Check(o)) {
        return cm_mp_bin(pk->b, PyBytes_AS_STRING(o), PyBytes_GET_SIZE(o));
    }
    if (PyByteArray_Check(o) || PyMemoryView_Check(o)) {
        return pack_buffer(pk, o);
    }
    if (PyList_Check(o)) {
        return pack_list(pk, o);
    }
    if (PyTuple_Check(o)) {
        return pack_tuple(pk, o);
    }
    if (PyDict_Check(o)) {
        return pack_mapping_items(pk, o);
    }
    if (is_instance(o, ms->dt_datetime)) {
        return pack_datetime(pk, o);
    }
    if (is_instance(o, ms->dt_date)) {
        return pack_date(pk, o);
    }
    if (is_instance(o, ms->dt_time)) {
        return pack_time(pk, o);
    }
    if (is_instance(o, ms->Enum)) {
        return pack_converted(pk, PyObject_GetAttr(o, ms->str_value));
    }
    if (cm_mp_resolve_lazy(ms) < 0) {
        return -1;
    }
    if (is_instance(o, ms->UUID)) {
        return pack_uuid(pk, o);
    }
    if (is_instance(o, ms->Decimal)) {
        return pack_decimal(pk, o);
    }
    if (is_instance(o, ms->BaseModel)) {
        return pack_converted(
            pk, PyObject_CallMethodNoArgs(o, ms->str_model_dump));
    }
    if (!PyType_Check(o) &&
        PyObject_HasAttr((PyObject *)Py_TYPE(o), ms->str_dc_fields)) {
        return pack_dataclass(pk, o);
    }
#if PY_VERSION_HEX >= 0x030B0000
    PyObject *name = PyType_GetQualName(Py_TYPE(o));
#else
    PyObject *name =
        PyObject_GetAttrString((PyObject *)Py_TYPE(o), "__qualname__");
#endif
    if (name != NULL) {
        PyErr_Format(PyExc_TypeError,
                     "packb: cannot serialize an object of type '%U'", name);
        Py_DECREF(name);
    }
    return -1;
}

static int
pack_obj(packer *pk, PyObject *o)
{
    PyTypeObject *t = Py_TYPE(o);
    if (t == &PyUnicode_Type) {
        return pack_unicode(pk, o);
    }
    if (t == &PyLong_Type) {
        return pack_long(pk, o);
    }
    if (t == &PyFloat_Type) {
        return cm_mp_float64(pk->b, PyFloat_AS_DOUBLE(o));
    }
    if (t == &PyDict_Type) {
        return pack_dict(pk, o);
    }
    if (t == &PyList_Type) {
        return pack_list(pk, o);
    }
    if (o == Py_None) {
        return cm_buf_put_byte(pk->b, 0xc0);
    }
    if (o == Py_True) {
        return cm_buf_put_byte(pk->b, 0xc3);
    }
    if (o == Py_False) {
        return cm_buf_put_byte(pk->b, 0xc2);
    }
    if (t == &PyTuple_Type) {
        return pack_tuple(pk, o);
    }
    if (t == &PyBytes_Type) {
        return cm_mp_bin(pk->b, PyBytes_AS_STRING(o), PyBytes_GET_SIZE(o));
    }
    return pack_slow(pk, o);
}

int
cm_mp_pack(cm_state *st, cm_buf *b, PyObject *obj)
{
    packer pk = {st, &st->msgpack, b, 0};
    return pack_obj(&pk, obj);
}

PyObject *
cm_msgpack_packb(PyObject *module, PyObject *obj)
{
    cm_state *st = cm_get_state(module);
    cm_msgpack_state *ms = &st->msgpack;
    char stack[CM_MP_PACK_STACK];
    /* Small outputs are made in one allocation of their exact size. A larger
     * one grows into a bytes object that starts at the previous large
     * output's size plus an eighth: an app packs payloads of similar sizes,
     * so most calls never grow it again. */
    cm_buf b;
    cm_buf_init_array(&b, stack, (Py_ssize_t)sizeof stack,
                      ms->pack_hint + ms->pack_hint / 8);
    if (cm_mp_pack(st, &b, obj) < 0) {
        cm_buf_free(&b);
        return NULL;
    }
    if (b.bytes != NULL) {
        ms->pack_hint =
            b.len < CM_MP_PACK_HINT_MAX ? b.len : CM_MP_PACK_HINT_MAX;
    }
    return cm_buf_finish(&b);
}
