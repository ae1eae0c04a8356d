/* The stored entry: one MessagePack record per cached response (format at the
 * top of entry.c and in docs/entry-format.md). */
#ifndef CM_ENTRY_H
#define CM_ENTRY_H

#include "common.h"

#define CM_ENTRY_FORMAT_VERSION 1
#define CM_ENTRY_MAX_BODY ((Py_ssize_t)64 * 1024 * 1024)
#define CM_ENTRY_FINGERPRINT_SIZE 8
/* "\"" + base64url(16-byte BLAKE2b) without padding + "\"" */
#define CM_ENTRY_ETAG_SIZE 24

/* Header names and values common enough that the reader hands out one shared
 * bytes object for them instead of a new one per hit. */
#define CM_ENTRY_N_COMMON 12

typedef struct {
    PyTypeObject *EntryType;
    PyObject *common[CM_ENTRY_N_COMMON];
} cm_entry_state;

/* The strong ETag of a body into out[CM_ENTRY_ETAG_SIZE]. */
void cm_entry_etag(const void *body, size_t n, char *out);

CM_DECLARE_CONCERN(entry);

#endif
