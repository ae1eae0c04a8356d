/* Cache keys: KeySpec (prepared once per route) and build_key (per request).
 * The canonical encoding is documented at the top of key.c. */
#ifndef CM_KEY_H
#define CM_KEY_H

#include "common.h"

#define CM_KEY_FORMAT_VERSION 1
#define CM_KEY_DIGEST_BYTES 24 /* BLAKE2b output: 16 for the key, 8 for fp */
#define CM_KEY_HASH_BYTES 16
#define CM_KEY_FINGERPRINT_BYTES 8

typedef struct {
    PyTypeObject *KeySpecType;
} cm_key_state;

CM_DECLARE_CONCERN(key);

#endif
