/* The in-process store: a bounded map bytes -> bytes with per-item expiry, a
 * byte budget and LRU eviction (MemoryBackend and MemoryLockManager use it).
 */
#ifndef CM_STORE_H
#define CM_STORE_H

#include "common.h"

/* What one item costs beyond len(key) + len(value): about its node and the
 * two bytes objects' headers. */
#define CM_STORE_ITEM_OVERHEAD 64
/* How many least recently used items set() looks at for expired ones before
 * it evicts live ones. */
#define CM_STORE_EXPIRED_SCAN 8

typedef struct {
    PyTypeObject *MemoryStoreType;
} cm_store_state;

CM_DECLARE_CONCERN(store);

#endif
