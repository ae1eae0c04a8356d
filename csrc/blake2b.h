/* BLAKE2b, written from RFC 7693. Keys and ETags hash with it; it is checked
 * against hashlib.blake2b on the RFC's test vectors and on random inputs. */
#ifndef CM_BLAKE2B_H
#define CM_BLAKE2B_H

#include "common.h"

#define CM_BLAKE2B_BLOCKBYTES 128
#define CM_BLAKE2B_OUTBYTES 64
#define CM_BLAKE2B_KEYBYTES 64

typedef struct {
    uint64_t h[8];
    uint64_t t[2];
    uint8_t buf[CM_BLAKE2B_BLOCKBYTES];
    size_t buflen;
    size_t outlen;
} cm_blake2b_ctx;

/* outlen 1..64, keylen 0..64; returns -1 on bad sizes (no exception set). */
int cm_blake2b_init(cm_blake2b_ctx *ctx, size_t outlen, const void *key,
                    size_t keylen);
void cm_blake2b_update(cm_blake2b_ctx *ctx, const void *in, size_t inlen);
void cm_blake2b_final(cm_blake2b_ctx *ctx, void *out);
int cm_blake2b(void *out, size_t outlen, const void *key, size_t keylen,
               const void *in, size_t inlen);

CM_DECLARE_CONCERN(blake2b);

#endif
