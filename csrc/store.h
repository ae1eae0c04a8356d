#ifndef CM_STORE_H
#define CM_STORE_H

#include "common.h"

typedef struct {
    int reserved;
} cm_store_state;

CM_DECLARE_CONCERN(store);

#endif
