/* The output buffer and the MessagePack writers that every encoder shares,
 * and the one reader of untrusted bytes.
 *
 * cm_buf starts in a caller's array (on the C stack) or in a bytes object;
 * the first write that does not fit moves it to a bytes object that grows
 * geometrically and is shrunk to size once at the end, so a finished encoding
 * costs no extra copy. cm_reader reads untrusted bytes through cm_read only:
 * every read checks what is left and advances in one call, and a container's
 * length is capped by the bytes left.
 */
#ifndef CM_BUFFER_H
#define CM_BUFFER_H

#include "common.h"

typedef struct {
    PyObject *bytes; /* owned; NULL while in the caller's array, after
                        finish or free */
    char *data;      /* the caller's array or PyBytes_AS_STRING(bytes) */
    Py_ssize_t len;
    Py_ssize_t cap;
    Py_ssize_t hint; /* the bytes object's first size when leaving the
                        caller's array (at least twice the array) */
} cm_buf;

/* Start in a new bytes object of initial_cap bytes: 0, or -1 with
 * MemoryError. */
int cm_buf_init(cm_buf *b, Py_ssize_t initial_cap);

/* Start in the caller's array of cap bytes (which must outlive b). */
static inline void
cm_buf_init_array(cm_buf *b, char *array, Py_ssize_t cap, Py_ssize_t hint)
{
    b->bytes = NULL;
    b->data = array;
    b->len = 0;
    b->cap = cap;
    b->hint = hint;
}

int cm_buf_grow(cm_buf *b, Py_ssize_t extra); /* -1 with MemoryError set */
/* The bytes written, as a bytes object: b is empty after. NULL with
 * MemoryError. */
PyObject *cm_buf_finish(cm_buf *b);
void cm_buf_free(cm_buf *b);

/* Room for extra more bytes at b->data + b->len: 0, or -1 with MemoryError. */
static inline int
cm_buf_reserve(cm_buf *b, Py_ssize_t extra)
{
    if (CM_LIKELY(b->cap - b->len >= extra)) {
        return 0;
    }
    return cm_buf_grow(b, extra);
}

static inline int
cm_buf_put(cm_buf *b, const void *src, Py_ssize_t n)
{
    if (cm_buf_reserve(b, n) < 0) {
        return -1;
    }
    memcpy(b->data + b->len, src, (size_t)n);
    b->len += n;
    return 0;
}

static inline int
cm_buf_put_byte(cm_buf *b, unsigned char c)
{
    if (cm_buf_reserve(b, 1) < 0) {
        return -1;
    }
    b->data[b->len++] = (char)c;
    return 0;
}

/* ---- input bytes ---- */

/* The bytes of any object that exports a buffer, as one C-contiguous run:
 * the exporter's own memory when it is contiguous, else a private copy in C
 * order (memoryview(b)[::2] reads as its bytes, as msgpack-python does).
 * Items of any format are read as their bytes. */
typedef struct {
    Py_buffer view; /* held while data points into it */
    char *copy;     /* PyMem copy, or NULL */
    const char *data;
    Py_ssize_t len;
} cm_input;

/* 0, or -1 with an exception set (TypeError when o exports no buffer). */
int cm_input_get(PyObject *o, cm_input *in);
void cm_input_release(cm_input *in);

/* Big-endian stores into reserved space. */
static inline void
cm_store_be16(char *p, uint16_t v)
{
    p[0] = (char)(v >> 8);
    p[1] = (char)v;
}

static inline void
cm_store_be32(char *p, uint32_t v)
{
    p[0] = (char)(v >> 24);
    p[1] = (char)(v >> 16);
    p[2] = (char)(v >> 8);
    p[3] = (char)v;
}

static inline void
cm_store_be64(char *p, uint64_t v)
{
    cm_store_be32(p, (uint32_t)(v >> 32));
    cm_store_be32(p + 4, (uint32_t)v);
}

/* ---- MessagePack writers: always the smallest encoding, as msgpack-python.
 * Each reserves its room once, then stores. 0, or -1 with an exception. */

static inline void
cm_store_be24(char *p, uint32_t v)
{
    p[0] = (char)(v >> 16);
    p[1] = (char)(v >> 8);
    p[2] = (char)v;
}

static inline int
cm_mp_nil(cm_buf *b)
{
    return cm_buf_put_byte(b, 0xc0);
}

static inline int
cm_mp_bool(cm_buf *b, int v)
{
    return cm_buf_put_byte(b, v ? 0xc3 : 0xc2);
}

static inline int
cm_mp_uint(cm_buf *b, uint64_t v)
{
    if (cm_buf_reserve(b, 9) < 0) {
        return -1;
    }
    char *p = b->data + b->len;
    if (v < 128) {
        p[0] = (char)v;
        b->len += 1;
    }
    else if (v <= UINT8_MAX) {
        p[0] = (char)0xcc;
        p[1] = (char)v;
        b->len += 2;
    }
    else if (v <= UINT16_MAX) {
        p[0] = (char)0xcd;
        cm_store_be16(p + 1, (uint16_t)v);
        b->len += 3;
    }
    else if (v <= UINT32_MAX) {
        p[0] = (char)0xce;
        cm_store_be32(p + 1, (uint32_t)v);
        b->len += 5;
    }
    else {
        p[0] = (char)0xcf;
        cm_store_be64(p + 1, v);
        b->len += 9;
    }
    return 0;
}

/* the unsigned forms for v >= 0 */
static inline int
cm_mp_int(cm_buf *b, int64_t v)
{
    if (v >= 0) {
        return cm_mp_uint(b, (uint64_t)v);
    }
    if (cm_buf_reserve(b, 9) < 0) {
        return -1;
    }
    char *p = b->data + b->len;
    if (v >= -32) {
        p[0] = (char)(0xe0 | (v + 32));
        b->len += 1;
    }
    else if (v >= INT8_MIN) {
        p[0] = (char)0xd0;
        p[1] = (char)(int8_t)v;
        b->len += 2;
    }
    else if (v >= INT16_MIN) {
        p[0] = (char)0xd1;
        cm_store_be16(p + 1, (uint16_t)(int16_t)v);
        b->len += 3;
    }
    else if (v >= INT32_MIN) {
        p[0] = (char)0xd2;
        cm_store_be32(p + 1, (uint32_t)(int32_t)v);
        b->len += 5;
    }
    else {
        p[0] = (char)0xd3;
        cm_store_be64(p + 1, (uint64_t)v);
        b->len += 9;
    }
    return 0;
}

static inline int
cm_mp_float64(cm_buf *b, double v)
{
    if (cm_buf_reserve(b, 9) < 0) {
        return -1;
    }
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    char *p = b->data + b->len;
    p[0] = (char)0xcb;
    cm_store_be64(p + 1, bits);
    b->len += 9;
    return 0;
}

/* memcpy, inlined for the short strings that dominate API payloads: two
 * overlapping loads and stores read and write only [0, n). */
static inline void
cm_copy_small(char *dst, const char *src, Py_ssize_t n)
{
    if (n >= 8 && n <= 16) {
        uint64_t x, y;
        memcpy(&x, src, 8);
        memcpy(&y, src + n - 8, 8);
        memcpy(dst, &x, 8);
        memcpy(dst + n - 8, &y, 8);
    }
    else if (n >= 4 && n < 8) {
        uint32_t x, y;
        memcpy(&x, src, 4);
        memcpy(&y, src + n - 4, 4);
        memcpy(dst, &x, 4);
        memcpy(dst + n - 4, &y, 4);
    }
    else if (n > 0 && n < 4) {
        dst[0] = src[0];
        dst[n / 2] = src[n / 2];
        dst[n - 1] = src[n - 1];
    }
    else if (n > 16) {
        memcpy(dst, src, (size_t)n);
    }
}

static inline int
cm_mp_str(cm_buf *b, const char *s, Py_ssize_t len)
{
    if (cm_buf_reserve(b, len + 5) < 0) {
        return -1;
    }
    char *p = b->data + b->len;
    Py_ssize_t h;
    if (len < 32) {
        p[0] = (char)(0xa0 | len);
        h = 1;
    }
    else if (len <= UINT8_MAX) {
        p[0] = (char)0xd9;
        p[1] = (char)len;
        h = 2;
    }
    else if (len <= UINT16_MAX) {
        p[0] = (char)0xda;
        cm_store_be16(p + 1, (uint16_t)len);
        h = 3;
    }
    else if ((uint64_t)len <= UINT32_MAX) {
        p[0] = (char)0xdb;
        cm_store_be32(p + 1, (uint32_t)len);
        h = 5;
    }
    else {
        PyErr_SetString(PyExc_ValueError, "str is too large for MessagePack");
        return -1;
    }
    cm_copy_small(p + h, s, len);
    b->len += h + len;
    return 0;
}

/* A header of h bytes, then n bytes of payload. */
static inline int
cm_mp_with_header(cm_buf *b, const char *hdr, Py_ssize_t h, const void *data,
                  Py_ssize_t n)
{
    if (cm_buf_reserve(b, h + n) < 0) {
        return -1;
    }
    memcpy(b->data + b->len, hdr, (size_t)h);
    memcpy(b->data + b->len + h, data, (size_t)n);
    b->len += h + n;
    return 0;
}

int cm_mp_bin(cm_buf *b, const void *s, Py_ssize_t len);
int cm_mp_ext(cm_buf *b, int8_t type, const void *data, Py_ssize_t len);

/* An array (fix 0x90, tag16 0xdc) or map (0x80, 0xde) header; what names
 * the container in the error for more than 2**32-1 elements. */
static inline int
cm_mp_container(cm_buf *b, unsigned char fix, unsigned char tag16,
                Py_ssize_t n, const char *what)
{
    if (cm_buf_reserve(b, 5) < 0) {
        return -1;
    }
    char *p = b->data + b->len;
    if (n < 16) {
        p[0] = (char)(fix | n);
        b->len += 1;
    }
    else if (n <= UINT16_MAX) {
        p[0] = (char)tag16;
        cm_store_be16(p + 1, (uint16_t)n);
        b->len += 3;
    }
    else if ((uint64_t)n <= UINT32_MAX) {
        p[0] = (char)(tag16 + 1);
        cm_store_be32(p + 1, (uint32_t)n);
        b->len += 5;
    }
    else {
        PyErr_Format(PyExc_ValueError, "%s is too large for MessagePack",
                     what);
        return -1;
    }
    return 0;
}

static inline int
cm_mp_array_header(cm_buf *b, Py_ssize_t n)
{
    return cm_mp_container(b, 0x90, 0xdc, n, "array");
}

static inline int
cm_mp_map_header(cm_buf *b, Py_ssize_t n)
{
    return cm_mp_container(b, 0x80, 0xde, n, "map");
}

/* ---- the bounds-checked reader ---- */

typedef enum {
    CM_MP_NIL,
    CM_MP_BOOL,
    CM_MP_UINT,
    CM_MP_INT, /* negative only */
    CM_MP_FLOAT,
    CM_MP_STR,
    CM_MP_BIN,
    CM_MP_ARRAY,
    CM_MP_MAP,
    CM_MP_EXT,
} cm_mp_kind;

typedef struct {
    cm_mp_kind kind;
    int8_t ext_type; /* CM_MP_EXT */
    uint64_t u;      /* UINT, BOOL; ARRAY / MAP element count */
    int64_t i;       /* INT */
    double f;        /* FLOAT (float32 is widened) */
    const char *ptr; /* STR / BIN / EXT payload */
    Py_ssize_t len;  /* STR / BIN / EXT payload length */
} cm_mp_item;

/* Untrusted bytes are read through cm_read only: it checks what is left and
 * advances in one call, so no read can pass the end (msgspec's mpack_read is
 * the model). On -1 nothing moved and no exception is set. */
typedef struct {
    const unsigned char *p;
    const unsigned char *end;
} cm_reader;

static inline void
cm_reader_init(cm_reader *r, const void *data, Py_ssize_t len)
{
    r->p = (const unsigned char *)data;
    r->end = r->p + len;
}

static inline Py_ssize_t
cm_reader_left(const cm_reader *r)
{
    return (Py_ssize_t)(r->end - r->p);
}

/* n bytes at *s, or -1 when fewer are left (n may come from the input). */
static inline int
cm_read(cm_reader *r, const unsigned char **s, uint64_t n)
{
    if (CM_UNLIKELY((uint64_t)(r->end - r->p) < n)) {
        return -1;
    }
    *s = r->p;
    r->p += n;
    return 0;
}

static inline uint16_t
cm_load_be16(const unsigned char *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static inline uint32_t
cm_load_be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
           ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static inline uint64_t
cm_load_be64(const unsigned char *p)
{
    return ((uint64_t)cm_load_be32(p) << 32) | cm_load_be32(p + 4);
}

/* Read one item's header (and, for str / bin / ext, point at its payload and
 * skip it). Returns 0, or -1 when the bytes are truncated or use the reserved
 * type byte 0xc1; no exception is set: the caller decides what -1 means.
 * An array or map count larger than the bytes left is -1 too: every element
 * takes at least one byte. */
int cm_mp_read(cm_reader *r, cm_mp_item *item);

/* Skip one complete item, containers included, at most max_depth deep. */
int cm_mp_skip(cm_reader *r, int max_depth);

#endif
