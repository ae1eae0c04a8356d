/* The output buffer and the MessagePack primitives that every encoder shares.
 *
 * cm_buf writes straight into a bytes object that it grows geometrically and
 * shrinks to size once at the end, so a finished encoding costs no extra copy.
 * cm_reader is the one bounds-checked way to read untrusted bytes: every read
 * checks what is left, and a container's length is capped by the bytes left.
 */
#ifndef CM_BUFFER_H
#define CM_BUFFER_H

#include "common.h"

typedef struct {
    PyObject *bytes; /* owned; NULL after finish or free */
    char *data;      /* PyBytes_AS_STRING(bytes) */
    Py_ssize_t len;
    Py_ssize_t cap;
} cm_buf;

int cm_buf_init(cm_buf *b, Py_ssize_t initial_cap);
int cm_buf_grow(cm_buf *b, Py_ssize_t extra); /* -1 with MemoryError set */
PyObject *cm_buf_finish(cm_buf *b);           /* steals: b is empty after */
void cm_buf_free(cm_buf *b);

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

/* ---- MessagePack writers: always the smallest encoding, as msgpack-python
 * ---- */

int cm_mp_nil(cm_buf *b);
int cm_mp_bool(cm_buf *b, int v);
int cm_mp_uint(cm_buf *b, uint64_t v);
int cm_mp_int(cm_buf *b, int64_t v); /* uses the unsigned forms for v >= 0 */
int cm_mp_float64(cm_buf *b, double v);
int cm_mp_str_header(cm_buf *b, size_t len);
int cm_mp_bin_header(cm_buf *b, size_t len);
int cm_mp_array_header(cm_buf *b, size_t len);
int cm_mp_map_header(cm_buf *b, size_t len);
int cm_mp_ext_header(cm_buf *b, int8_t type, size_t len);
int cm_mp_str(cm_buf *b, const char *s, Py_ssize_t len);
int cm_mp_bin(cm_buf *b, const void *s, Py_ssize_t len);

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

/* Read one item's header (and, for str / bin / ext, point at its payload and
 * skip it). Returns 0, or -1 when the bytes are truncated or use the reserved
 * type byte 0xc1; no exception is set: the caller decides what -1 means.
 * An array or map count larger than the bytes left is -1 too: every element
 * takes at least one byte. */
int cm_mp_read(cm_reader *r, cm_mp_item *item);

/* Skip one complete item, containers included, at most max_depth deep. */
int cm_mp_skip(cm_reader *r, int max_depth);

#endif
