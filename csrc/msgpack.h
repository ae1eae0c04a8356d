#ifndef CM_MSGPACK_H
#define CM_MSGPACK_H

#include "common.h"

typedef struct {
    int reserved;
} cm_msgpack_state;

CM_DECLARE_CONCERN(msgpack);

#endif
