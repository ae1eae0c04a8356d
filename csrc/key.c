/* Cache keys. A KeySpec is prepared once per route; build_key runs on every
 * request: it writes the key material into a cm_buf (buffer.h) that starts
 * in a stack array (a bytes object when large), hashes it with BLAKE2b to 24
 * bytes and returns (prefix + b":{" + 32 hex of the first 16 bytes + b"}",
 * last 8 bytes). The braces are a Redis Cluster hash tag: key + b":lock"
 * shares the slot.
 *
 * Key material, format version 1 (the twin is _pure/keys.py). Every part is
 * tagged and length-prefixed, so the bytes parse back in exactly one way and
 * two different inputs never encode the same:
 *
 *   material    = "cmk" VERSION spec request
 *   spec        = F('p', prefix) F('r', route) query_decl header_decl
 *                 cookie_decl                         (precomputed, KeySpec)
 *   query_decl  = '*'                                 query_names is None
 *               | 'q' varint(n) F('n', name)*n        declared, spec order
 *   header_decl = 'h' varint(n) F('n', lower-case name)*n
 *   cookie_decl = 'c' varint(n) F('n', name)*n
 *   request     = F('M', method) F('U', path) query headers cookies
 *   query       = (F('K', name) F('V', value))* '.'   None: request order
 *               | per declared name: F('V', value)* '.'   request order
 *   headers     = per spec header name: F('H', value)* '.'  ASGI order
 *   cookies     = per spec cookie name: F('C', value) | '-'   present/absent
 *   F(tag, s)   = tag varint(len(s)) s;  varint = unsigned LEB128
 *
 * str is UTF-8; a str with lone surrogates (which strict UTF-8 refuses) is
 * encoded with surrogatepass: still injective, never raises. Request header
 * names match spec names ASCII-case-insensitively. headers and cookies are
 * not looked at when the spec names none.
 */
#include "state.h"

#include "args.h"
#include "blake2b.h"

typedef struct {
    PyObject_HEAD
    PyObject *prefix;       /* str */
    PyObject *route;        /* str */
    PyObject *query_names;  /* tuple of str, or None */
    PyObject *header_names; /* tuple of str, ASCII lower-cased */
    PyObject *header_bytes; /* tuple of bytes: the same, UTF-8 */
    PyObject *cookie_names; /* tuple of str */
    PyObject *prefix_bytes; /* bytes: prefix in UTF-8 */
    PyObject *spec_bytes;   /* bytes: the precomputed spec part */
} KeySpecObject;

/* ---- the material: written into a cm_buf (buffer.h) that starts in a
 * stack array ---- */

#define KBUF_STACK 2048

static inline void
kb_varint_unchecked(cm_buf *b, uint64_t v)
{
    while (v >= 0x80) {
        b->data[b->len++] = (char)((v & 0x7F) | 0x80);
        v >>= 7;
    }
    b->data[b->len++] = (char)v;
}

static int
kb_tag_count(cm_buf *b, char tag, size_t n)
{
    if (cm_buf_reserve(b, 11) < 0) {
        return -1;
    }
    b->data[b->len++] = tag;
    kb_varint_unchecked(b, (uint64_t)n);
    return 0;
}

static int
kb_field(cm_buf *b, char tag, const char *s, size_t n)
{
    if (n > (size_t)PY_SSIZE_T_MAX - 11) {
        PyErr_NoMemory();
        return -1;
    }
    if (cm_buf_reserve(b, 11 + (Py_ssize_t)n) < 0) {
        return -1;
    }
    b->data[b->len++] = tag;
    kb_varint_unchecked(b, (uint64_t)n);
    memcpy(b->data + b->len, s, n);
    b->len += (Py_ssize_t)n;
    return 0;
}

/* A str field: UTF-8 (cached in the str by CPython), or surrogatepass when
 * the str holds lone surrogates. s must be a str. */
static int
kb_str(cm_buf *b, char tag, PyObject *s)
{
    Py_ssize_t n = 0;
    const char *p = PyUnicode_AsUTF8AndSize(s, &n);
    if (CM_LIKELY(p != NULL)) {
        return kb_field(b, tag, p, (size_t)n);
    }
    if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {
        return -1;
    }
    PyErr_Clear();
    PyObject *enc = PyUnicode_AsEncodedString(s, "utf-8", "surrogatepass");
    if (enc == NULL) {
        return -1;
    }
    int rc = kb_field(b, tag, PyBytes_AS_STRING(enc),
                      (size_t)PyBytes_GET_SIZE(enc));
    Py_DECREF(enc);
    return rc;
}

static PyObject *
utf8_bytes(PyObject *s)
{
    return PyUnicode_AsEncodedString(s, "utf-8", "surrogatepass");
}

static int
check_str(PyObject *o, const char *what)
{
    if (CM_LIKELY(PyUnicode_Check(o))) {
        return 0;
    }
    PyErr_Format(PyExc_TypeError, "%s must be str, not %.100s", what,
                 Py_TYPE(o)->tp_name);
    return -1;
}

/* Borrowed (name, value) from a 2-tuple or 2-list. */
static int
get_pair(PyObject *item, PyObject **a, PyObject **b, const char *what)
{
    if (PyTuple_Check(item) && PyTuple_GET_SIZE(item) == 2) {
        *a = PyTuple_GET_ITEM(item, 0);
        *b = PyTuple_GET_ITEM(item, 1);
        return 0;
    }
    if (PyList_Check(item) && PyList_GET_SIZE(item) == 2) {
        *a = PyList_GET_ITEM(item, 0);
        *b = PyList_GET_ITEM(item, 1);
        return 0;
    }
    PyErr_Format(PyExc_TypeError, "%s items must be (name, value) pairs",
                 what);
    return -1;
}

static inline int
str_eq(PyObject *a, PyObject *b)
{
    if (a == b) {
        return 1;
    }
    if (PyUnicode_GET_LENGTH(a) != PyUnicode_GET_LENGTH(b)) {
        return 0;
    }
    return PyUnicode_Compare(a, b) == 0; /* both str: cannot fail */
}

static inline int
header_name_eq(PyObject *name, PyObject *lower)
{
    Py_ssize_t n = PyBytes_GET_SIZE(name);
    if (n != PyBytes_GET_SIZE(lower)) {
        return 0;
    }
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(name);
    const unsigned char *q = (const unsigned char *)PyBytes_AS_STRING(lower);
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        if (c >= 'A' && c <= 'Z') {
            c = (unsigned char)(c + ('a' - 'A'));
        }
        if (c != q[i]) {
            return 0;
        }
    }
    return 1;
}

/* ---- the material ---- */

static int
encode_query(cm_buf *b, KeySpecObject *spec, PyObject *query)
{
    int rc = -1;
    PyObject *seq = PySequence_Fast(query, "query must be a sequence");
    if (seq == NULL) {
        return -1;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    int all = spec->query_names == Py_None;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *name = NULL, *value = NULL;
        if (get_pair(items[i], &name, &value, "query") < 0 ||
            check_str(name, "query names") < 0 ||
            check_str(value, "query values") < 0) {
            goto done;
        }
        if (all && (kb_str(b, 'K', name) < 0 || kb_str(b, 'V', value) < 0)) {
            goto done;
        }
    }
    if (all) {
        rc = cm_buf_put_byte(b, '.');
        goto done;
    }
    Py_ssize_t nnames = PyTuple_GET_SIZE(spec->query_names);
    for (Py_ssize_t k = 0; k < nnames; k++) {
        PyObject *wanted = PyTuple_GET_ITEM(spec->query_names, k);
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *name = NULL, *value = NULL;
            (void)get_pair(items[i], &name, &value, "query"); /* checked */
            if (str_eq(name, wanted) && kb_str(b, 'V', value) < 0) {
                goto done;
            }
        }
        if (cm_buf_put_byte(b, '.') < 0) {
            goto done;
        }
    }
    rc = 0;
done:
    Py_DECREF(seq);
    return rc;
}

static int
encode_headers(cm_buf *b, KeySpecObject *spec, PyObject *headers)
{
    Py_ssize_t nnames = PyTuple_GET_SIZE(spec->header_bytes);
    if (nnames == 0) {
        return 0;
    }
    int rc = -1;
    PyObject *seq = PySequence_Fast(headers, "headers must be a sequence");
    if (seq == NULL) {
        return -1;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *name = NULL, *value = NULL;
        if (get_pair(items[i], &name, &value, "headers") < 0) {
            goto done;
        }
        if (!PyBytes_Check(name) || !PyBytes_Check(value)) {
            PyErr_SetString(PyExc_TypeError,
                            "headers items must be (bytes, bytes) pairs");
            goto done;
        }
    }
    for (Py_ssize_t k = 0; k < nnames; k++) {
        PyObject *wanted = PyTuple_GET_ITEM(spec->header_bytes, k);
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *name = NULL, *value = NULL;
            (void)get_pair(items[i], &name, &value, "headers"); /* checked */
            if (header_name_eq(name, wanted) &&
                kb_field(b, 'H', PyBytes_AS_STRING(value),
                         (size_t)PyBytes_GET_SIZE(value)) < 0) {
                goto done;
            }
        }
        if (cm_buf_put_byte(b, '.') < 0) {
            goto done;
        }
    }
    rc = 0;
done:
    Py_DECREF(seq);
    return rc;
}

/* Runs last: a non-dict mapping may run Python code. */
static int
encode_cookies(cm_buf *b, KeySpecObject *spec, PyObject *cookies)
{
    Py_ssize_t nnames = PyTuple_GET_SIZE(spec->cookie_names);
    for (Py_ssize_t k = 0; k < nnames; k++) {
        PyObject *name = PyTuple_GET_ITEM(spec->cookie_names, k);
        PyObject *value = NULL;
        if (cookies == NULL || cookies == Py_None) {
            if (cm_buf_put_byte(b, '-') < 0) {
                return -1;
            }
            continue;
        }
        if (PyDict_CheckExact(cookies)) {
            value = PyDict_GetItemWithError(cookies, name);
            if (value == NULL && PyErr_Occurred()) {
                return -1;
            }
            Py_XINCREF(value);
        }
        else {
            value = PyObject_GetItem(cookies, name);
            if (value == NULL) {
                if (!PyErr_ExceptionMatches(PyExc_KeyError)) {
                    return -1;
                }
                PyErr_Clear();
            }
        }
        if (value == NULL) {
            if (cm_buf_put_byte(b, '-') < 0) {
                return -1;
            }
            continue;
        }
        int rc = check_str(value, "cookie values");
        if (rc == 0) {
            rc = kb_str(b, 'C', value);
        }
        Py_DECREF(value);
        if (rc < 0) {
            return -1;
        }
    }
    return 0;
}

/* Parses (spec, method, path, query, headers[, cookies]) and writes the
 * material into b. The query and header items stay borrowed from their
 * sequences: from PySequence_Fast to the end of encode_headers nothing runs
 * Python code (UTF-8 of str, copies into b). The cookies, which may run
 * Python code (__hash__ / __eq__ of names, a mapping's __getitem__), come
 * last and hold what they read. */
static const char *const material_names[] = {"spec",  "method",  "path",
                                             "query", "headers", "cookies"};

static KeySpecObject *
encode_material(PyObject *module, cm_buf *b, const char *fname,
                PyObject *const *argv, Py_ssize_t nargs)
{
    cm_state *st = cm_get_state(module);
    const cm_args spec_args = {fname, material_names, 6, 6, 6, 5};
    PyObject *args[6];
    if (cm_args_parse(&spec_args, argv, nargs, NULL, args) < 0) {
        return NULL;
    }
    if (!Py_IS_TYPE(args[0], st->key.KeySpecType)) {
        PyErr_Format(PyExc_TypeError, "spec must be KeySpec, not %.100s",
                     Py_TYPE(args[0])->tp_name);
        return NULL;
    }
    KeySpecObject *spec = (KeySpecObject *)args[0];
    if (check_str(args[1], "method") < 0 || check_str(args[2], "path") < 0) {
        return NULL;
    }
    if (cm_buf_put(b, PyBytes_AS_STRING(spec->spec_bytes),
                   PyBytes_GET_SIZE(spec->spec_bytes)) < 0) {
        return NULL;
    }
    if (kb_str(b, 'M', args[1]) < 0 || kb_str(b, 'U', args[2]) < 0 ||
        encode_query(b, spec, args[3]) < 0 ||
        encode_headers(b, spec, args[4]) < 0 ||
        encode_cookies(b, spec, args[5]) < 0) {
        return NULL;
    }
    return spec;
}

static PyObject *
py_key_material(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    char stack[KBUF_STACK];
    cm_buf b;
    cm_buf_init_array(&b, stack, (Py_ssize_t)sizeof stack, 0);
    if (encode_material(module, &b, "key_material", args, nargs) == NULL) {
        cm_buf_free(&b);
        return NULL;
    }
    return cm_buf_finish(&b);
}

static PyObject *
py_build_key(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    static const char hex[] = "0123456789abcdef";
    char stack[KBUF_STACK];
    cm_buf b;
    cm_buf_init_array(&b, stack, (Py_ssize_t)sizeof stack, 0);
    uint8_t digest[CM_KEY_DIGEST_BYTES];
    PyObject *key = NULL, *fp = NULL, *result = NULL;

    KeySpecObject *spec =
        encode_material(module, &b, "build_key", args, nargs);
    if (spec == NULL) {
        goto done;
    }
    (void)cm_blake2b(digest, sizeof digest, NULL, 0, b.data, (size_t)b.len);
    Py_ssize_t plen = PyBytes_GET_SIZE(spec->prefix_bytes);
    key = PyBytes_FromStringAndSize(NULL, plen + 3 + 2 * CM_KEY_HASH_BYTES);
    if (key == NULL) {
        goto done;
    }
    char *p = PyBytes_AS_STRING(key);
    memcpy(p, PyBytes_AS_STRING(spec->prefix_bytes), (size_t)plen);
    p += plen;
    *p++ = ':';
    *p++ = '{';
    for (int i = 0; i < CM_KEY_HASH_BYTES; i++) {
        *p++ = hex[digest[i] >> 4];
        *p++ = hex[digest[i] & 0xF];
    }
    *p = '}';
    fp = PyBytes_FromStringAndSize((const char *)digest + CM_KEY_HASH_BYTES,
                                   CM_KEY_FINGERPRINT_BYTES);
    if (fp == NULL) {
        goto done;
    }
    result = PyTuple_New(2);
    if (result == NULL) {
        goto done;
    }
    PyTuple_SET_ITEM(result, 0, key);
    PyTuple_SET_ITEM(result, 1, fp);
    key = fp = NULL;
done:
    cm_buf_free(&b);
    Py_XDECREF(key);
    Py_XDECREF(fp);
    return result;
}

/* ---- KeySpec ---- */

/* A tuple of str from a sequence (not a str or bytes itself). */
static PyObject *
names_tuple(PyObject *seq, const char *what)
{
    PyObject *tuple = NULL;
    if (PyUnicode_Check(seq) || PyBytes_Check(seq) || PyByteArray_Check(seq) ||
        !PySequence_Check(seq)) {
        PyErr_Format(PyExc_TypeError,
                     "%s must be a sequence of str, not %.100s", what,
                     Py_TYPE(seq)->tp_name);
        return NULL;
    }
    tuple = PySequence_Tuple(seq);
    if (tuple == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(tuple); i++) {
        if (check_str(PyTuple_GET_ITEM(tuple, i), what) < 0) {
            Py_DECREF(tuple);
            return NULL;
        }
    }
    return tuple;
}

static int
kb_names(cm_buf *b, char tag, PyObject *tuple)
{
    Py_ssize_t n = PyTuple_GET_SIZE(tuple);
    if (kb_tag_count(b, tag, (size_t)n) < 0) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyTuple_GET_ITEM(tuple, i);
        int rc = PyBytes_Check(item)
                     ? kb_field(b, 'n', PyBytes_AS_STRING(item),
                                (size_t)PyBytes_GET_SIZE(item))
                     : kb_str(b, 'n', item);
        if (rc < 0) {
            return -1;
        }
    }
    return 0;
}

static int
keyspec_traverse(PyObject *op, visitproc visit, void *arg)
{
    KeySpecObject *self = (KeySpecObject *)op;
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(self->prefix);
    Py_VISIT(self->route);
    Py_VISIT(self->query_names);
    Py_VISIT(self->header_names);
    Py_VISIT(self->header_bytes);
    Py_VISIT(self->cookie_names);
    Py_VISIT(self->prefix_bytes);
    Py_VISIT(self->spec_bytes);
    return 0;
}

static int
keyspec_clear(PyObject *op)
{
    KeySpecObject *self = (KeySpecObject *)op;
    Py_CLEAR(self->prefix);
    Py_CLEAR(self->route);
    Py_CLEAR(self->query_names);
    Py_CLEAR(self->header_names);
    Py_CLEAR(self->header_bytes);
    Py_CLEAR(self->cookie_names);
    Py_CLEAR(self->prefix_bytes);
    Py_CLEAR(self->spec_bytes);
    return 0;
}

static void
keyspec_dealloc(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    (void)keyspec_clear(op);
    tp->tp_free(op);
    Py_DECREF(tp);
}

/* Header names: UTF-8 (surrogatepass), ASCII lower-cased; both forms. */
static int
lower_header_names(PyObject *names, PyObject **as_str, PyObject **as_bytes)
{
    Py_ssize_t n = PyTuple_GET_SIZE(names);
    PyObject *strs = PyTuple_New(n);
    PyObject *bytes = PyTuple_New(n);
    if (strs == NULL || bytes == NULL) {
        goto error;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *enc = utf8_bytes(PyTuple_GET_ITEM(names, i));
        if (enc == NULL) {
            goto error;
        }
        /* a new bytes to lower-case: encoders may hand out shared ones */
        Py_ssize_t len = PyBytes_GET_SIZE(enc);
        PyObject *b = PyBytes_FromStringAndSize(NULL, len);
        if (b == NULL) {
            Py_DECREF(enc);
            goto error;
        }
        PyTuple_SET_ITEM(bytes, i, b);
        const char *src = PyBytes_AS_STRING(enc);
        char *p = PyBytes_AS_STRING(b);
        for (Py_ssize_t j = 0; j < len; j++) {
            char c = src[j];
            p[j] = (c >= 'A' && c <= 'Z') ? (char)(c + ('a' - 'A')) : c;
        }
        Py_DECREF(enc);
        PyObject *s =
            PyUnicode_DecodeUTF8(p, PyBytes_GET_SIZE(b), "surrogatepass");
        if (s == NULL) {
            goto error;
        }
        PyTuple_SET_ITEM(strs, i, s);
    }
    *as_str = strs;
    *as_bytes = bytes;
    return 0;
error:
    Py_XDECREF(strs);
    Py_XDECREF(bytes);
    return -1;
}

static PyObject *
keyspec_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static const char *const names[] = {"prefix", "route", "query_names",
                                        "header_names", "cookie_names"};
    static const cm_args spec_args = {"KeySpec", names, 5, 0, 5, 3};
    PyObject *argv[5];
    PyObject *headers_raw = NULL;
    KeySpecObject *self = NULL;
    char stack[KBUF_STACK];
    cm_buf b;
    cm_buf_init_array(&b, stack, (Py_ssize_t)sizeof stack, 0);

    if (cm_args_parse_tuple(&spec_args, args, kwargs, argv) < 0 ||
        check_str(argv[0], "KeySpec prefix") < 0 ||
        check_str(argv[1], "KeySpec route") < 0) {
        return NULL;
    }
    PyObject *prefix = argv[0], *route = argv[1], *query_names = argv[2];
    PyObject *header_names = argv[3], *cookie_names = argv[4];
    if (PyUnicode_GET_LENGTH(prefix) == 0) {
        PyErr_SetString(PyExc_ValueError, "KeySpec prefix must not be empty");
        return NULL;
    }
    Py_ssize_t len = PyUnicode_GET_LENGTH(prefix);
    if (PyUnicode_FindChar(prefix, '{', 0, len, 1) != -1 ||
        PyUnicode_FindChar(prefix, '}', 0, len, 1) != -1) {
        PyErr_Format(PyExc_ValueError,
                     "KeySpec prefix must not contain '{' or '}' (build_key "
                     "adds the Redis Cluster hash tag): %R",
                     prefix);
        return NULL;
    }
    self = (KeySpecObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->prefix = Py_NewRef(prefix);
    self->route = Py_NewRef(route);
    if (query_names == Py_None) {
        self->query_names = Py_NewRef(Py_None);
    }
    else {
        self->query_names = names_tuple(query_names, "query_names");
        if (self->query_names == NULL) {
            goto error;
        }
    }
    if (header_names != NULL) {
        headers_raw = names_tuple(header_names, "header_names");
    }
    else {
        headers_raw = PyTuple_New(0);
    }
    if (headers_raw == NULL ||
        lower_header_names(headers_raw, &self->header_names,
                           &self->header_bytes) < 0) {
        goto error;
    }
    self->cookie_names = cookie_names != NULL
                             ? names_tuple(cookie_names, "cookie_names")
                             : PyTuple_New(0);
    if (self->cookie_names == NULL) {
        goto error;
    }
    self->prefix_bytes = utf8_bytes(prefix);
    if (self->prefix_bytes == NULL) {
        goto error;
    }

    const char magic[4] = {'c', 'm', 'k', CM_KEY_FORMAT_VERSION};
    if (cm_buf_put(&b, magic, sizeof magic) < 0 ||
        kb_str(&b, 'p', prefix) < 0 || kb_str(&b, 'r', route) < 0) {
        goto error;
    }
    if (self->query_names == Py_None) {
        if (cm_buf_put_byte(&b, '*') < 0) {
            goto error;
        }
    }
    else if (kb_names(&b, 'q', self->query_names) < 0) {
        goto error;
    }
    if (kb_names(&b, 'h', self->header_bytes) < 0 ||
        kb_names(&b, 'c', self->cookie_names) < 0) {
        goto error;
    }
    self->spec_bytes = cm_buf_finish(&b);
    if (self->spec_bytes == NULL) {
        goto error;
    }
    Py_DECREF(headers_raw);
    return (PyObject *)self;
error:
    cm_buf_free(&b);
    Py_XDECREF(headers_raw);
    Py_DECREF(self);
    return NULL;
}

static PyObject *
keyspec_repr(PyObject *op)
{
    KeySpecObject *self = (KeySpecObject *)op;
    return PyUnicode_FromFormat(
        "KeySpec(prefix=%R, route=%R, query_names=%R, "
        "header_names=%R, cookie_names=%R)",
        self->prefix, self->route, self->query_names, self->header_names,
        self->cookie_names);
}

#define GETTER(field)                                           \
    static PyObject *keyspec_get_##field(PyObject *op, void *c) \
    {                                                           \
        (void)c;                                                \
        return Py_NewRef(((KeySpecObject *)op)->field);         \
    }

GETTER(prefix)
GETTER(route)
GETTER(query_names)
GETTER(header_names)
GETTER(cookie_names)

static PyGetSetDef keyspec_getset[] = {
    {"prefix", keyspec_get_prefix, NULL, NULL, NULL},
    {"route", keyspec_get_route, NULL, NULL, NULL},
    {"query_names", keyspec_get_query_names, NULL, NULL, NULL},
    {"header_names", keyspec_get_header_names, NULL,
     PyDoc_STR("The header names, ASCII lower-cased."), NULL},
    {"cookie_names", keyspec_get_cookie_names, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(
    keyspec_doc,
    "KeySpec(prefix, route, query_names, header_names=(), cookie_names=())\n"
    "--\n\n"
    "What identifies a response of one endpoint, prepared once per route.\n\n"
    "query_names: the declared query parameter names (aliases) in a fixed "
    "order, or None to\nkey on every query item in request order (the "
    "endpoint reads the raw request).\nheader_names: lower-case header names "
    "whose values enter the key (declared Header()\nparams and Vary). "
    "cookie_names: declared Cookie() params and varied cookies.");

static PyType_Slot keyspec_slots[] = {
    {Py_tp_new, keyspec_new},           {Py_tp_dealloc, keyspec_dealloc},
    {Py_tp_traverse, keyspec_traverse}, {Py_tp_clear, keyspec_clear},
    {Py_tp_repr, keyspec_repr},         {Py_tp_getset, keyspec_getset},
    {Py_tp_doc, (void *)keyspec_doc},   {0, NULL},
};

static PyType_Spec keyspec_spec = {
    .name = "fastapi_cachemate._native.KeySpec",
    .basicsize = sizeof(KeySpecObject),
    .flags =
        Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = keyspec_slots,
};

static PyMethodDef key_methods[] = {
    {"build_key", (PyCFunction)(void (*)(void))py_build_key, METH_FASTCALL,
     PyDoc_STR("build_key($module, spec, method, path, query, headers, "
               "cookies=None, /)\n--\n\n"
               "Return (key, fingerprint): key is b\"<prefix>:{<32 hex>}\", "
               "fingerprint 8 bytes.")},
    {"key_material", (PyCFunction)(void (*)(void))py_key_material,
     METH_FASTCALL,
     PyDoc_STR("key_material($module, spec, method, path, query, headers, "
               "cookies=None, /)\n--\n\n"
               "The canonical encoding that build_key hashes (format: "
               "csrc/key.c, docs/design.md).")},
    {NULL, NULL, 0, NULL},
};

int
cm_key_exec(PyObject *module, cm_state *st)
{
    st->key.KeySpecType =
        (PyTypeObject *)PyType_FromModuleAndSpec(module, &keyspec_spec, NULL);
    if (st->key.KeySpecType == NULL) {
        return -1;
    }
    if (PyModule_AddType(module, st->key.KeySpecType) < 0) {
        return -1;
    }
    return PyModule_AddFunctions(module, key_methods);
}

int
cm_key_traverse(cm_state *st, visitproc visit, void *arg)
{
    Py_VISIT(st->key.KeySpecType);
    return 0;
}

void
cm_key_clear(cm_state *st)
{
    Py_CLEAR(st->key.KeySpecType);
}
