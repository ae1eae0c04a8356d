#ifndef CM_REFRESH_H
#define CM_REFRESH_H

#include "common.h"

typedef struct {
    int reserved;
} cm_refresh_state;

CM_DECLARE_CONCERN(refresh);

#endif
