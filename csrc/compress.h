/* zstd compression of stored bodies (the system libzstd). */
#ifndef CM_COMPRESS_H
#define CM_COMPRESS_H

#include "common.h"

#include <zstd.h>

/* Contexts kept for reuse. A call takes one out of the pool while holding the
 * GIL and puts it back after, so the GIL can be released around the work
 * without two threads ever sharing a context; a call that finds the pool
 * empty creates one, and a context that finds the pool full is freed. */
#define CM_ZSTD_POOL 4

typedef struct {
    ZSTD_CCtx *cctx[CM_ZSTD_POOL];
    int ncctx;
    ZSTD_DCtx *dctx[CM_ZSTD_POOL];
    int ndctx;
} cm_compress_state;

/* Compress n bytes into a new bytes object (a complete zstd frame). */
PyObject *cm_zstd_compress(cm_state *st, const void *src, size_t n, int level);

/* Decompress one complete zstd frame into a new bytes object of at most
 * max_size bytes. Malformed input, trailing bytes or a larger result raise
 * MalformedError; never a crash, never more than max_size allocated. */
PyObject *cm_zstd_decompress(cm_state *st, const void *src, size_t n,
                             size_t max_size);

CM_DECLARE_CONCERN(compress);

#endif
