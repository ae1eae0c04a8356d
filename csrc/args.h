/* The one argument parser of every entry point that takes more than one
 * argument (METH_FASTCALL, with or without METH_KEYWORDS, and tp_new).
 *
 * A cm_args describes the parameters as a Python signature would:
 *   def fname(names[0], ..., names[posonly-1], /,
 *             names[posonly], ..., names[npos-1], *,
 *             names[npos], ..., names[n-1])
 * where the first `required` are required (required <= npos) and, past npos,
 * a name whose first character is '!' is a required keyword-only one (the '!'
 * is not part of the name). cm_args_parse fills out[0..n) with borrowed
 * references, NULL for an optional argument not given. Nothing it calls runs
 * Python code. Converting the values (int ranges, buffers, str) is left to
 * each entry point.
 */
#ifndef CM_ARGS_H
#define CM_ARGS_H

#include "common.h"

#define CM_ARGS_MAX 16

typedef struct {
    const char *fname;
    const char *const *names;
    int n;
    int posonly;
    int npos;
    int required;
} cm_args;

int cm_args_slow(const cm_args *spec, PyObject *const *args, Py_ssize_t nargs,
                 PyObject *kwnames, PyObject *kwargs, PyObject **out);

/* METH_FASTCALL (kwnames NULL without METH_KEYWORDS): 0, or -1 with
 * TypeError. */
static inline int
cm_args_parse(const cm_args *spec, PyObject *const *args, Py_ssize_t nargs,
              PyObject *kwnames, PyObject **out)
{
    if (CM_LIKELY(kwnames == NULL && nargs >= spec->required &&
                  nargs <= spec->npos && spec->npos == spec->n)) {
        Py_ssize_t i = 0;
        for (; i < nargs; i++) {
            out[i] = args[i];
        }
        for (; i < spec->n; i++) {
            out[i] = NULL;
        }
        return 0;
    }
    return cm_args_slow(spec, args, nargs, kwnames, NULL, out);
}

/* An int argument, anything with __index__ (as PyArg's "n"): 0, or -1 with
 * TypeError or OverflowError. May run Python code (__index__). */
int cm_args_ssize(PyObject *o, Py_ssize_t *out);

/* tp_new: the arguments as a tuple and a dict (or NULL). */
static inline int
cm_args_parse_tuple(const cm_args *spec, PyObject *args, PyObject *kwargs,
                    PyObject **out)
{
    return cm_args_slow(spec, &PyTuple_GET_ITEM(args, 0),
                        PyTuple_GET_SIZE(args), NULL, kwargs, out);
}

#endif
