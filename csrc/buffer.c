#include "buffer.h"

int
cm_buf_init(cm_buf *b, Py_ssize_t initial_cap)
{
    if (initial_cap < 16) {
        initial_cap = 16;
    }
    b->bytes = PyBytes_FromStringAndSize(NULL, initial_cap);
    if (b->bytes == NULL) {
        b->data = NULL;
        b->len = b->cap = 0;
        return -1;
    }
    b->data = PyBytes_AS_STRING(b->bytes);
    b->len = 0;
    b->cap = initial_cap;
    return 0;
}

int
cm_buf_grow(cm_buf *b, Py_ssize_t extra)
{
    if (extra > PY_SSIZE_T_MAX - b->len) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t need = b->len + extra;
    Py_ssize_t cap = b->cap;
    while (cap < need) {
        cap = cap > PY_SSIZE_T_MAX / 2 ? need : cap * 2;
    }
    if (_PyBytes_Resize(&b->bytes, cap) < 0) {
        /* _PyBytes_Resize freed the object and set MemoryError */
        b->data = NULL;
        b->len = b->cap = 0;
        return -1;
    }
    b->data = PyBytes_AS_STRING(b->bytes);
    b->cap = cap;
    return 0;
}

PyObject *
cm_buf_finish(cm_buf *b)
{
    PyObject *out = b->bytes;
    b->bytes = NULL;
    b->data = NULL;
    if (out != NULL && b->len != b->cap && _PyBytes_Resize(&out, b->len) < 0) {
        out = NULL;
    }
    b->len = b->cap = 0;
    return out;
}

int
cm_input_get(PyObject *o, cm_input *in)
{
    in->copy = NULL;
    if (PyObject_GetBuffer(o, &in->view, PyBUF_SIMPLE) == 0) {
        in->data = (const char *)in->view.buf;
        in->len = in->view.len;
        return 0;
    }
    /* PyBUF_SIMPLE is refused by a strided or indirect exporter only with
     * BufferError; ask again for its layout and copy it */
    if (!PyErr_ExceptionMatches(PyExc_BufferError)) {
        return -1;
    }
    PyErr_Clear();
    if (PyObject_GetBuffer(o, &in->view, PyBUF_FULL_RO) < 0) {
        return -1;
    }
    Py_ssize_t len = in->view.len;
    in->copy = PyMem_Malloc(len > 0 ? (size_t)len : 1);
    if (in->copy == NULL) {
        PyBuffer_Release(&in->view);
        PyErr_NoMemory();
        return -1;
    }
    int rc = PyBuffer_ToContiguous(in->copy, &in->view, len, 'C');
    PyBuffer_Release(&in->view);
    if (rc < 0) {
        PyMem_Free(in->copy);
        in->copy = NULL;
        return -1;
    }
    in->data = in->copy;
    in->len = len;
    return 0;
}

void
cm_input_release(cm_input *in)
{
    if (in->copy != NULL) {
        PyMem_Free(in->copy);
        in->copy = NULL;
    }
    else {
        PyBuffer_Release(&in->view);
    }
    in->data = NULL;
    in->len = 0;
}

void
cm_buf_free(cm_buf *b)
{
    Py_CLEAR(b->bytes);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* ---- writers ---- */

static inline int
put_byte(cm_buf *b, unsigned char c)
{
    if (cm_buf_reserve(b, 1) < 0) {
        return -1;
    }
    b->data[b->len++] = (char)c;
    return 0;
}

static inline int
put_u8(cm_buf *b, unsigned char tag, uint8_t v)
{
    if (cm_buf_reserve(b, 2) < 0) {
        return -1;
    }
    b->data[b->len] = (char)tag;
    b->data[b->len + 1] = (char)v;
    b->len += 2;
    return 0;
}

static inline int
put_u16(cm_buf *b, unsigned char tag, uint16_t v)
{
    if (cm_buf_reserve(b, 3) < 0) {
        return -1;
    }
    b->data[b->len] = (char)tag;
    cm_store_be16(b->data + b->len + 1, v);
    b->len += 3;
    return 0;
}

static inline int
put_u32(cm_buf *b, unsigned char tag, uint32_t v)
{
    if (cm_buf_reserve(b, 5) < 0) {
        return -1;
    }
    b->data[b->len] = (char)tag;
    cm_store_be32(b->data + b->len + 1, v);
    b->len += 5;
    return 0;
}

static inline int
put_u64(cm_buf *b, unsigned char tag, uint64_t v)
{
    if (cm_buf_reserve(b, 9) < 0) {
        return -1;
    }
    b->data[b->len] = (char)tag;
    cm_store_be64(b->data + b->len + 1, v);
    b->len += 9;
    return 0;
}

int
cm_mp_nil(cm_buf *b)
{
    return put_byte(b, 0xc0);
}

int
cm_mp_bool(cm_buf *b, int v)
{
    return put_byte(b, v ? 0xc3 : 0xc2);
}

int
cm_mp_uint(cm_buf *b, uint64_t v)
{
    if (v < 128) {
        return put_byte(b, (unsigned char)v);
    }
    if (v <= UINT8_MAX) {
        return put_u8(b, 0xcc, (uint8_t)v);
    }
    if (v <= UINT16_MAX) {
        return put_u16(b, 0xcd, (uint16_t)v);
    }
    if (v <= UINT32_MAX) {
        return put_u32(b, 0xce, (uint32_t)v);
    }
    return put_u64(b, 0xcf, v);
}

int
cm_mp_int(cm_buf *b, int64_t v)
{
    if (v >= 0) {
        return cm_mp_uint(b, (uint64_t)v);
    }
    if (v >= -32) {
        return put_byte(b, (unsigned char)(0xe0 | (v + 32)));
    }
    if (v >= INT8_MIN) {
        return put_u8(b, 0xd0, (uint8_t)(int8_t)v);
    }
    if (v >= INT16_MIN) {
        return put_u16(b, 0xd1, (uint16_t)(int16_t)v);
    }
    if (v >= INT32_MIN) {
        return put_u32(b, 0xd2, (uint32_t)(int32_t)v);
    }
    return put_u64(b, 0xd3, (uint64_t)v);
}

int
cm_mp_float64(cm_buf *b, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    return put_u64(b, 0xcb, bits);
}

int
cm_mp_str_header(cm_buf *b, size_t len)
{
    if (len < 32) {
        return put_byte(b, (unsigned char)(0xa0 | len));
    }
    if (len <= UINT8_MAX) {
        return put_u8(b, 0xd9, (uint8_t)len);
    }
    if (len <= UINT16_MAX) {
        return put_u16(b, 0xda, (uint16_t)len);
    }
    if (len <= UINT32_MAX) {
        return put_u32(b, 0xdb, (uint32_t)len);
    }
    PyErr_SetString(PyExc_ValueError, "str is too large for MessagePack");
    return -1;
}

int
cm_mp_bin_header(cm_buf *b, size_t len)
{
    if (len <= UINT8_MAX) {
        return put_u8(b, 0xc4, (uint8_t)len);
    }
    if (len <= UINT16_MAX) {
        return put_u16(b, 0xc5, (uint16_t)len);
    }
    if (len <= UINT32_MAX) {
        return put_u32(b, 0xc6, (uint32_t)len);
    }
    PyErr_SetString(PyExc_ValueError, "bytes are too large for MessagePack");
    return -1;
}

int
cm_mp_array_header(cm_buf *b, size_t len)
{
    if (len < 16) {
        return put_byte(b, (unsigned char)(0x90 | len));
    }
    if (len <= UINT16_MAX) {
        return put_u16(b, 0xdc, (uint16_t)len);
    }
    if (len <= UINT32_MAX) {
        return put_u32(b, 0xdd, (uint32_t)len);
    }
    PyErr_SetString(PyExc_ValueError, "array is too large for MessagePack");
    return -1;
}

int
cm_mp_map_header(cm_buf *b, size_t len)
{
    if (len < 16) {
        return put_byte(b, (unsigned char)(0x80 | len));
    }
    if (len <= UINT16_MAX) {
        return put_u16(b, 0xde, (uint16_t)len);
    }
    if (len <= UINT32_MAX) {
        return put_u32(b, 0xdf, (uint32_t)len);
    }
    PyErr_SetString(PyExc_ValueError, "map is too large for MessagePack");
    return -1;
}

int
cm_mp_ext_header(cm_buf *b, int8_t type, size_t len)
{
    unsigned char tag;
    switch (len) {
    case 1: tag = 0xd4; break;
    case 2: tag = 0xd5; break;
    case 4: tag = 0xd6; break;
    case 8: tag = 0xd7; break;
    case 16: tag = 0xd8; break;
    default:
        if (len <= UINT8_MAX) {
            if (put_u8(b, 0xc7, (uint8_t)len) < 0) {
                return -1;
            }
        }
        else if (len <= UINT16_MAX) {
            if (put_u16(b, 0xc8, (uint16_t)len) < 0) {
                return -1;
            }
        }
        else if (len <= UINT32_MAX) {
            if (put_u32(b, 0xc9, (uint32_t)len) < 0) {
                return -1;
            }
        }
        else {
            PyErr_SetString(PyExc_ValueError,
                            "ext is too large for MessagePack");
            return -1;
        }
        return put_byte(b, (unsigned char)type);
    }
    return put_u8(b, tag, (uint8_t)type);
}

int
cm_mp_str(cm_buf *b, const char *s, Py_ssize_t len)
{
    if (cm_mp_str_header(b, (size_t)len) < 0) {
        return -1;
    }
    return cm_buf_put(b, s, len);
}

int
cm_mp_bin(cm_buf *b, const void *s, Py_ssize_t len)
{
    if (cm_mp_bin_header(b, (size_t)len) < 0) {
        return -1;
    }
    return cm_buf_put(b, s, len);
}

/* ---- reader ---- */

static inline uint64_t
load_be(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

/* Take n bytes of fixed-size header payload. */
#define NEED(n)                    \
    do {                           \
        if (r->end - r->p < (n)) { \
            return -1;             \
        }                          \
    } while (0)

static int
take_payload(cm_reader *r, cm_mp_item *it, uint64_t len)
{
    if (len > (uint64_t)(r->end - r->p)) {
        return -1;
    }
    it->ptr = (const char *)r->p;
    it->len = (Py_ssize_t)len;
    r->p += len;
    return 0;
}

static int
take_count(cm_reader *r, cm_mp_item *it, uint64_t count, int per_item)
{
    /* each element needs at least one byte: a larger count is a lie */
    if (count > (uint64_t)(r->end - r->p) / (uint64_t)per_item) {
        return -1;
    }
    it->u = count;
    return 0;
}

int
cm_mp_read(cm_reader *r, cm_mp_item *it)
{
    NEED(1);
    unsigned char c = *r->p++;
    if (c <= 0x7f) {
        it->kind = CM_MP_UINT;
        it->u = c;
        return 0;
    }
    if (c >= 0xe0) {
        it->kind = CM_MP_INT;
        it->i = (int8_t)c;
        return 0;
    }
    if ((c & 0xe0) == 0xa0) {
        it->kind = CM_MP_STR;
        return take_payload(r, it, c & 0x1f);
    }
    if ((c & 0xf0) == 0x90) {
        it->kind = CM_MP_ARRAY;
        return take_count(r, it, c & 0x0f, 1);
    }
    if ((c & 0xf0) == 0x80) {
        it->kind = CM_MP_MAP;
        return take_count(r, it, c & 0x0f, 2);
    }
    uint64_t n;
    switch (c) {
    case 0xc0: it->kind = CM_MP_NIL; return 0;
    case 0xc2:
    case 0xc3:
        it->kind = CM_MP_BOOL;
        it->u = c == 0xc3;
        return 0;
    case 0xc4:
    case 0xc5:
    case 0xc6: {
        int w = 1 << (c - 0xc4);
        NEED(w);
        n = load_be(r->p, w);
        r->p += w;
        it->kind = CM_MP_BIN;
        return take_payload(r, it, n);
    }
    case 0xc7:
    case 0xc8:
    case 0xc9: {
        int w = 1 << (c - 0xc7);
        NEED(w + 1);
        n = load_be(r->p, w);
        it->ext_type = (int8_t)r->p[w];
        r->p += w + 1;
        it->kind = CM_MP_EXT;
        return take_payload(r, it, n);
    }
    case 0xca: {
        NEED(4);
        uint32_t bits = (uint32_t)load_be(r->p, 4);
        float f;
        memcpy(&f, &bits, sizeof f);
        r->p += 4;
        it->kind = CM_MP_FLOAT;
        it->f = (double)f;
        return 0;
    }
    case 0xcb: {
        NEED(8);
        uint64_t bits = load_be(r->p, 8);
        memcpy(&it->f, &bits, sizeof it->f);
        r->p += 8;
        it->kind = CM_MP_FLOAT;
        return 0;
    }
    case 0xcc:
    case 0xcd:
    case 0xce:
    case 0xcf: {
        int w = 1 << (c - 0xcc);
        NEED(w);
        it->u = load_be(r->p, w);
        r->p += w;
        it->kind = CM_MP_UINT;
        return 0;
    }
    case 0xd0:
    case 0xd1:
    case 0xd2:
    case 0xd3: {
        int w = 1 << (c - 0xd0);
        NEED(w);
        uint64_t raw = load_be(r->p, w);
        r->p += w;
        int64_t v;
        switch (w) {
        case 1: v = (int8_t)raw; break;
        case 2: v = (int16_t)raw; break;
        case 4: v = (int32_t)raw; break;
        default: v = (int64_t)raw; break;
        }
        if (v >= 0) {
            it->kind = CM_MP_UINT;
            it->u = (uint64_t)v;
        }
        else {
            it->kind = CM_MP_INT;
            it->i = v;
        }
        return 0;
    }
    case 0xd4:
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8:
        NEED(1);
        it->ext_type = (int8_t)*r->p++;
        it->kind = CM_MP_EXT;
        return take_payload(r, it, (uint64_t)1 << (c - 0xd4));
    case 0xd9:
    case 0xda:
    case 0xdb: {
        int w = 1 << (c - 0xd9);
        NEED(w);
        n = load_be(r->p, w);
        r->p += w;
        it->kind = CM_MP_STR;
        return take_payload(r, it, n);
    }
    case 0xdc:
    case 0xdd: {
        int w = c == 0xdc ? 2 : 4;
        NEED(w);
        n = load_be(r->p, w);
        r->p += w;
        it->kind = CM_MP_ARRAY;
        return take_count(r, it, n, 1);
    }
    case 0xde:
    case 0xdf: {
        int w = c == 0xde ? 2 : 4;
        NEED(w);
        n = load_be(r->p, w);
        r->p += w;
        it->kind = CM_MP_MAP;
        return take_count(r, it, n, 2);
    }
    default: /* 0xc1, never used */ return -1;
    }
}

int
cm_mp_skip(cm_reader *r, int max_depth)
{
    cm_mp_item it;
    if (cm_mp_read(r, &it) < 0) {
        return -1;
    }
    if (it.kind != CM_MP_ARRAY && it.kind != CM_MP_MAP) {
        return 0;
    }
    if (max_depth <= 0) {
        return -1;
    }
    uint64_t n = it.kind == CM_MP_MAP ? it.u * 2 : it.u;
    for (uint64_t k = 0; k < n; k++) {
        if (cm_mp_skip(r, max_depth - 1) < 0) {
            return -1;
        }
    }
    return 0;
}
