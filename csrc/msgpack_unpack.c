/* MessagePack decoder (the format: the comment at the top of msgpack.c).
 *
 * The input is hostile. Every read goes through cm_read (buffer.h), which
 * checks the bytes left and advances in one call; a str / bin / ext length
 * must fit in what is left, an array count may
 * not exceed the bytes left and a map count half of them (every element
 * takes at least one byte); containers nest at most CM_MP_MAX_DEPTH deep;
 * trailing bytes are refused. Every failure is a MalformedError with the
 * offset where it was found. Short ASCII map keys come from a small cache
 * of str objects in the module state (their hash is computed once). */
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
    cm_reader r;
    const unsigned char *start;
    cm_state *st;
    cm_msgpack_state *ms;
    int depth;
} unpacker;

static PyObject *unpack_obj(unpacker *u);

static PyObject *
malformed(unpacker *u, const char *what)
{
    PyErr_Format(u->st->MalformedError, "%s at offset %zd", what,
                 (Py_ssize_t)(u->r.p - u->start));
    return NULL;
}

/* A fixed-size field after the type byte is cut off: reported at the type
 * byte (cm_read moved nothing). */
static PyObject *
truncated(unpacker *u)
{
    u->r.p--;
    return malformed(u, "truncated input");
}

/* Replace the current exception by a MalformedError naming what failed,
 * the original chained as its cause. MemoryError passes through. */
static PyObject *
malformed_from(unpacker *u, const char *what)
{
    if (PyErr_ExceptionMatches(PyExc_MemoryError)) {
        return NULL;
    }
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *cause = PyErr_GetRaisedException();
#else
    PyObject *type = NULL, *cause = NULL, *tb = NULL;
    PyErr_Fetch(&type, &cause, &tb);
    PyErr_NormalizeException(&type, &cause, &tb);
    if (cause != NULL && tb != NULL) {
        PyException_SetTraceback(cause, tb);
    }
    Py_XDECREF(type);
    Py_XDECREF(tb);
#endif
    PyErr_Format(u->st->MalformedError, "%s at offset %zd: %S", what,
                 (Py_ssize_t)(u->r.p - u->start), cause ? cause : Py_None);
    if (cause != NULL) {
#if PY_VERSION_HEX >= 0x030C0000
        PyObject *exc = PyErr_GetRaisedException();
        PyException_SetCause(exc, cause); /* steals cause */
        PyErr_SetRaisedException(exc);
#else
        PyObject *t2 = NULL, *exc = NULL, *tb2 = NULL;
        PyErr_Fetch(&t2, &exc, &tb2);
        PyErr_NormalizeException(&t2, &exc, &tb2);
        PyException_SetCause(exc, cause); /* steals cause */
        PyErr_Restore(t2, exc, tb2);
#endif
    }
    return NULL;
}

/* ---- str ---- */

static inline int
is_ascii(const unsigned char *p, Py_ssize_t n)
{
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        if (w & 0x8080808080808080ULL) {
            return 0;
        }
    }
    for (; i < n; i++) {
        if (p[i] & 0x80) {
            return 0;
        }
    }
    return 1;
}

/* Valid UTF-8 s[0:n], not all ASCII, of at most CM_MP_UTF8_SHORT bytes as a
 * str of its exact size and kind: decoded once into code points, then
 * copied. NULL without an exception when the bytes are not valid UTF-8
 * (overlong forms, surrogates, past U+10FFFF, cut sequences): the caller
 * lets PyUnicode_DecodeUTF8 raise its error. */
static PyObject *
decode_short_utf8(const unsigned char *s, Py_ssize_t n)
{
    Py_UCS4 cps[CM_MP_UTF8_SHORT];
    Py_ssize_t count = 0;
    Py_UCS4 maxc = 0;
    for (Py_ssize_t i = 0; i < n; count++) {
        Py_UCS4 c = s[i];
        if (c < 0x80) {
            i += 1;
        }
        else if (c < 0xc2) {
            return NULL; /* a continuation byte, or an overlong lead */
        }
        else if (c < 0xe0) {
            if (n - i < 2 || (s[i + 1] & 0xc0) != 0x80) {
                return NULL;
            }
            c = ((c & 0x1f) << 6) | (s[i + 1] & 0x3f);
            i += 2;
        }
        else if (c < 0xf0) {
            if (n - i < 3 || (s[i + 1] & 0xc0) != 0x80 ||
                (s[i + 2] & 0xc0) != 0x80) {
                return NULL;
            }
            c = ((c & 0x0f) << 12) | ((Py_UCS4)(s[i + 1] & 0x3f) << 6) |
                (s[i + 2] & 0x3f);
            if (c < 0x800 || (c >= 0xd800 && c <= 0xdfff)) {
                return NULL;
            }
            i += 3;
        }
        else if (c < 0xf5) {
            if (n - i < 4 || (s[i + 1] & 0xc0) != 0x80 ||
                (s[i + 2] & 0xc0) != 0x80 || (s[i + 3] & 0xc0) != 0x80) {
                return NULL;
            }
            c = ((c & 0x07) << 18) | ((Py_UCS4)(s[i + 1] & 0x3f) << 12) |
                ((Py_UCS4)(s[i + 2] & 0x3f) << 6) | (s[i + 3] & 0x3f);
            if (c < 0x10000 || c > 0x10ffff) {
                return NULL;
            }
            i += 4;
        }
        else {
            return NULL;
        }
        cps[count] = c;
        if (c > maxc) {
            maxc = c;
        }
    }
    PyObject *o = PyUnicode_New(count, maxc);
    if (o == NULL) {
        return NULL;
    }
    void *data = PyUnicode_DATA(o);
    switch (PyUnicode_KIND(o)) {
    case PyUnicode_1BYTE_KIND:
        for (Py_ssize_t j = 0; j < count; j++) {
            ((Py_UCS1 *)data)[j] = (Py_UCS1)cps[j];
        }
        break;
    case PyUnicode_2BYTE_KIND:
        for (Py_ssize_t j = 0; j < count; j++) {
            ((Py_UCS2 *)data)[j] = (Py_UCS2)cps[j];
        }
        break;
    default: memcpy(data, cps, (size_t)count * sizeof(Py_UCS4)); break;
    }
    return o;
}

static PyObject *
make_str(unpacker *u, const unsigned char *s, Py_ssize_t n)
{
    if (is_ascii(s, n)) {
        PyObject *o = PyUnicode_New(n, 127);
        if (o != NULL) {
            memcpy(PyUnicode_DATA(o), s, (size_t)n);
        }
        return o;
    }
    if (n <= CM_MP_UTF8_SHORT) {
        PyObject *o = decode_short_utf8(s, n);
        if (o != NULL || PyErr_Occurred()) {
            return o;
        }
    }
    PyObject *o = PyUnicode_DecodeUTF8((const char *)s, n, NULL);
    if (o == NULL) {
        return malformed_from(u, "invalid UTF-8 in str");
    }
    return o;
}

/* A short key (n <= 32) as up to four overlapping words: bytes [0, 8),
 * [8, 16), [16, 24) and the last 8 (4 + 4 or single bytes when shorter).
 * Reads stay inside [0, n). Equal keys give equal words. */
typedef struct {
    uint64_t a, b, c, d;
} key_words;

static inline key_words
load_key(const unsigned char *s, Py_ssize_t n)
{
    key_words w = {0, 0, 0, 0};
    if (n >= 8) {
        memcpy(&w.a, s, 8);
        memcpy(&w.b, s + n - 8, 8);
        if (n > 16) {
            memcpy(&w.c, s + 8, 8);
        }
        if (n > 24) {
            memcpy(&w.d, s + 16, 8);
        }
    }
    else if (n >= 4) {
        uint32_t x, y;
        memcpy(&x, s, 4);
        memcpy(&y, s + n - 4, 4);
        w.a = x;
        w.b = y;
    }
    else if (n > 0) {
        w.a = (uint64_t)s[0] | (uint64_t)s[n / 2] << 8 |
              (uint64_t)s[n - 1] << 16;
    }
    return w;
}

static inline int
cached_is(PyObject *k, Py_ssize_t n, const key_words *w)
{
    if (k == NULL || PyUnicode_GET_LENGTH(k) != n) {
        return 0;
    }
    key_words v = load_key((const unsigned char *)PyUnicode_DATA(k), n);
    return ((v.a ^ w->a) | (v.b ^ w->b) | (v.c ^ w->c) | (v.d ^ w->d)) == 0;
}

/* A map key that is a short str: served from the cache when it is there.
 * The cache is two-way: each hash picks a pair of slots, so two keys of one
 * document that hash alike do not evict each other on every record. The
 * pair is kept in LRU order: a hit or a new key goes first, and a new key
 * evicts the one used least recently. */
static PyObject *
cached_key(unpacker *u, const unsigned char *s, Py_ssize_t n)
{
    key_words w = load_key(s, n);
    uint64_t h = (w.a * 0x9E3779B97F4A7C15ULL) ^
                 (w.b * 0xC2B2AE3D27D4EB4FULL) ^
                 (w.c * 0x165667B19E3779F9ULL) ^
                 (w.d * 0x27D4EB2F165667C5ULL) ^ (uint64_t)n;
    h ^= h >> 32;
    h ^= h >> 15;
    PyObject **pair = &u->ms->keys[(h % (CM_MP_KEY_CACHE_SIZE / 2)) * 2];
    if (cached_is(pair[0], n, &w)) {
        return Py_NewRef(pair[0]);
    }
    if (cached_is(pair[1], n, &w)) {
        /* most recently used first: the next new key evicts the other */
        PyObject *k = pair[1];
        pair[1] = pair[0];
        pair[0] = k;
        return Py_NewRef(k);
    }
    if (!is_ascii(s, n)) {
        return make_str(u, s, n);
    }
    PyObject *k = PyUnicode_New(n, 127);
    if (k == NULL) {
        return NULL;
    }
    memcpy(PyUnicode_DATA(k), s, (size_t)n);
    if (PyObject_Hash(k) == -1) { /* cached with the str: computed once */
        Py_DECREF(k);
        return NULL;
    }
    Py_XSETREF(pair[1], pair[0]);
    pair[0] = Py_NewRef(k);
    return k;
}

/* ---- ext ---- */

static int
import_class(PyObject **slot, const char *module, const char *name)
{
    if (*slot != NULL) {
        return 0;
    }
    PyObject *mod = PyImport_ImportModule(module);
    if (mod == NULL) {
        return -1;
    }
    *slot = PyObject_GetAttrString(mod, name);
    Py_DECREF(mod);
    return *slot == NULL ? -1 : 0;
}

/* Civil date from days since 1970-01-01 (H. Hinnant). */
static void
civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t yy = (int64_t)yoe + era * 400;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = yy + (*m <= 2);
}

/* datetime objects: through the C API when there is one, else by calling
 * the classes (see cm_msgpack_state.dt_capi). */
static PyObject *
new_datetime(cm_msgpack_state *ms, int y, int mo, int d, int h, int mi, int s,
             int us, PyObject *tz)
{
    PyDateTime_CAPI *dt = (PyDateTime_CAPI *)ms->dt_capi;
    if (dt != NULL) {
        return dt->DateTime_FromDateAndTime(y, mo, d, h, mi, s, us, tz,
                                            dt->DateTimeType);
    }
    return PyObject_CallFunction(ms->dt_datetime, "iiiiiiiO", y, mo, d, h, mi,
                                 s, us, tz);
}

static PyObject *
new_date(cm_msgpack_state *ms, int y, int mo, int d)
{
    PyDateTime_CAPI *dt = (PyDateTime_CAPI *)ms->dt_capi;
    if (dt != NULL) {
        return dt->Date_FromDate(y, mo, d, dt->DateType);
    }
    return PyObject_CallFunction(ms->dt_date, "iii", y, mo, d);
}

static PyObject *
new_time(cm_msgpack_state *ms, int h, int mi, int s, int us, PyObject *tz)
{
    PyDateTime_CAPI *dt = (PyDateTime_CAPI *)ms->dt_capi;
    if (dt != NULL) {
        return dt->Time_FromTime(h, mi, s, us, tz, dt->TimeType);
    }
    return PyObject_CallFunction(ms->dt_time, "iiiiO", h, mi, s, us, tz);
}

/* timezone(timedelta(seconds=offset)); ValueError beyond a day */
static PyObject *
new_timezone(cm_msgpack_state *ms, int32_t offset)
{
    PyDateTime_CAPI *dt = (PyDateTime_CAPI *)ms->dt_capi;
    PyObject *delta = NULL;
    PyObject *tz = NULL;
    if (offset == 0) {
        return Py_NewRef(ms->dt_utc);
    }
    if (dt != NULL) {
        delta = dt->Delta_FromDelta(0, offset, 0, 1, dt->DeltaType);
        if (delta != NULL) {
            tz = dt->TimeZone_FromTimeZone(delta, NULL);
        }
    }
    else {
        delta = PyObject_CallFunction(ms->dt_timedelta, "ii", 0, (int)offset);
        if (delta != NULL) {
            tz = PyObject_CallOneArg(ms->dt_timezone, delta);
        }
    }
    Py_XDECREF(delta);
    return tz;
}

static PyObject *
ext_timestamp(unpacker *u, const unsigned char *s, Py_ssize_t n)
{
    int64_t secs;
    uint32_t ns;
    if (n == 4) {
        secs = cm_load_be32(s);
        ns = 0;
    }
    else if (n == 8) {
        uint64_t d64 = cm_load_be64(s);
        ns = (uint32_t)(d64 >> 34);
        secs = (int64_t)(d64 & 0x3FFFFFFFFULL);
    }
    else if (n == 12) {
        ns = cm_load_be32(s);
        secs = (int64_t)cm_load_be64(s + 4);
    }
    else {
        return malformed(u, "timestamp extension of a wrong size");
    }
    if (ns > 999999999) {
        return malformed(u, "timestamp nanoseconds out of range");
    }
    /* datetime covers years 1..9999: seconds -62135596800 .. 253402300799 */
    if (secs < INT64_C(-62135596800) || secs > INT64_C(253402300799)) {
        return malformed(u, "timestamp out of the range of datetime");
    }
    int64_t days = secs / 86400, sod = secs % 86400;
    if (sod < 0) {
        sod += 86400;
        days -= 1;
    }
    int64_t y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    PyObject *o = new_datetime(
        u->ms, (int)y, (int)m, (int)d, (int)(sod / 3600), (int)(sod / 60 % 60),
        (int)(sod % 60), (int)(ns / 1000), u->ms->dt_utc);
    if (o == NULL) {
        return malformed_from(u, "invalid timestamp extension");
    }
    return o;
}

/* 1 when str(d) is exactly s[0:n], 0 when not, -1 with an exception. */
static int
decimal_is_canonical(PyObject *d, const unsigned char *s, Py_ssize_t n)
{
    PyObject *text = PyObject_Str(d);
    if (text == NULL) {
        return -1;
    }
    Py_ssize_t len = 0;
    const char *p = PyUnicode_AsUTF8AndSize(text, &len);
    int rc = p == NULL ? -1 : len == n && memcmp(p, s, (size_t)n) == 0;
    Py_DECREF(text);
    return rc;
}

static PyObject *
ext_object(unpacker *u, int8_t type, const unsigned char *s, Py_ssize_t n)
{
    cm_msgpack_state *ms = u->ms;
    PyObject *o = NULL;
    const char *what = "invalid extension";
    switch (type) {
    case CM_MP_EXT_TIMESTAMP: return ext_timestamp(u, s, n);
    case CM_MP_EXT_DATE:
        if (n != 4) {
            return malformed(u, "date extension of a wrong size");
        }
        what = "invalid date extension";
        o = new_date(ms, cm_load_be16(s), s[2], s[3]);
        break;
    case CM_MP_EXT_DATETIME:
        if (n != 10) {
            return malformed(u, "datetime extension of a wrong size");
        }
        what = "invalid datetime extension";
        o = new_datetime(
            ms, cm_load_be16(s), s[2], s[3], s[4], s[5], s[6],
            (int)((uint32_t)s[7] << 16 | (uint32_t)s[8] << 8 | s[9]), Py_None);
        break;
    case CM_MP_EXT_TIME: {
        if (n != 6 && n != 10) {
            return malformed(u, "time extension of a wrong size");
        }
        what = "invalid time extension";
        PyObject *tz = NULL;
        if (n == 10) {
            tz = new_timezone(ms, (int32_t)cm_load_be32(s + 6));
            if (tz == NULL) {
                return malformed_from(u, what);
            }
        }
        o = new_time(ms, s[0], s[1], s[2],
                     (int)((uint32_t)s[3] << 16 | (uint32_t)s[4] << 8 | s[5]),
                     tz ? tz : Py_None);
        Py_XDECREF(tz);
        break;
    }
    case CM_MP_EXT_UUID: {
        if (n != 16) {
            return malformed(u, "UUID extension of a wrong size");
        }
        what = "invalid UUID extension";
        if (import_class(&ms->UUID, "uuid", "UUID") < 0) {
            return NULL;
        }
        PyObject *args = PyTuple_New(0);
        PyObject *kwargs = NULL;
        PyObject *raw = NULL;
        if (args != NULL) {
            raw = PyBytes_FromStringAndSize((const char *)s, 16);
        }
        if (raw != NULL) {
            kwargs = PyDict_New();
        }
        if (kwargs != NULL &&
            PyDict_SetItem(kwargs, ms->str_bytes, raw) == 0) {
            o = PyObject_Call(ms->UUID, args, kwargs);
        }
        Py_XDECREF(args);
        Py_XDECREF(raw);
        Py_XDECREF(kwargs);
        break;
    }
    case CM_MP_EXT_DECIMAL: {
        what = "invalid Decimal extension";
        if (import_class(&ms->Decimal, "decimal", "Decimal") < 0) {
            return NULL;
        }
        if (!is_ascii(s, n)) {
            return malformed(u, "Decimal extension is not ASCII");
        }
        PyObject *text = PyUnicode_New(n, 127);
        if (text == NULL) {
            return NULL;
        }
        memcpy(PyUnicode_DATA(text), s, (size_t)n);
        o = PyObject_CallOneArg(ms->Decimal, text);
        Py_DECREF(text);
        if (o != NULL) {
            /* only str(d) itself: Decimal() also takes spaces, '_', '+',
             * lower case and leading zeros, which packb never writes */
            int canonical = decimal_is_canonical(o, s, n);
            if (canonical <= 0) {
                Py_DECREF(o);
                if (canonical < 0) {
                    return malformed_from(u, what);
                }
                return malformed(u, "Decimal extension is not str(Decimal)");
            }
        }
        break;
    }
    default: {
        char msg[48];
        snprintf(msg, sizeof msg, "unknown extension type %d", (int)type);
        return malformed(u, msg);
    }
    }
    if (o == NULL) {
        return malformed_from(u, what);
    }
    return o;
}

/* ---- containers ---- */

static inline int
enter(unpacker *u)
{
    if (CM_UNLIKELY(++u->depth > CM_MP_MAX_DEPTH)) {
        u->depth--;
        malformed(u, "containers nested too deep");
        return -1;
    }
    if (Py_EnterRecursiveCall(" while unpacking MessagePack")) {
        u->depth--;
        return -1;
    }
    return 0;
}

static inline void
leave(unpacker *u)
{
    u->depth--;
    Py_LeaveRecursiveCall();
}

static PyObject *
unpack_array(unpacker *u, uint64_t n)
{
    if (n > (uint64_t)cm_reader_left(&u->r)) {
        return malformed(u, "array length larger than the bytes left");
    }
    if (enter(u) < 0) {
        return NULL;
    }
    /* A long array is allocated as it fills: a count that the bytes left
     * allow but that is never delivered costs no more than the input. */
    int presized = n <= CM_MP_LIST_PRESIZE_MAX;
    PyObject *list = PyList_New(presized ? (Py_ssize_t)n : 0);
    if (list != NULL) {
        for (Py_ssize_t i = 0; i < (Py_ssize_t)n; i++) {
            PyObject *item = unpack_obj(u);
            if (item == NULL) {
                Py_CLEAR(list);
                break;
            }
            if (presized) {
                PyList_SET_ITEM(list, i, item);
            }
            else {
                int rc = PyList_Append(list, item);
                Py_DECREF(item);
                if (rc < 0) {
                    Py_CLEAR(list);
                    break;
                }
            }
        }
    }
    leave(u);
    return list;
}

static PyObject *unpack_tagged(unpacker *u, unsigned char c);

/* A map key: a str of up to CM_MP_KEY_CACHE_MAXLEN bytes comes from the
 * key cache. */
static inline PyObject *
unpack_key(unpacker *u)
{
    const unsigned char *s;
    if (CM_UNLIKELY(cm_read(&u->r, &s, 1) < 0)) {
        return malformed(u, "truncated input");
    }
    unsigned char c = s[0];
    uint64_t n;
    if ((c & 0xe0) == 0xa0) {
        n = c & 0x1f;
    }
    else if (c == 0xd9) {
        if (cm_read(&u->r, &s, 1) < 0) {
            return truncated(u);
        }
        n = s[0];
    }
    else {
        return unpack_tagged(u, c);
    }
    if (cm_read(&u->r, &s, n) < 0) {
        return malformed(u, "str length larger than the bytes left");
    }
    if (n <= CM_MP_KEY_CACHE_MAXLEN) {
        return cached_key(u, s, (Py_ssize_t)n);
    }
    return make_str(u, s, (Py_ssize_t)n);
}

static PyObject *
unpack_map(unpacker *u, uint64_t n)
{
    if (n > (uint64_t)cm_reader_left(&u->r) / 2) {
        return malformed(u, "map length larger than the bytes left");
    }
    if (enter(u) < 0) {
        return NULL;
    }
    /* CPython caps the presize (128 Ki slots): a lying count costs little */
    PyObject *dict = _PyDict_NewPresized((Py_ssize_t)n);
    if (dict != NULL) {
        for (uint64_t i = 0; i < n; i++) {
            const unsigned char *at = u->r.p;
            PyObject *key = unpack_key(u);
            if (key == NULL) {
                Py_CLEAR(dict);
                break;
            }
            PyObject *value = unpack_obj(u);
            if (value == NULL) {
                Py_DECREF(key);
                Py_CLEAR(dict);
                break;
            }
            int rc = PyDict_SetItem(dict, key, value);
            Py_DECREF(key);
            Py_DECREF(value);
            if (rc < 0) {
                u->r.p = at;
                malformed_from(u, "invalid map key");
                Py_CLEAR(dict);
                break;
            }
        }
    }
    leave(u);
    return dict;
}

/* ---- one object ---- */

/* The w-byte field after the type byte, or a truncation reported there. */
#define FIELD(w)                                        \
    do {                                                \
        if (CM_UNLIKELY(cm_read(&u->r, &s, (w)) < 0)) { \
            return truncated(u);                        \
        }                                               \
    } while (0)

static PyObject *
str_of(unpacker *u, uint64_t n)
{
    const unsigned char *s;
    if (cm_read(&u->r, &s, n) < 0) {
        return malformed(u, "str length larger than the bytes left");
    }
    return make_str(u, s, (Py_ssize_t)n);
}

static PyObject *
bin_of(unpacker *u, uint64_t n)
{
    const unsigned char *s;
    if (cm_read(&u->r, &s, n) < 0) {
        return malformed(u, "bin length larger than the bytes left");
    }
    return PyBytes_FromStringAndSize((const char *)s, (Py_ssize_t)n);
}

static PyObject *
ext_of(unpacker *u, int8_t type, uint64_t n)
{
    const unsigned char *s;
    if (cm_read(&u->r, &s, n) < 0) {
        return malformed(u, "ext length larger than the bytes left");
    }
    return ext_object(u, type, s, (Py_ssize_t)n);
}

static PyObject *
unpack_obj(unpacker *u)
{
    const unsigned char *s;
    if (CM_UNLIKELY(cm_read(&u->r, &s, 1) < 0)) {
        return malformed(u, "truncated input");
    }
    return unpack_tagged(u, s[0]);
}

/* The object whose type byte c was just read. */
static PyObject *
unpack_tagged(unpacker *u, unsigned char c)
{
    const unsigned char *s;
    if (c <= 0x7f) {
        return PyLong_FromLong(c);
    }
    if ((c & 0xe0) == 0xa0) {
        return str_of(u, c & 0x1f);
    }
    if (c >= 0xe0) {
        return PyLong_FromLong((int8_t)c);
    }
    if ((c & 0xf0) == 0x80) {
        return unpack_map(u, c & 0x0f);
    }
    if ((c & 0xf0) == 0x90) {
        return unpack_array(u, c & 0x0f);
    }
    switch (c) {
    case 0xc0: Py_RETURN_NONE;
    case 0xc2: Py_RETURN_FALSE;
    case 0xc3: Py_RETURN_TRUE;
    case 0xc4: FIELD(1); return bin_of(u, s[0]);
    case 0xc5: FIELD(2); return bin_of(u, cm_load_be16(s));
    case 0xc6: FIELD(4); return bin_of(u, cm_load_be32(s));
    case 0xc7: FIELD(2); return ext_of(u, (int8_t)s[1], s[0]);
    case 0xc8: FIELD(3); return ext_of(u, (int8_t)s[2], cm_load_be16(s));
    case 0xc9: FIELD(5); return ext_of(u, (int8_t)s[4], cm_load_be32(s));
    case 0xca: {
        FIELD(4);
        uint32_t bits = cm_load_be32(s);
        float f;
        memcpy(&f, &bits, sizeof f);
        return PyFloat_FromDouble((double)f);
    }
    case 0xcb: {
        FIELD(8);
        uint64_t bits = cm_load_be64(s);
        double f;
        memcpy(&f, &bits, sizeof f);
        return PyFloat_FromDouble(f);
    }
    case 0xcc: FIELD(1); return PyLong_FromLong(s[0]);
    case 0xcd: FIELD(2); return PyLong_FromLong(cm_load_be16(s));
    case 0xce: FIELD(4); return PyLong_FromUnsignedLong(cm_load_be32(s));
    case 0xcf: FIELD(8); return PyLong_FromUnsignedLongLong(cm_load_be64(s));
    case 0xd0: FIELD(1); return PyLong_FromLong((int8_t)s[0]);
    case 0xd1: FIELD(2); return PyLong_FromLong((int16_t)cm_load_be16(s));
    case 0xd2: FIELD(4); return PyLong_FromLong((int32_t)cm_load_be32(s));
    case 0xd3: FIELD(8); return PyLong_FromLongLong((int64_t)cm_load_be64(s));
    case 0xd4: FIELD(1); return ext_of(u, (int8_t)s[0], 1);
    case 0xd5: FIELD(1); return ext_of(u, (int8_t)s[0], 2);
    case 0xd6: FIELD(1); return ext_of(u, (int8_t)s[0], 4);
    case 0xd7: FIELD(1); return ext_of(u, (int8_t)s[0], 8);
    case 0xd8: FIELD(1); return ext_of(u, (int8_t)s[0], 16);
    case 0xd9: FIELD(1); return str_of(u, s[0]);
    case 0xda: FIELD(2); return str_of(u, cm_load_be16(s));
    case 0xdb: FIELD(4); return str_of(u, cm_load_be32(s));
    case 0xdc: FIELD(2); return unpack_array(u, cm_load_be16(s));
    case 0xdd: FIELD(4); return unpack_array(u, cm_load_be32(s));
    case 0xde: FIELD(2); return unpack_map(u, cm_load_be16(s));
    case 0xdf: FIELD(4); return unpack_map(u, cm_load_be32(s));
    default: u->r.p--; return malformed(u, "reserved type byte 0xc1");
    }
}

#undef FIELD

PyObject *
cm_mp_unpack(cm_state *st, const char *data, Py_ssize_t len)
{
    unpacker u = {
        {(const unsigned char *)data, (const unsigned char *)data + len},
        (const unsigned char *)data,
        st,
        &st->msgpack,
        0};
    if (len > CM_MP_MAX_INPUT) {
        PyErr_Format(st->MalformedError,
                     "input of %zd bytes is larger than the %zd byte limit",
                     len, CM_MP_MAX_INPUT);
        return NULL;
    }
    if (len == 0) {
        PyErr_SetString(st->MalformedError, "empty input");
        return NULL;
    }
    PyObject *out = unpack_obj(&u);
    if (out != NULL && cm_reader_left(&u.r) != 0) {
        PyErr_Format(st->MalformedError,
                     "%zd trailing bytes after the object at offset %zd",
                     cm_reader_left(&u.r), (Py_ssize_t)(u.r.p - u.start));
        Py_CLEAR(out);
    }
    return out;
}

PyObject *
cm_msgpack_unpackb(PyObject *module, PyObject *data)
{
    cm_state *st = cm_get_state(module);
    if (PyBytes_CheckExact(data) &&
        PyBytes_GET_SIZE(data) < CM_MP_GC_PAUSE_SIZE) {
        return cm_mp_unpack(st, PyBytes_AS_STRING(data),
                            PyBytes_GET_SIZE(data));
    }
    cm_input in;
    if (cm_input_get(data, &in) < 0) {
        return NULL;
    }
    /* A large input makes thousands of containers: the cyclic GC would
     * traverse them again and again while they are built (none can be
     * garbage yet), so it waits until the result is complete. */
    int gc_was_enabled = in.len >= CM_MP_GC_PAUSE_SIZE ? PyGC_Disable() : 0;
    PyObject *out = cm_mp_unpack(st, in.data, in.len);
    if (gc_was_enabled) {
        PyGC_Enable();
    }
    cm_input_release(&in);
    return out;
}
