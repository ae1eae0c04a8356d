/* zstd frames for stored bodies (the system libzstd >= 1.5.2).
 *
 * Contexts: a small pool per module state (compress.h). Taking a context out
 * and putting it back happen with the GIL held; the compression itself runs
 * without the GIL when the buffer is at least CM_ZSTD_NOGIL_BYTES.
 *
 * Why 128 KiB: below it the work (level 3 compresses at ~0.3-0.5 GB/s,
 * decompression runs at ~1-2 GB/s, so 128 KiB is ~100-400 us) is not much
 * longer than what a GIL hand-off can cost: uncontended a release and
 * reacquire is ~100 ns, but with another thread running Python the reacquire
 * waits for its switch interval (5 ms by default). Small bodies, the common
 * case of an API cache, keep the GIL and pay nothing; large ones let the
 * event loop thread and other workers run meanwhile.
 *
 * Decompression treats its input as hostile. Exactly one zstd frame is
 * accepted: a skippable frame, several frames, trailing bytes, a truncated
 * frame or a bad magic raise MalformedError. A frame that declares its
 * content size is refused before allocating when that size exceeds max_size
 * or what its blocks can hold (128 KiB per 3 bytes of input at most);
 * a frame without one is decompressed by streaming into a buffer that grows
 * up to max_size + 1 bytes, refused as soon as it would pass max_size, with
 * the window a frame may ask for capped near max_size (at least 8 MiB, what
 * levels 1..19 use, so ordinary streamed frames pass; at most zstd's default
 * limit of 128 MiB).
 */
#include "state.h"

#include "args.h"

#include <zstd_errors.h>

#if ZSTD_VERSION_NUMBER < 10502
#error "fastapi-cachemate needs libzstd >= 1.5.2"
#endif

#define CM_ZSTD_NOGIL_BYTES ((size_t)128 * 1024)
#define CM_ZSTD_STREAM_MIN_CAP ((size_t)16 * 1024)
#define CM_ZSTD_WINDOWLOG_MIN 23 /* 8 MiB: what levels 1..19 ask for */
#define CM_ZSTD_WINDOWLOG_MAX 27 /* ZSTD_WINDOWLOG_LIMIT_DEFAULT */
/* RFC 8878: a block holds at most 128 KiB and takes at least 3 bytes. */
#define CM_ZSTD_BLOCK_MAX ((unsigned long long)128 * 1024)
#define CM_ZSTD_BLOCK_HEADER 3

typedef enum { OP_COMPRESS, OP_DECOMPRESS } zstd_op;

/* The one place a zstd error code becomes a Python exception: memory to
 * MemoryError, parameters to ValueError, anything else met while decoding to
 * MalformedError (the input is at fault), while encoding to RuntimeError. */
static void
set_zstd_error(cm_state *st, zstd_op op, size_t code)
{
    const char *name = ZSTD_getErrorName(code);
    switch (ZSTD_getErrorCode(code)) {
    case ZSTD_error_memory_allocation: PyErr_NoMemory(); return;
    case ZSTD_error_parameter_unsupported:
    case ZSTD_error_parameter_combination_unsupported:
    case ZSTD_error_parameter_outOfBound:
        PyErr_Format(PyExc_ValueError, "zstd: %s", name);
        return;
    case ZSTD_error_frameParameter_windowTooLarge:
        if (op == OP_DECOMPRESS) {
            PyErr_Format(st->MalformedError,
                         "zstd frame asks for a window larger than this "
                         "max_size allows: %s",
                         name);
            return;
        }
        break;
    default: break;
    }
    if (op == OP_DECOMPRESS) {
        PyErr_Format(st->MalformedError, "malformed zstd frame: %s", name);
    }
    else {
        PyErr_Format(PyExc_RuntimeError, "zstd compression failed: %s", name);
    }
}

/* ---- the context pool (GIL held) ---- */

static ZSTD_CCtx *
take_cctx(cm_compress_state *cs)
{
    if (cs->ncctx > 0) {
        return cs->cctx[--cs->ncctx];
    }
    ZSTD_CCtx *c = ZSTD_createCCtx();
    if (c == NULL) {
        PyErr_NoMemory();
    }
    return c;
}

static void
give_cctx(cm_compress_state *cs, ZSTD_CCtx *c)
{
    if (cs->ncctx < CM_ZSTD_POOL) {
        cs->cctx[cs->ncctx++] = c;
    }
    else {
        ZSTD_freeCCtx(c);
    }
}

static ZSTD_DCtx *
take_dctx(cm_compress_state *cs)
{
    if (cs->ndctx > 0) {
        return cs->dctx[--cs->ndctx];
    }
    ZSTD_DCtx *d = ZSTD_createDCtx();
    if (d == NULL) {
        PyErr_NoMemory();
    }
    return d;
}

static void
give_dctx(cm_compress_state *cs, ZSTD_DCtx *d)
{
    if (cs->ndctx < CM_ZSTD_POOL) {
        cs->dctx[cs->ndctx++] = d;
    }
    else {
        ZSTD_freeDCtx(d);
    }
}

/* ---- compression ---- */

PyObject *
cm_zstd_compress(cm_state *st, const void *src, size_t n, int level)
{
    PyObject *out = NULL;
    ZSTD_CCtx *cctx = NULL;
    if (level < ZSTD_minCLevel() || level > ZSTD_maxCLevel()) {
        PyErr_Format(PyExc_ValueError, "zstd level must be in %d..%d, not %d",
                     ZSTD_minCLevel(), ZSTD_maxCLevel(), level);
        return NULL;
    }
    size_t bound = ZSTD_compressBound(n);
    if (ZSTD_isError(bound) || bound > (size_t)PY_SSIZE_T_MAX) {
        PyErr_NoMemory();
        return NULL;
    }
    cctx = take_cctx(&st->compress);
    if (cctx == NULL) {
        return NULL;
    }
    size_t rc = ZSTD_CCtx_reset(cctx, ZSTD_reset_session_and_parameters);
    if (!ZSTD_isError(rc)) {
        rc = ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level);
    }
    if (ZSTD_isError(rc)) {
        set_zstd_error(st, OP_COMPRESS, rc);
        goto done;
    }
    out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)bound);
    if (out == NULL) {
        goto done;
    }
    char *dst = PyBytes_AS_STRING(out);
    size_t got;
    if (n >= CM_ZSTD_NOGIL_BYTES) {
        Py_BEGIN_ALLOW_THREADS
        got = ZSTD_compress2(cctx, dst, bound, src, n);
        Py_END_ALLOW_THREADS
    }
    else {
        got = ZSTD_compress2(cctx, dst, bound, src, n);
    }
    if (ZSTD_isError(got)) {
        set_zstd_error(st, OP_COMPRESS, got);
        Py_CLEAR(out);
        goto done;
    }
    if (got != bound) {
        (void)_PyBytes_Resize(&out, (Py_ssize_t)got); /* NULL on failure */
    }
done:
    give_cctx(&st->compress, cctx);
    return out;
}

/* ---- decompression ---- */

static uint32_t
load_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

/* The smallest window log covering max_size, within the bounds above. */
static int
window_log_for(size_t max_size)
{
    int log = CM_ZSTD_WINDOWLOG_MIN;
    while (log < CM_ZSTD_WINDOWLOG_MAX && ((size_t)1 << log) < max_size) {
        log++;
    }
    return log;
}

/* A frame without a declared content size: stream into a growing bytes. */
static PyObject *
decompress_stream(cm_state *st, ZSTD_DCtx *dctx, const void *src, size_t n,
                  size_t max_size)
{
    PyObject *out = NULL;
    size_t limit = max_size < (size_t)PY_SSIZE_T_MAX ? max_size + 1 : max_size;
    size_t cap =
        n > CM_ZSTD_STREAM_MIN_CAP / 4 ? n * 4 : CM_ZSTD_STREAM_MIN_CAP;
    if (cap > limit) {
        cap = limit;
    }
    size_t rc = ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax,
                                       window_log_for(max_size));
    if (ZSTD_isError(rc)) {
        set_zstd_error(st, OP_DECOMPRESS, rc);
        return NULL;
    }
    out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)cap);
    if (out == NULL) {
        return NULL;
    }
    ZSTD_inBuffer in = {src, n, 0};
    ZSTD_outBuffer ob = {PyBytes_AS_STRING(out), cap, 0};
    for (;;) {
        if (ob.size - ob.pos >= CM_ZSTD_NOGIL_BYTES) {
            Py_BEGIN_ALLOW_THREADS
            rc = ZSTD_decompressStream(dctx, &ob, &in);
            Py_END_ALLOW_THREADS
        }
        else {
            rc = ZSTD_decompressStream(dctx, &ob, &in);
        }
        if (ZSTD_isError(rc)) {
            set_zstd_error(st, OP_DECOMPRESS, rc);
            goto error;
        }
        if (ob.pos > max_size) {
            break; /* reported below */
        }
        if (rc == 0) {
            break; /* the frame is complete */
        }
        if (ob.pos == ob.size) {
            if (ob.size >= limit) {
                break;
            }
            size_t grown = ob.size > limit / 2 ? limit : ob.size * 2;
            if (_PyBytes_Resize(&out, (Py_ssize_t)grown) < 0) {
                return NULL;
            }
            ob.dst = PyBytes_AS_STRING(out);
            ob.size = grown;
        }
        else if (in.pos == in.size) {
            PyErr_SetString(st->MalformedError, "truncated zstd frame");
            goto error;
        }
    }
    if (ob.pos > max_size || rc != 0) {
        PyErr_Format(st->MalformedError,
                     "zstd frame decompresses to more than max_size (%zu) "
                     "bytes",
                     max_size);
        goto error;
    }
    if (ob.pos != ob.size && _PyBytes_Resize(&out, (Py_ssize_t)ob.pos) < 0) {
        return NULL;
    }
    return out;
error:
    Py_XDECREF(out);
    return NULL;
}

PyObject *
cm_zstd_decompress(cm_state *st, const void *src, size_t n, size_t max_size)
{
    PyObject *out = NULL;
    ZSTD_DCtx *dctx = NULL;
    if (n < 4) {
        PyErr_Format(st->MalformedError,
                     "not a zstd frame: %zu bytes, a frame has at least 4", n);
        return NULL;
    }
    uint32_t magic = load_le32((const unsigned char *)src);
    if (magic != ZSTD_MAGICNUMBER) {
        if ((magic & ZSTD_MAGIC_SKIPPABLE_MASK) ==
            ZSTD_MAGIC_SKIPPABLE_START) {
            PyErr_SetString(st->MalformedError,
                            "a skippable zstd frame holds no data frame");
        }
        else {
            PyErr_SetString(st->MalformedError,
                            "not a zstd frame (bad magic number)");
        }
        return NULL;
    }
    size_t frame = ZSTD_findFrameCompressedSize(src, n);
    if (ZSTD_isError(frame)) {
        set_zstd_error(st, OP_DECOMPRESS, frame);
        return NULL;
    }
    if (frame != n) {
        PyErr_Format(st->MalformedError,
                     "%zu bytes after the zstd frame (trailing data or "
                     "another frame)",
                     n - frame);
        return NULL;
    }
    unsigned long long size = ZSTD_getFrameContentSize(src, n);
    if (size == ZSTD_CONTENTSIZE_ERROR) {
        PyErr_SetString(st->MalformedError, "malformed zstd frame header");
        return NULL;
    }
    if (size != ZSTD_CONTENTSIZE_UNKNOWN && size > max_size) {
        PyErr_Format(st->MalformedError,
                     "zstd frame declares %llu bytes, more than max_size "
                     "(%zu)",
                     size, max_size);
        return NULL;
    }
    /* A declared size the frame's blocks cannot hold would make us allocate
     * up to max_size for a few bytes of input: refuse it first. */
    if (size != ZSTD_CONTENTSIZE_UNKNOWN &&
        size > (unsigned long long)(n / CM_ZSTD_BLOCK_HEADER) *
                   CM_ZSTD_BLOCK_MAX) {
        PyErr_Format(st->MalformedError,
                     "zstd frame declares %llu bytes, more than its %zu bytes "
                     "of blocks can hold",
                     size, n);
        return NULL;
    }
    dctx = take_dctx(&st->compress);
    if (dctx == NULL) {
        return NULL;
    }
    size_t rc = ZSTD_DCtx_reset(dctx, ZSTD_reset_session_and_parameters);
    if (ZSTD_isError(rc)) {
        set_zstd_error(st, OP_DECOMPRESS, rc);
        goto done;
    }
    if (size == ZSTD_CONTENTSIZE_UNKNOWN) {
        out = decompress_stream(st, dctx, src, n, max_size);
        goto done;
    }
    out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)size);
    if (out == NULL) {
        goto done;
    }
    char *dst = PyBytes_AS_STRING(out);
    size_t got;
    if ((size_t)size >= CM_ZSTD_NOGIL_BYTES) {
        Py_BEGIN_ALLOW_THREADS
        got = ZSTD_decompressDCtx(dctx, dst, (size_t)size, src, n);
        Py_END_ALLOW_THREADS
    }
    else {
        got = ZSTD_decompressDCtx(dctx, dst, (size_t)size, src, n);
    }
    if (ZSTD_isError(got)) {
        set_zstd_error(st, OP_DECOMPRESS, got);
        Py_CLEAR(out);
    }
    else if (got != (size_t)size) {
        PyErr_Format(st->MalformedError,
                     "zstd frame declares %llu bytes but holds %zu", size,
                     got);
        Py_CLEAR(out);
    }
done:
    give_dctx(&st->compress, dctx);
    return out;
}

/* ---- Python ---- */

static const char *const compress_names[] = {"data", "level"};
static const cm_args compress_args = {"compress", compress_names, 2, 1, 2, 1};
static const char *const decompress_names[] = {"data", "max_size"};
static const cm_args decompress_args = {
    "decompress", decompress_names, 2, 1, 2, 1};

static PyObject *
py_compress(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
            PyObject *kwnames)
{
    PyObject *argv[2], *out = NULL;
    cm_input in;
    int level = ZSTD_CLEVEL_DEFAULT;
    if (cm_args_parse(&compress_args, args, nargs, kwnames, argv) < 0) {
        return NULL;
    }
    PyObject *opt = argv[1];
    if (opt != NULL) {
        int overflow = 0;
        long v = PyLong_AsLongAndOverflow(opt, &overflow);
        if (v == -1 && PyErr_Occurred()) {
            return NULL;
        }
        if (overflow || v < ZSTD_minCLevel() || v > ZSTD_maxCLevel()) {
            PyErr_Format(PyExc_ValueError,
                         "zstd level must be in %d..%d, not %R",
                         ZSTD_minCLevel(), ZSTD_maxCLevel(), opt);
            return NULL;
        }
        level = (int)v;
    }
    if (cm_input_get(argv[0], &in) < 0) {
        return NULL;
    }
    out =
        cm_zstd_compress(cm_get_state(module), in.data, (size_t)in.len, level);
    cm_input_release(&in);
    return out;
}

static PyObject *
py_decompress(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
              PyObject *kwnames)
{
    PyObject *argv[2], *out = NULL;
    cm_input in;
    Py_ssize_t max_size = 64 * 1024 * 1024;
    if (cm_args_parse(&decompress_args, args, nargs, kwnames, argv) < 0) {
        return NULL;
    }
    PyObject *opt = argv[1];
    if (opt != NULL) {
        max_size = PyLong_AsSsize_t(opt);
        if (max_size == -1 && PyErr_Occurred()) {
            return NULL;
        }
        if (max_size < 0) {
            PyErr_Format(PyExc_ValueError, "max_size must be >= 0, not %zd",
                         max_size);
            return NULL;
        }
    }
    if (cm_input_get(argv[0], &in) < 0) {
        return NULL;
    }
    out = cm_zstd_decompress(cm_get_state(module), in.data, (size_t)in.len,
                             (size_t)max_size);
    cm_input_release(&in);
    return out;
}

static PyMethodDef compress_methods[] = {
    {"compress", (PyCFunction)(void (*)(void))py_compress,
     METH_FASTCALL | METH_KEYWORDS,
     PyDoc_STR("compress($module, data, /, level=3)\n--\n\n"
               "One zstd frame holding data (content size recorded).")},
    {"decompress", (PyCFunction)(void (*)(void))py_decompress,
     METH_FASTCALL | METH_KEYWORDS,
     PyDoc_STR("decompress($module, data, /, max_size=67108864)\n--\n\n"
               "The content of exactly one zstd frame, at most max_size "
               "bytes; MalformedError otherwise.")},
    {NULL, NULL, 0, NULL},
};

int
cm_compress_exec(PyObject *module, cm_state *st)
{
    st->compress.ncctx = 0;
    st->compress.ndctx = 0;
    if (PyModule_AddIntConstant(module, "ZSTD_MIN_LEVEL", ZSTD_minCLevel()) <
            0 ||
        PyModule_AddIntConstant(module, "ZSTD_MAX_LEVEL", ZSTD_maxCLevel()) <
            0) {
        return -1;
    }
    return PyModule_AddFunctions(module, compress_methods);
}

int
cm_compress_traverse(cm_state *st, visitproc visit, void *arg)
{
    (void)st;
    (void)visit;
    (void)arg;
    return 0;
}

void
cm_compress_clear(cm_state *st)
{
    while (st->compress.ncctx > 0) {
        ZSTD_freeCCtx(st->compress.cctx[--st->compress.ncctx]);
    }
    while (st->compress.ndctx > 0) {
        ZSTD_freeDCtx(st->compress.dctx[--st->compress.ndctx]);
    }
}
