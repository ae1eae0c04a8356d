/* Placeholder implementation: simple one-shot API. To be replaced by the
 * per-thread-context version (issue "Native core"). */
#include "state.h"

#include <zstd.h>

#if ZSTD_VERSION_NUMBER < 10502
#error "fastapi-cachemate needs libzstd >= 1.5.2"
#endif

PyObject *
cm_zstd_compress(cm_state *st, const void *src, size_t n, int level)
{
    (void)st;
    size_t bound = ZSTD_compressBound(n);
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)bound);
    if (out == NULL) {
        return NULL;
    }
    size_t got = ZSTD_compress(PyBytes_AS_STRING(out), bound, src, n, level);
    if (ZSTD_isError(got)) {
        Py_DECREF(out);
        PyErr_Format(PyExc_ValueError, "zstd compression failed: %s",
                     ZSTD_getErrorName(got));
        return NULL;
    }
    if (_PyBytes_Resize(&out, (Py_ssize_t)got) < 0) {
        return NULL;
    }
    return out;
}

PyObject *
cm_zstd_decompress(cm_state *st, const void *src, size_t n, size_t max_size)
{
    unsigned long long size = ZSTD_getFrameContentSize(src, n);
    if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN ||
        size > max_size) {
        PyErr_SetString(st->MalformedError,
                        "zstd frame is malformed, unsized or too large");
        return NULL;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)size);
    if (out == NULL) {
        return NULL;
    }
    size_t got = ZSTD_decompress(PyBytes_AS_STRING(out), (size_t)size, src, n);
    if (ZSTD_isError(got) || got != size) {
        Py_DECREF(out);
        PyErr_SetString(st->MalformedError, "zstd frame is malformed");
        return NULL;
    }
    return out;
}

int
cm_compress_exec(PyObject *module, cm_state *st)
{
    (void)module;
    (void)st;
    return 0;
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
    (void)st;
}
