/* zstd compression of stored bodies (the system libzstd). */
#ifndef CM_COMPRESS_H
#define CM_COMPRESS_H

#include "common.h"

typedef struct {
    int reserved; /* per-thread contexts live here (see compress.c) */
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
