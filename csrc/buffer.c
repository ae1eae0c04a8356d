#include "buffer.h"

int
cm_buf_init(cm_buf *b, Py_ssize_t initial_cap)
{
    if (initial_cap < 16) {
        initial_cap = 16;
    }
    b->len = 0;
    b->hint = 0;
    b->bytes = PyBytes_FromStringAndSize(NULL, initial_cap);
    if (b->bytes == NULL) {
        b->data = NULL;
        b->cap = 0;
        return -1;
    }
    b->data = PyBytes_AS_STRING(b->bytes);
    b->cap = initial_cap;
    return 0;
}

int
cm_buf_grow(cm_buf *b, Py_ssize_t extra)
{
    if (extra > PY_SSIZE_T_MAX / 2 - b->len) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t need = b->len + extra;
    Py_ssize_t cap = b->cap * 2;
    if (b->bytes == NULL && cap < b->hint) {
        cap = b->hint;
    }
    if (cap < need) {
        cap = need;
    }
    if (b->bytes == NULL) {
        /* leave the caller's array */
        PyObject *bytes = PyBytes_FromStringAndSize(NULL, cap);
        if (bytes == NULL) {
            return -1;
        }
        memcpy(PyBytes_AS_STRING(bytes), b->data, (size_t)b->len);
        b->bytes = bytes;
    }
    else if (_PyBytes_Resize(&b->bytes, cap) < 0) {
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
    if (out == NULL) {
        out = PyBytes_FromStringAndSize(b->data, b->len);
    }
    else if (b->len != b->cap && _PyBytes_Resize(&out, b->len) < 0) {
        out = NULL;
    }
    b->bytes = NULL;
    b->data = NULL;
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

int
cm_mp_bin(cm_buf *b, const void *s, Py_ssize_t len)
{
    char hdr[5];
    Py_ssize_t h;
    if (len <= UINT8_MAX) {
        hdr[0] = (char)0xc4;
        hdr[1] = (char)len;
        h = 2;
    }
    else if (len <= UINT16_MAX) {
        hdr[0] = (char)0xc5;
        cm_store_be16(hdr + 1, (uint16_t)len);
        h = 3;
    }
    else if ((uint64_t)len <= UINT32_MAX) {
        hdr[0] = (char)0xc6;
        cm_store_be32(hdr + 1, (uint32_t)len);
        h = 5;
    }
    else {
        PyErr_SetString(PyExc_ValueError,
                        "bytes are too large for MessagePack");
        return -1;
    }
    return cm_mp_with_header(b, hdr, h, s, len);
}

int
cm_mp_ext(cm_buf *b, int8_t type, const void *data, Py_ssize_t len)
{
    char hdr[6];
    Py_ssize_t h;
    switch (len) {
    case 1: hdr[0] = (char)0xd4; break;
    case 2: hdr[0] = (char)0xd5; break;
    case 4: hdr[0] = (char)0xd6; break;
    case 8: hdr[0] = (char)0xd7; break;
    case 16: hdr[0] = (char)0xd8; break;
    default: hdr[0] = 0; break;
    }
    if (hdr[0] != 0) {
        hdr[1] = (char)type;
        h = 2;
    }
    else if (len <= UINT8_MAX) {
        hdr[0] = (char)0xc7;
        hdr[1] = (char)len;
        hdr[2] = (char)type;
        h = 3;
    }
    else if (len <= UINT16_MAX) {
        hdr[0] = (char)0xc8;
        cm_store_be16(hdr + 1, (uint16_t)len);
        hdr[3] = (char)type;
        h = 4;
    }
    else if ((uint64_t)len <= UINT32_MAX) {
        hdr[0] = (char)0xc9;
        cm_store_be32(hdr + 1, (uint32_t)len);
        hdr[5] = (char)type;
        h = 6;
    }
    else {
        PyErr_SetString(PyExc_ValueError, "ext is too large for MessagePack");
        return -1;
    }
    return cm_mp_with_header(b, hdr, h, data, len);
}

/* ---- reader ---- */

/* A big-endian unsigned of w (1, 2, 4, 8) bytes. */
static inline uint64_t
load_be(const unsigned char *p, int w)
{
    switch (w) {
    case 1: return p[0];
    case 2: return cm_load_be16(p);
    case 4: return cm_load_be32(p);
    default: return cm_load_be64(p);
    }
}

static inline int
read_payload(cm_reader *r, cm_mp_item *it, uint64_t len)
{
    const unsigned char *s;
    if (cm_read(r, &s, len) < 0) {
        return -1;
    }
    it->ptr = (const char *)s;
    it->len = (Py_ssize_t)len;
    return 0;
}

/* An array (per_item 1) or map (2) count that the bytes left can hold: into
 * it->u, else -1. */
static inline int
check_count(const cm_reader *r, cm_mp_item *it, uint64_t count, int per_item)
{
    if (count > (uint64_t)cm_reader_left(r) / (uint64_t)per_item) {
        return -1;
    }
    it->u = count;
    return 0;
}

/* A count of w bytes; each element needs at least per_item bytes, so a
 * larger count than the bytes left allow is a lie. */
static inline int
read_count(cm_reader *r, cm_mp_item *it, int w, int per_item)
{
    const unsigned char *s;
    if (cm_read(r, &s, (uint64_t)w) < 0) {
        return -1;
    }
    return check_count(r, it, load_be(s, w), per_item);
}

int
cm_mp_read(cm_reader *r, cm_mp_item *it)
{
    const unsigned char *s;
    if (cm_read(r, &s, 1) < 0) {
        return -1;
    }
    unsigned char c = s[0];
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
        return read_payload(r, it, c & 0x1f);
    }
    if ((c & 0xf0) == 0x90) {
        it->kind = CM_MP_ARRAY;
        return check_count(r, it, c & 0x0f, 1);
    }
    if ((c & 0xf0) == 0x80) {
        it->kind = CM_MP_MAP;
        return check_count(r, it, c & 0x0f, 2);
    }
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
        if (cm_read(r, &s, (uint64_t)w) < 0) {
            return -1;
        }
        it->kind = CM_MP_BIN;
        return read_payload(r, it, load_be(s, w));
    }
    case 0xc7:
    case 0xc8:
    case 0xc9: {
        int w = 1 << (c - 0xc7);
        if (cm_read(r, &s, (uint64_t)w + 1) < 0) {
            return -1;
        }
        it->ext_type = (int8_t)s[w];
        it->kind = CM_MP_EXT;
        return read_payload(r, it, load_be(s, w));
    }
    case 0xca: {
        if (cm_read(r, &s, 4) < 0) {
            return -1;
        }
        uint32_t bits = cm_load_be32(s);
        float f;
        memcpy(&f, &bits, sizeof f);
        it->kind = CM_MP_FLOAT;
        it->f = (double)f;
        return 0;
    }
    case 0xcb: {
        if (cm_read(r, &s, 8) < 0) {
            return -1;
        }
        uint64_t bits = cm_load_be64(s);
        memcpy(&it->f, &bits, sizeof it->f);
        it->kind = CM_MP_FLOAT;
        return 0;
    }
    case 0xcc:
    case 0xcd:
    case 0xce:
    case 0xcf: {
        int w = 1 << (c - 0xcc);
        if (cm_read(r, &s, (uint64_t)w) < 0) {
            return -1;
        }
        it->u = load_be(s, w);
        it->kind = CM_MP_UINT;
        return 0;
    }
    case 0xd0:
    case 0xd1:
    case 0xd2:
    case 0xd3: {
        int w = 1 << (c - 0xd0);
        if (cm_read(r, &s, (uint64_t)w) < 0) {
            return -1;
        }
        uint64_t raw = load_be(s, w);
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
        if (cm_read(r, &s, 1) < 0) {
            return -1;
        }
        it->ext_type = (int8_t)s[0];
        it->kind = CM_MP_EXT;
        return read_payload(r, it, (uint64_t)1 << (c - 0xd4));
    case 0xd9:
    case 0xda:
    case 0xdb: {
        int w = 1 << (c - 0xd9);
        if (cm_read(r, &s, (uint64_t)w) < 0) {
            return -1;
        }
        it->kind = CM_MP_STR;
        return read_payload(r, it, load_be(s, w));
    }
    case 0xdc:
    case 0xdd:
        it->kind = CM_MP_ARRAY;
        return read_count(r, it, c == 0xdc ? 2 : 4, 1);
    case 0xde:
    case 0xdf:
        it->kind = CM_MP_MAP;
        return read_count(r, it, c == 0xde ? 2 : 4, 2);
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
