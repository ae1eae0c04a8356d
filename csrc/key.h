#ifndef CM_KEY_H
#define CM_KEY_H

#include "common.h"

typedef struct {
    int reserved;
} cm_key_state;

CM_DECLARE_CONCERN(key);

#endif
