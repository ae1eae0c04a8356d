#ifndef CM_ENTRY_H
#define CM_ENTRY_H

#include "common.h"

typedef struct {
    int reserved;
} cm_entry_state;

CM_DECLARE_CONCERN(entry);

#endif
