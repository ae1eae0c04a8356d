/* The stored entry: write_entry, read_entry, body_etag and the Entry type.
 *
 * Format, version 1 (docs/entry-format.md): one MessagePack array of exactly
 * 14 elements, in this order, each of exactly this MessagePack type:
 *
 *   0  magic        str    "cmE"
 *   1  version      uint   1 (a reader rejects every other value)
 *   2  created      float  seconds since the epoch (finite)
 *   3  ttl          float  seconds of freshness (finite, >= 0)
 *   4  grace        float  seconds servable as stale after ttl (finite, >= 0)
 *   5  compute_ms   float  what the endpoint took to compute it (finite, >= 0)
 *   6  status       uint   HTTP status, 100..999
 *   7  headers      array  of [bin name, bin value] (arrays of exactly 2)
 *   8  etag         bin    the ETag header value, quotes included
 *   9  tags         array  of str (UTF-8), for invalidation
 *  10  fingerprint  bin    0 or 8 bytes: a fingerprint of the key it was
 *                          stored under (build_key's second result)
 *  11  size         uint   the body's length, uncompressed (<= 64 MiB)
 *  12  codec        uint   0: body stored as is, 1: body is one zstd frame
 *  13  body         bin    the body, as codec says
 *
 * and nothing after the array. The writer always uses the smallest encoding
 * of each item (as msgpack-python does) and float64 for floats; the reader
 * takes any valid encoding of the right type (float32 too, and non-negative
 * signed ints as uint), so any MessagePack library can write an entry.
 *
 * The reader treats its input as hostile: every read goes through cm_mp_read
 * (bounds-checked), a zstd body must be one complete frame that declares its
 * content size as exactly `size` bytes, decodes to that and is followed by
 * nothing (checked before any allocation), so
 * a bomb allocates at most `size` <= CM_ENTRY_MAX_BODY bytes. Anything else
 * (truncated, foreign magic, other version, wrong types, wrong fingerprint,
 * trailing bytes) is None: never an exception for bad bytes. It validates the
 * whole record before it allocates anything but the decompressed body.
 */
#include "entry.h"

#include <math.h>
#include <structmember.h>
#include <zstd.h>

#include "args.h"
#include "blake2b.h"
#include "buffer.h"
#include "compress.h"
#include "state.h"

#define ENTRY_FIELDS 14
#define ZSTD_LEVEL_MIN (-(1 << 17))
#define ZSTD_LEVEL_MAX 22

enum { COMPRESS_DISABLED = 0, COMPRESS_SMART = 1, COMPRESS_ALL = 2 };
enum { STATE_FRESH = 0, STATE_STALE = 1, STATE_EXPIRED = 2 };

static const char entry_magic[] = "cmE";

static const char *const common_strings[CM_ENTRY_N_COMMON] = {
    "content-type",
    "content-length",
    "content-encoding",
    "cache-control",
    "etag",
    "vary",
    "last-modified",
    "location",
    "application/json",
    "text/html; charset=utf-8",
    "text/plain; charset=utf-8",
    "Accept-Encoding",
};

/* ---- the Entry type ---- */

typedef struct {
    PyObject_HEAD
    PyObject *headers;
    PyObject *body;
    PyObject *etag;
    PyObject *tags;
    double age;
    double remaining;
    double compute_ms;
    double ttl;
    double grace;
    double created;
    int status;
    int state;
} EntryObject;

static int
Entry_traverse(PyObject *op, visitproc visit, void *arg)
{
    EntryObject *self = (EntryObject *)op;
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(self->headers);
    Py_VISIT(self->tags);
    return 0;
}

static int
Entry_clear(PyObject *op)
{
    EntryObject *self = (EntryObject *)op;
    Py_CLEAR(self->headers);
    Py_CLEAR(self->body);
    Py_CLEAR(self->etag);
    Py_CLEAR(self->tags);
    return 0;
}

static void
Entry_dealloc(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    (void)Entry_clear(op);
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyObject *
Entry_repr(PyObject *op)
{
    EntryObject *self = (EntryObject *)op;
    static const char *const names[] = {"FRESH", "STALE", "EXPIRED"};
    PyObject *age = PyFloat_FromDouble(self->age);
    PyObject *remaining = PyFloat_FromDouble(self->remaining);
    PyObject *out = NULL;
    if (age != NULL && remaining != NULL) {
        out = PyUnicode_FromFormat(
            "Entry(status=%d, state=%s, age=%R, remaining=%R, "
            "body=<%zd bytes>, etag=%R)",
            self->status, names[self->state], age, remaining,
            PyBytes_GET_SIZE(self->body), self->etag);
    }
    Py_XDECREF(age);
    Py_XDECREF(remaining);
    return out;
}

#define RO READONLY
static PyMemberDef Entry_members[] = {
    {"status", T_INT, offsetof(EntryObject, status), RO, "HTTP status"},
    {"headers", T_OBJECT_EX, offsetof(EntryObject, headers), RO,
     "list of (name, value) bytes pairs, as Response.raw_headers takes them"},
    {"body", T_OBJECT_EX, offsetof(EntryObject, body), RO,
     "the body, decompressed"},
    {"etag", T_OBJECT_EX, offsetof(EntryObject, etag), RO,
     "the ETag header value, quotes included"},
    {"age", T_DOUBLE, offsetof(EntryObject, age), RO,
     "seconds since the entry was created (>= 0)"},
    {"remaining", T_DOUBLE, offsetof(EntryObject, remaining), RO,
     "seconds of freshness left (negative once stale)"},
    {"state", T_INT, offsetof(EntryObject, state), RO,
     "FRESH, STALE or EXPIRED"},
    {"compute_ms", T_DOUBLE, offsetof(EntryObject, compute_ms), RO,
     "what the endpoint took to compute it"},
    {"ttl", T_DOUBLE, offsetof(EntryObject, ttl), RO, "seconds of freshness"},
    {"grace", T_DOUBLE, offsetof(EntryObject, grace), RO,
     "seconds servable as stale after ttl"},
    {"created", T_DOUBLE, offsetof(EntryObject, created), RO,
     "when it was created, seconds since the epoch"},
    {"tags", T_OBJECT_EX, offsetof(EntryObject, tags), RO, "list of str tags"},
    {NULL, 0, 0, 0, NULL},
};
#undef RO

static PyType_Slot Entry_slots[] = {
    {Py_tp_doc,
     (void *)PyDoc_STR(
         "What read_entry returns: all that a hit needs, in one call.")},
    {Py_tp_members, Entry_members},
    {Py_tp_traverse, Entry_traverse},
    {Py_tp_clear, Entry_clear},
    {Py_tp_dealloc, Entry_dealloc},
    {Py_tp_repr, Entry_repr},
    {0, NULL},
};

static PyType_Spec Entry_spec = {
    .name = "fastapi_cachemate._native.Entry",
    .basicsize = sizeof(EntryObject),
    .itemsize = 0,
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = Entry_slots,
};

/* ---- ETag ---- */

static const char b64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

void
cm_entry_etag(const void *body, size_t n, char *out)
{
    uint8_t d[16];
    (void)cm_blake2b(d, sizeof d, NULL, 0, body, n);
    char *o = out;
    *o++ = '"';
    for (int i = 0; i < 15; i += 3) {
        uint32_t v = ((uint32_t)d[i] << 16) | ((uint32_t)d[i + 1] << 8) |
                     (uint32_t)d[i + 2];
        *o++ = b64url[(v >> 18) & 63];
        *o++ = b64url[(v >> 12) & 63];
        *o++ = b64url[(v >> 6) & 63];
        *o++ = b64url[v & 63];
    }
    *o++ = b64url[d[15] >> 2];
    *o++ = b64url[(d[15] & 3) << 4];
    *o++ = '"';
}

static PyObject *
etag_bytes(const void *body, size_t n)
{
    char tag[CM_ENTRY_ETAG_SIZE];
    if (n > 65536) {
        Py_BEGIN_ALLOW_THREADS
        cm_entry_etag(body, n, tag);
        Py_END_ALLOW_THREADS
    }
    else {
        cm_entry_etag(body, n, tag);
    }
    return PyBytes_FromStringAndSize(tag, CM_ENTRY_ETAG_SIZE);
}

static PyObject *
py_body_etag(PyObject *module, PyObject *arg)
{
    cm_input in;
    if (cm_input_get(arg, &in) < 0) {
        return NULL;
    }
    PyObject *out = etag_bytes(in.data, (size_t)in.len);
    cm_input_release(&in);
    return out;
}

/* ---- writer ---- */

enum {
    KW_STATUS,
    KW_HEADERS,
    KW_BODY,
    KW_CREATED,
    KW_TTL,
    KW_GRACE,
    KW_COMPUTE_MS,
    KW_ETAG,
    KW_TAGS,
    KW_FINGERPRINT,
    KW_COMPRESSION,
    KW_MIN_SIZE,
    KW_LEVEL,
    KW_COUNT,
};

/* keyword-only; '!' marks the required ones (args.h) */
static const char *const write_names[KW_COUNT] = {
    "!status",     "!headers",   "!body", "!created", "!ttl",
    "grace",       "compute_ms", "etag",  "tags",     "fingerprint",
    "compression", "min_size",   "level",
};
static const cm_args write_args = {
    "write_entry", write_names, KW_COUNT, 0, 0, 0};

static int
get_double(PyObject *o, const char *name, int nonneg, double *out)
{
    double v = PyFloat_AsDouble(o);
    if (v == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    if (!isfinite(v) || (nonneg && v < 0)) {
        PyErr_Format(PyExc_ValueError, "%s must be a finite number%s, not %R",
                     name, nonneg ? " >= 0" : "", o);
        return -1;
    }
    *out = v;
    return 0;
}

static int
get_long(PyObject *o, const char *name, long lo, long hi, long *out)
{
    if (!PyLong_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%s must be int, not %.100s", name,
                     Py_TYPE(o)->tp_name);
        return -1;
    }
    int overflow = 0;
    long v = PyLong_AsLongAndOverflow(o, &overflow);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (overflow || v < lo || v > hi) {
        PyErr_Format(PyExc_ValueError, "%s must be %ld..%ld, not %R", name, lo,
                     hi, o);
        return -1;
    }
    *out = v;
    return 0;
}

static PyObject *
py_write_entry(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
               PyObject *kwnames)
{
    cm_state *st = cm_get_state(module);
    PyObject *kw[KW_COUNT] = {NULL};
    PyObject *headers = NULL, *tags = NULL, *packed = NULL, *out = NULL;
    cm_input body;
    int have_body = 0;
    cm_buf buf = {0};

    if (cm_args_parse(&write_args, args, nargs, kwnames, kw) < 0) {
        return NULL;
    }

    long status, compression = COMPRESS_SMART, min_size = 1024, level = 3;
    double created, ttl, grace = 0.0, compute_ms = 0.0;
    if (get_long(kw[KW_STATUS], "status", 100, 999, &status) < 0 ||
        get_double(kw[KW_CREATED], "created", 0, &created) < 0 ||
        get_double(kw[KW_TTL], "ttl", 1, &ttl) < 0 ||
        (kw[KW_GRACE] && get_double(kw[KW_GRACE], "grace", 1, &grace) < 0) ||
        (kw[KW_COMPUTE_MS] &&
         get_double(kw[KW_COMPUTE_MS], "compute_ms", 1, &compute_ms) < 0) ||
        (kw[KW_COMPRESSION] && get_long(kw[KW_COMPRESSION], "compression", 0,
                                        2, &compression) < 0) ||
        (kw[KW_MIN_SIZE] &&
         get_long(kw[KW_MIN_SIZE], "min_size", 0, LONG_MAX, &min_size) < 0) ||
        (kw[KW_LEVEL] && get_long(kw[KW_LEVEL], "level", ZSTD_LEVEL_MIN,
                                  ZSTD_LEVEL_MAX, &level) < 0)) {
        goto done;
    }
    PyObject *etag = kw[KW_ETAG];
    if (etag == Py_None) {
        etag = NULL;
    }
    if (etag != NULL && !PyBytes_Check(etag)) {
        PyErr_Format(PyExc_TypeError, "etag must be bytes or None, not %.100s",
                     Py_TYPE(etag)->tp_name);
        goto done;
    }
    const char *fp = "";
    Py_ssize_t fplen = 0;
    if (kw[KW_FINGERPRINT] != NULL) {
        if (!PyBytes_Check(kw[KW_FINGERPRINT])) {
            PyErr_Format(PyExc_TypeError,
                         "fingerprint must be bytes, not %.100s",
                         Py_TYPE(kw[KW_FINGERPRINT])->tp_name);
            goto done;
        }
        fp = PyBytes_AS_STRING(kw[KW_FINGERPRINT]);
        fplen = PyBytes_GET_SIZE(kw[KW_FINGERPRINT]);
        if (fplen != 0 && fplen != CM_ENTRY_FINGERPRINT_SIZE) {
            PyErr_Format(PyExc_ValueError,
                         "fingerprint must be 0 or 8 bytes, not %zd", fplen);
            goto done;
        }
    }
    if (cm_input_get(kw[KW_BODY], &body) < 0) {
        goto done;
    }
    have_body = 1;
    if (body.len > CM_ENTRY_MAX_BODY) {
        PyErr_Format(PyExc_ValueError, "body is larger than %zd bytes",
                     CM_ENTRY_MAX_BODY);
        goto done;
    }

    /* The body, compressed by the mode, and its ETag first: they may release
     * the GIL. From the checks of headers and tags to the end, the GIL is
     * held, so no other thread can change them under the borrowed pointers. */
    const char *stored = body.data;
    Py_ssize_t stored_len = body.len;
    int codec = 0;
    if (compression == COMPRESS_ALL ||
        (compression == COMPRESS_SMART && body.len >= min_size)) {
        packed = cm_zstd_compress(st, body.data, (size_t)body.len, (int)level);
        if (packed == NULL) {
            goto done;
        }
        if (compression == COMPRESS_ALL ||
            PyBytes_GET_SIZE(packed) < body.len) {
            stored = PyBytes_AS_STRING(packed);
            stored_len = PyBytes_GET_SIZE(packed);
            codec = 1;
        }
    }

    char tagbuf[CM_ENTRY_ETAG_SIZE];
    const char *etag_ptr = tagbuf;
    Py_ssize_t etag_len = CM_ENTRY_ETAG_SIZE;
    if (etag == NULL) {
        if (body.len > 65536) {
            Py_BEGIN_ALLOW_THREADS
            cm_entry_etag(body.data, (size_t)body.len, tagbuf);
            Py_END_ALLOW_THREADS
        }
        else {
            cm_entry_etag(body.data, (size_t)body.len, tagbuf);
        }
    }
    else {
        etag_ptr = PyBytes_AS_STRING(etag);
        etag_len = PyBytes_GET_SIZE(etag);
    }

    /* headers and tags: check types and sum sizes before writing. Both are
     * made lists or tuples first: that may run Python code (an iterator),
     * and nothing after it does. */
    headers = PySequence_Fast(kw[KW_HEADERS], "headers must be a sequence");
    if (headers == NULL) {
        goto done;
    }
    if (kw[KW_TAGS] != NULL) {
        tags = PySequence_Fast(kw[KW_TAGS], "tags must be a sequence");
        if (tags == NULL) {
            goto done;
        }
    }
    Py_ssize_t nheaders = PySequence_Fast_GET_SIZE(headers);
    Py_ssize_t estimate = 128 + stored_len + etag_len;
    for (Py_ssize_t i = 0; i < nheaders; i++) {
        PyObject *pair = PySequence_Fast_GET_ITEM(headers, i);
        if (!(PyTuple_Check(pair) || PyList_Check(pair)) ||
            PySequence_Fast_GET_SIZE(pair) != 2 ||
            !PyBytes_Check(PySequence_Fast_GET_ITEM(pair, 0)) ||
            !PyBytes_Check(PySequence_Fast_GET_ITEM(pair, 1))) {
            PyErr_SetString(PyExc_TypeError,
                            "headers must be (bytes, bytes) pairs");
            goto done;
        }
        estimate += 11 + PyBytes_GET_SIZE(PySequence_Fast_GET_ITEM(pair, 0)) +
                    PyBytes_GET_SIZE(PySequence_Fast_GET_ITEM(pair, 1));
    }
    if (tags != NULL) {
        for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(tags); i++) {
            PyObject *tag = PySequence_Fast_GET_ITEM(tags, i);
            Py_ssize_t n;
            if (!PyUnicode_Check(tag)) {
                PyErr_Format(PyExc_TypeError, "tags must be str, not %.100s",
                             Py_TYPE(tag)->tp_name);
                goto done;
            }
            if (PyUnicode_AsUTF8AndSize(tag, &n) == NULL) {
                goto done;
            }
            estimate += 5 + n;
        }
    }

    if (cm_buf_init(&buf, estimate) < 0 ||
        cm_mp_array_header(&buf, ENTRY_FIELDS) < 0 ||
        cm_mp_str(&buf, entry_magic, sizeof entry_magic - 1) < 0 ||
        cm_mp_uint(&buf, CM_ENTRY_FORMAT_VERSION) < 0 ||
        cm_mp_float64(&buf, created) < 0 || cm_mp_float64(&buf, ttl) < 0 ||
        cm_mp_float64(&buf, grace) < 0 ||
        cm_mp_float64(&buf, compute_ms) < 0 ||
        cm_mp_uint(&buf, (uint64_t)status) < 0 ||
        cm_mp_array_header(&buf, nheaders) < 0) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < nheaders; i++) {
        PyObject *pair = PySequence_Fast_GET_ITEM(headers, i);
        PyObject *name = PySequence_Fast_GET_ITEM(pair, 0);
        PyObject *value = PySequence_Fast_GET_ITEM(pair, 1);
        if (cm_mp_array_header(&buf, 2) < 0 ||
            cm_mp_bin(&buf, PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name)) <
                0 ||
            cm_mp_bin(&buf, PyBytes_AS_STRING(value),
                      PyBytes_GET_SIZE(value)) < 0) {
            goto done;
        }
    }
    if (cm_mp_bin(&buf, etag_ptr, etag_len) < 0) {
        goto done;
    }
    Py_ssize_t ntags = tags == NULL ? 0 : PySequence_Fast_GET_SIZE(tags);
    if (cm_mp_array_header(&buf, ntags) < 0) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < ntags; i++) {
        Py_ssize_t n;
        const char *s =
            PyUnicode_AsUTF8AndSize(PySequence_Fast_GET_ITEM(tags, i), &n);
        if (s == NULL || cm_mp_str(&buf, s, n) < 0) {
            goto done;
        }
    }
    if (cm_mp_bin(&buf, fp, fplen) < 0 ||
        cm_mp_uint(&buf, (uint64_t)body.len) < 0 ||
        cm_mp_uint(&buf, (uint64_t)codec) < 0 ||
        cm_mp_bin(&buf, stored, stored_len) < 0) {
        goto done;
    }
    out = cm_buf_finish(&buf);
done:
    cm_buf_free(&buf);
    Py_XDECREF(packed);
    Py_XDECREF(tags);
    Py_XDECREF(headers);
    if (have_body) {
        cm_input_release(&body);
    }
    return out;
}

/* ---- reader ---- */

/* A bytes object for s[0:n]: a shared one for common header strings. */
static inline PyObject *
header_bytes(cm_entry_state *es, const char *s, Py_ssize_t n)
{
    for (int i = 0; i < CM_ENTRY_N_COMMON; i++) {
        PyObject *c = es->common[i];
        if (PyBytes_GET_SIZE(c) == n &&
            memcmp(PyBytes_AS_STRING(c), s, (size_t)n) == 0) {
            return Py_NewRef(c);
        }
    }
    return PyBytes_FromStringAndSize(s, n);
}

#define READ(kind_)                                          \
    do {                                                     \
        if (cm_mp_read(&r, &it) < 0 || it.kind != (kind_)) { \
            return 0;                                        \
        }                                                    \
    } while (0)

/* The first pass keeps where the first HEADER_SLOTS header names and values
 * are, so that building the list does not parse them again. */
#define HEADER_SLOTS 32

typedef struct {
    const char *ptr;
    Py_ssize_t len;
} slice;

typedef struct {
    double created, ttl, grace, compute_ms;
    int status;
    int codec;
    Py_ssize_t size;
    uint64_t nheaders, ntags;
    slice header[2 * HEADER_SLOTS];  /* name, value of the first ones */
    const unsigned char *headers_at; /* header pair HEADER_SLOTS, if any */
    const unsigned char *tags_at;    /* first tag */
    const char *etag;
    Py_ssize_t etag_len;
    const char *body;
    Py_ssize_t body_len;
} parsed_entry;

static inline int
read_float(cm_reader *rp, int nonneg, double *out)
{
    cm_mp_item it;
    if (cm_mp_read(rp, &it) < 0 || it.kind != CM_MP_FLOAT || !isfinite(it.f) ||
        (nonneg && it.f < 0)) {
        return -1;
    }
    *out = it.f;
    return 0;
}

/* Validate the whole record; 1 if it is a well-formed entry (of this key when
 * fp != NULL), else 0. Allocates nothing, sets no exception. */
static int
parse_entry(const char *data, Py_ssize_t len, const char *fp, Py_ssize_t fplen,
            parsed_entry *e)
{
    cm_reader r;
    cm_mp_item it;
    cm_reader_init(&r, data, len);

    READ(CM_MP_ARRAY);
    if (it.u != ENTRY_FIELDS) {
        return 0;
    }
    READ(CM_MP_STR);
    if (it.len != (Py_ssize_t)sizeof entry_magic - 1 ||
        memcmp(it.ptr, entry_magic, sizeof entry_magic - 1) != 0) {
        return 0;
    }
    READ(CM_MP_UINT);
    if (it.u != CM_ENTRY_FORMAT_VERSION) {
        return 0;
    }
    if (read_float(&r, 0, &e->created) < 0 || read_float(&r, 1, &e->ttl) < 0 ||
        read_float(&r, 1, &e->grace) < 0 ||
        read_float(&r, 1, &e->compute_ms) < 0) {
        return 0;
    }
    READ(CM_MP_UINT);
    if (it.u < 100 || it.u > 999) {
        return 0;
    }
    e->status = (int)it.u;
    READ(CM_MP_ARRAY);
    e->nheaders = it.u;
    e->headers_at = NULL;
    for (uint64_t i = 0; i < e->nheaders; i++) {
        if (i == HEADER_SLOTS) {
            e->headers_at = r.p;
        }
        READ(CM_MP_ARRAY);
        if (it.u != 2) {
            return 0;
        }
        READ(CM_MP_BIN);
        if (i < HEADER_SLOTS) {
            e->header[2 * i] = (slice){it.ptr, it.len};
        }
        READ(CM_MP_BIN);
        if (i < HEADER_SLOTS) {
            e->header[2 * i + 1] = (slice){it.ptr, it.len};
        }
    }
    READ(CM_MP_BIN);
    e->etag = it.ptr;
    e->etag_len = it.len;
    READ(CM_MP_ARRAY);
    e->ntags = it.u;
    e->tags_at = r.p;
    for (uint64_t i = 0; i < e->ntags; i++) {
        READ(CM_MP_STR);
    }
    READ(CM_MP_BIN);
    if (fp != NULL &&
        (it.len != fplen || memcmp(it.ptr, fp, (size_t)fplen) != 0)) {
        return 0;
    }
    READ(CM_MP_UINT);
    if (it.u > (uint64_t)CM_ENTRY_MAX_BODY) {
        return 0;
    }
    e->size = (Py_ssize_t)it.u;
    READ(CM_MP_UINT);
    if (it.u > 1) {
        return 0;
    }
    e->codec = (int)it.u;
    READ(CM_MP_BIN);
    e->body = it.ptr;
    e->body_len = it.len;
    if (cm_reader_left(&r) != 0) {
        return 0;
    }
    if (e->codec == 0) {
        return e->body_len == e->size;
    }
    /* one zstd frame (not a skippable one) that declares exactly size bytes
     * and fills the body: checked here, whatever cm_zstd_decompress accepts */
    static const unsigned char zstd_magic[4] = {0x28, 0xb5, 0x2f, 0xfd};
    return e->body_len >= 4 && memcmp(e->body, zstd_magic, 4) == 0 &&
           ZSTD_getFrameContentSize(e->body, (size_t)e->body_len) ==
               (unsigned long long)e->size &&
           ZSTD_findFrameCompressedSize(e->body, (size_t)e->body_len) ==
               (size_t)e->body_len;
}

#undef READ

/* Build the Entry of a validated record into *out. 1: built; 0: a miss,
 * bad bytes found only now (invalid UTF-8 in a tag, a zstd frame that does
 * not decode to size bytes), no exception; -1: an error, exception set. */
static int
build_entry(cm_state *st, const parsed_entry *e, double now, PyObject **out)
{
    int miss = 0;
    cm_entry_state *es = &st->entry;
    EntryObject *self = NULL;
    PyObject *headers = NULL, *tags = NULL, *body = NULL, *etag = NULL;
    cm_reader r;
    cm_mp_item it;

    if (e->codec == 0) {
        body = PyBytes_FromStringAndSize(e->body, e->body_len);
    }
    else {
        body = cm_zstd_decompress(st, e->body, (size_t)e->body_len,
                                  (size_t)e->size);
        if (body == NULL) {
            if (PyErr_ExceptionMatches(PyExc_ValueError)) {
                PyErr_Clear(); /* a bad frame: a miss */
                miss = 1;
            }
            goto error;
        }
        if (PyBytes_GET_SIZE(body) != e->size) {
            miss = 1; /* a frame of another size */
            goto error;
        }
    }
    if (body == NULL) {
        goto error;
    }
    headers = PyList_New((Py_ssize_t)e->nheaders);
    if (headers == NULL) {
        goto error;
    }
    r.p = e->headers_at;
    r.end = (const unsigned char *)e->etag; /* headers end before the etag */
    for (Py_ssize_t i = 0; i < (Py_ssize_t)e->nheaders; i++) {
        PyObject *pair = PyTuple_New(2);
        if (pair == NULL) {
            goto error;
        }
        PyList_SET_ITEM(headers, i, pair);
        for (int k = 0; k < 2; k++) {
            slice sl;
            if (i < HEADER_SLOTS) {
                sl = e->header[2 * i + k];
            }
            else {
                /* validated, so these cannot fail, unless another thread
                 * changed a bytearray while a decompression released the
                 * GIL: then a miss, still within bounds */
                if ((k == 0 && cm_mp_read(&r, &it) < 0) || /* the [ ] */
                    cm_mp_read(&r, &it) < 0 || it.kind != CM_MP_BIN) {
                    miss = 1;
                    goto error;
                }
                sl = (slice){it.ptr, it.len};
            }
            PyObject *b = header_bytes(es, sl.ptr, sl.len);
            if (b == NULL) {
                goto error;
            }
            PyTuple_SET_ITEM(pair, k, b);
        }
    }
    etag = PyBytes_FromStringAndSize(e->etag, e->etag_len);
    if (etag == NULL) {
        goto error;
    }
    tags = PyList_New((Py_ssize_t)e->ntags);
    if (tags == NULL) {
        goto error;
    }
    r.p = e->tags_at;
    r.end = (const unsigned char *)e->body + e->body_len;
    for (Py_ssize_t i = 0; i < (Py_ssize_t)e->ntags; i++) {
        if (cm_mp_read(&r, &it) < 0 || it.kind != CM_MP_STR) {
            miss = 1; /* as above */
            goto error;
        }
        PyObject *s = PyUnicode_DecodeUTF8(it.ptr, it.len, NULL);
        if (s == NULL) {
            if (PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
                PyErr_Clear(); /* not UTF-8: a miss */
                miss = 1;
            }
            goto error;
        }
        PyList_SET_ITEM(tags, i, s);
    }

    self = PyObject_GC_New(EntryObject, es->EntryType);
    if (self == NULL) {
        goto error;
    }
    self->headers = headers;
    self->body = body;
    self->etag = etag;
    self->tags = tags;
    self->status = e->status;
    self->created = e->created;
    self->ttl = e->ttl;
    self->grace = e->grace;
    self->compute_ms = e->compute_ms;
    double age = now - e->created;
    self->age = age > 0 ? age : 0.0;
    double remaining = e->created + e->ttl - now;
    self->remaining = remaining;
    self->state = remaining > 0           ? STATE_FRESH
                  : remaining > -e->grace ? STATE_STALE
                                          : STATE_EXPIRED;
    PyObject_GC_Track(self);
    *out = (PyObject *)self;
    return 1;
error:
    Py_XDECREF(headers);
    Py_XDECREF(tags);
    Py_XDECREF(body);
    Py_XDECREF(etag);
    return miss ? 0 : -1;
}

static const char *const read_names[] = {"data", "now", "fingerprint"};
static const cm_args read_args = {"read_entry", read_names, 3, 3, 3, 2};

static PyObject *
py_read_entry(PyObject *module, PyObject *const *argv, Py_ssize_t nargs)
{
    PyObject *args[3];
    if (cm_args_parse(&read_args, argv, nargs, NULL, args) < 0) {
        return NULL;
    }
    cm_state *st = cm_get_state(module);
    double now;
    if (CM_LIKELY(PyFloat_CheckExact(args[1]))) {
        now = PyFloat_AS_DOUBLE(args[1]);
    }
    else {
        now = PyFloat_AsDouble(args[1]);
        if (now == -1.0 && PyErr_Occurred()) {
            return NULL;
        }
    }
    const char *fp = NULL;
    Py_ssize_t fplen = 0;
    if (args[2] != NULL && args[2] != Py_None) {
        if (!PyBytes_Check(args[2])) {
            PyErr_Format(PyExc_TypeError,
                         "fingerprint must be bytes or None, not %.100s",
                         Py_TYPE(args[2])->tp_name);
            return NULL;
        }
        fp = PyBytes_AS_STRING(args[2]);
        fplen = PyBytes_GET_SIZE(args[2]);
    }

    parsed_entry e;
    PyObject *out = NULL;
    int rc = 0; /* a miss unless the record parses and builds */
    if (CM_LIKELY(PyBytes_CheckExact(args[0]))) {
        if (parse_entry(PyBytes_AS_STRING(args[0]), PyBytes_GET_SIZE(args[0]),
                        fp, fplen, &e)) {
            rc = build_entry(st, &e, now, &out);
        }
    }
    else {
        cm_input in;
        if (cm_input_get(args[0], &in) < 0) {
            return NULL;
        }
        if (parse_entry(in.data, in.len, fp, fplen, &e)) {
            rc = build_entry(st, &e, now, &out);
        }
        cm_input_release(&in);
    }
    if (rc < 0) {
        return NULL;
    }
    if (rc == 0) {
        Py_RETURN_NONE;
    }
    return out;
}

static PyMethodDef entry_methods[] = {
    {"write_entry", (PyCFunction)(void (*)(void))py_write_entry,
     METH_FASTCALL | METH_KEYWORDS,
     PyDoc_STR("write_entry($module, /, *, status, headers, body, created, "
               "ttl, grace=0.0, compute_ms=0.0, etag=None, tags=(), "
               "fingerprint=b'', compression=1, min_size=1024, level=3)\n"
               "--\n\n"
               "Encode one entry. etag=None computes a strong ETag from a "
               "BLAKE2b of the body.")},
    {"read_entry", (PyCFunction)(void (*)(void))py_read_entry, METH_FASTCALL,
     PyDoc_STR("read_entry($module, data, now, fingerprint=None, /)\n--\n\n"
               "Decode an entry; None for anything malformed, foreign, newer "
               "or of another key.")},
    {"body_etag", py_body_etag, METH_O,
     PyDoc_STR("body_etag($module, body, /)\n--\n\n"
               "The strong ETag write_entry stores for this body, quotes "
               "included.")},
    {NULL, NULL, 0, NULL},
};

int
cm_entry_exec(PyObject *module, cm_state *st)
{
    cm_entry_state *es = &st->entry;
    es->EntryType =
        (PyTypeObject *)PyType_FromModuleAndSpec(module, &Entry_spec, NULL);
    if (es->EntryType == NULL) {
        return -1;
    }
    if (PyModule_AddObjectRef(module, "Entry", (PyObject *)es->EntryType) <
        0) {
        return -1;
    }
    for (int i = 0; i < CM_ENTRY_N_COMMON; i++) {
        es->common[i] = PyBytes_FromString(common_strings[i]);
        if (es->common[i] == NULL) {
            return -1;
        }
    }
    if (PyModule_AddIntConstant(module, "COMPRESS_DISABLED",
                                COMPRESS_DISABLED) < 0 ||
        PyModule_AddIntConstant(module, "COMPRESS_SMART", COMPRESS_SMART) <
            0 ||
        PyModule_AddIntConstant(module, "COMPRESS_ALL", COMPRESS_ALL) < 0 ||
        PyModule_AddIntConstant(module, "FRESH", STATE_FRESH) < 0 ||
        PyModule_AddIntConstant(module, "STALE", STATE_STALE) < 0 ||
        PyModule_AddIntConstant(module, "EXPIRED", STATE_EXPIRED) < 0 ||
        PyModule_AddIntConstant(module, "ENTRY_FORMAT_VERSION",
                                CM_ENTRY_FORMAT_VERSION) < 0 ||
        PyModule_AddIntConstant(module, "ENTRY_MAX_BODY",
                                (long)CM_ENTRY_MAX_BODY) < 0) {
        return -1;
    }
    return PyModule_AddFunctions(module, entry_methods);
}

int
cm_entry_traverse(cm_state *st, visitproc visit, void *arg)
{
    Py_VISIT(st->entry.EntryType);
    for (int i = 0; i < CM_ENTRY_N_COMMON; i++) {
        Py_VISIT(st->entry.common[i]);
    }
    return 0;
}

void
cm_entry_clear(cm_state *st)
{
    Py_CLEAR(st->entry.EntryType);
    for (int i = 0; i < CM_ENTRY_N_COMMON; i++) {
        Py_CLEAR(st->entry.common[i]);
    }
}
