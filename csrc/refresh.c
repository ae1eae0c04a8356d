/* Placeholder: filled in by the issue "Native core". */
#include "state.h"

int
cm_refresh_exec(PyObject *module, cm_state *st)
{
    (void)module;
    (void)st;
    return 0;
}

int
cm_refresh_traverse(cm_state *st, visitproc visit, void *arg)
{
    (void)st;
    (void)visit;
    (void)arg;
    return 0;
}

void
cm_refresh_clear(cm_state *st)
{
    (void)st;
}
