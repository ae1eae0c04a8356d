/* BLAKE2b from RFC 7693, section 3 and appendix C. */
#include "blake2b.h"
#include "state.h"
#include "buffer.h"
#include "args.h"

static const uint64_t blake2b_iv[8] = {
    0x6A09E667F3BCC908ULL, 0xBB67AE8584CAA73BULL, 0x3C6EF372FE94F82BULL,
    0xA54FF53A5F1D36F1ULL, 0x510E527FADE682D1ULL, 0x9B05688C2B3E6C1FULL,
    0x1F83D9ABFB41BD6BULL, 0x5BE0CD19137E2179ULL,
};

static const uint8_t sigma[12][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
    {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
    {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
    {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
    {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
};

static inline uint64_t
rotr64(uint64_t x, unsigned n)
{
    return (x >> n) | (x << (64 - n));
}

static inline uint64_t
load_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

#define G(a, b, c, d, x, y)             \
    do {                                \
        v[a] = v[a] + v[b] + (x);       \
        v[d] = rotr64(v[d] ^ v[a], 32); \
        v[c] = v[c] + v[d];             \
        v[b] = rotr64(v[b] ^ v[c], 24); \
        v[a] = v[a] + v[b] + (y);       \
        v[d] = rotr64(v[d] ^ v[a], 16); \
        v[c] = v[c] + v[d];             \
        v[b] = rotr64(v[b] ^ v[c], 63); \
    } while (0)

static void
compress_block(cm_blake2b_ctx *ctx, const uint8_t *block, int last)
{
    uint64_t v[16], m[16];
    for (int i = 0; i < 8; i++) {
        v[i] = ctx->h[i];
        v[i + 8] = blake2b_iv[i];
    }
    v[12] ^= ctx->t[0];
    v[13] ^= ctx->t[1];
    if (last) {
        v[14] = ~v[14];
    }
    for (int i = 0; i < 16; i++) {
        m[i] = load_le64(block + 8 * i);
    }
    for (int r = 0; r < 12; r++) {
        const uint8_t *s = sigma[r];
        G(0, 4, 8, 12, m[s[0]], m[s[1]]);
        G(1, 5, 9, 13, m[s[2]], m[s[3]]);
        G(2, 6, 10, 14, m[s[4]], m[s[5]]);
        G(3, 7, 11, 15, m[s[6]], m[s[7]]);
        G(0, 5, 10, 15, m[s[8]], m[s[9]]);
        G(1, 6, 11, 12, m[s[10]], m[s[11]]);
        G(2, 7, 8, 13, m[s[12]], m[s[13]]);
        G(3, 4, 9, 14, m[s[14]], m[s[15]]);
    }
    for (int i = 0; i < 8; i++) {
        ctx->h[i] ^= v[i] ^ v[i + 8];
    }
}

static inline void
add_counter(cm_blake2b_ctx *ctx, uint64_t n)
{
    ctx->t[0] += n;
    if (ctx->t[0] < n) {
        ctx->t[1]++;
    }
}

int
cm_blake2b_init(cm_blake2b_ctx *ctx, size_t outlen, const void *key,
                size_t keylen)
{
    if (outlen == 0 || outlen > CM_BLAKE2B_OUTBYTES ||
        keylen > CM_BLAKE2B_KEYBYTES) {
        return -1;
    }
    for (int i = 0; i < 8; i++) {
        ctx->h[i] = blake2b_iv[i];
    }
    ctx->h[0] ^= 0x01010000ULL ^ ((uint64_t)keylen << 8) ^ (uint64_t)outlen;
    ctx->t[0] = ctx->t[1] = 0;
    ctx->buflen = 0;
    ctx->outlen = outlen;
    memset(ctx->buf, 0, sizeof ctx->buf);
    if (keylen > 0) {
        memcpy(ctx->buf, key, keylen);
        ctx->buflen = CM_BLAKE2B_BLOCKBYTES;
    }
    return 0;
}

void
cm_blake2b_update(cm_blake2b_ctx *ctx, const void *in, size_t inlen)
{
    const uint8_t *p = (const uint8_t *)in;
    while (inlen > 0) {
        /* the last block is compressed by final, so flush only when more
         * follows */
        if (ctx->buflen == CM_BLAKE2B_BLOCKBYTES) {
            add_counter(ctx, CM_BLAKE2B_BLOCKBYTES);
            compress_block(ctx, ctx->buf, 0);
            ctx->buflen = 0;
        }
        if (ctx->buflen == 0) {
            while (inlen > CM_BLAKE2B_BLOCKBYTES) {
                add_counter(ctx, CM_BLAKE2B_BLOCKBYTES);
                compress_block(ctx, p, 0);
                p += CM_BLAKE2B_BLOCKBYTES;
                inlen -= CM_BLAKE2B_BLOCKBYTES;
            }
        }
        size_t take = CM_BLAKE2B_BLOCKBYTES - ctx->buflen;
        if (take > inlen) {
            take = inlen;
        }
        memcpy(ctx->buf + ctx->buflen, p, take);
        ctx->buflen += take;
        p += take;
        inlen -= take;
    }
}

void
cm_blake2b_final(cm_blake2b_ctx *ctx, void *out)
{
    uint8_t full[CM_BLAKE2B_OUTBYTES];
    add_counter(ctx, ctx->buflen);
    memset(ctx->buf + ctx->buflen, 0, CM_BLAKE2B_BLOCKBYTES - ctx->buflen);
    compress_block(ctx, ctx->buf, 1);
    for (int i = 0; i < 8; i++) {
        for (int j = 0; j < 8; j++) {
            full[8 * i + j] = (uint8_t)(ctx->h[i] >> (8 * j));
        }
    }
    memcpy(out, full, ctx->outlen);
}

int
cm_blake2b(void *out, size_t outlen, const void *key, size_t keylen,
           const void *in, size_t inlen)
{
    cm_blake2b_ctx ctx;
    if (cm_blake2b_init(&ctx, outlen, key, keylen) < 0) {
        return -1;
    }
    cm_blake2b_update(&ctx, in, inlen);
    cm_blake2b_final(&ctx, out);
    return 0;
}

/* ---- Python: blake2b(data, /, digest_size=32, key=b"") ---- */

static const char *const blake2b_names[] = {"data", "digest_size", "key"};
static const cm_args blake2b_args = {"blake2b", blake2b_names, 3, 1, 3, 1};

static PyObject *
py_blake2b(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
           PyObject *kwnames)
{
    PyObject *argv[3], *out = NULL;
    cm_input data, key = {.data = NULL, .len = 0};
    Py_ssize_t digest_size = 32;
    if (cm_args_parse(&blake2b_args, args, nargs, kwnames, argv) < 0 ||
        (argv[1] != NULL && cm_args_ssize(argv[1], &digest_size) < 0)) {
        return NULL;
    }
    if (digest_size < 1 || digest_size > CM_BLAKE2B_OUTBYTES) {
        PyErr_Format(PyExc_ValueError, "digest_size must be 1..64, not %zd",
                     digest_size);
        return NULL;
    }
    if (cm_input_get(argv[0], &data) < 0) {
        return NULL;
    }
    if (argv[2] != NULL && cm_input_get(argv[2], &key) < 0) {
        cm_input_release(&data);
        return NULL;
    }
    if (key.len > CM_BLAKE2B_KEYBYTES) {
        PyErr_Format(PyExc_ValueError, "key must be at most 64 bytes, not %zd",
                     key.len);
        goto done;
    }
    uint8_t digest[CM_BLAKE2B_OUTBYTES];
    cm_blake2b_ctx ctx;
    cm_blake2b_init(&ctx, (size_t)digest_size, key.data, (size_t)key.len);
    if (data.len > 4096) {
        Py_BEGIN_ALLOW_THREADS
        cm_blake2b_update(&ctx, data.data, (size_t)data.len);
        Py_END_ALLOW_THREADS
    }
    else {
        cm_blake2b_update(&ctx, data.data, (size_t)data.len);
    }
    cm_blake2b_final(&ctx, digest);
    out = PyBytes_FromStringAndSize((const char *)digest, digest_size);
done:
    cm_input_release(&data);
    if (argv[2] != NULL) {
        cm_input_release(&key);
    }
    return out;
}

static PyMethodDef blake2b_methods[] = {
    {"blake2b", (PyCFunction)(void (*)(void))py_blake2b,
     METH_FASTCALL | METH_KEYWORDS,
     PyDoc_STR("blake2b($module, data, /, digest_size=32, key=b'')\n--\n\n"
               "BLAKE2b digest of data (RFC 7693).")},
    {NULL, NULL, 0, NULL},
};

int
cm_blake2b_exec(PyObject *module, cm_state *st)
{
    (void)st;
    return PyModule_AddFunctions(module, blake2b_methods);
}

int
cm_blake2b_traverse(cm_state *st, visitproc visit, void *arg)
{
    (void)st;
    (void)visit;
    (void)arg;
    return 0;
}

void
cm_blake2b_clear(cm_state *st)
{
    (void)st;
}
