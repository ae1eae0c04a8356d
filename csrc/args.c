#include "args.h"

/* names[k] without its '!' mark */
static inline const char *
name_of(const cm_args *spec, int k)
{
    const char *name = spec->names[k];
    return name[0] == '!' ? name + 1 : name;
}

static int
is_required(const cm_args *spec, int k)
{
    return k < spec->required || spec->names[k][0] == '!';
}

/* One keyword argument: its slot by name, or -1 with TypeError. */
static int
keyword_slot(const cm_args *spec, PyObject *key, Py_ssize_t nargs,
             PyObject **out)
{
    if (!PyUnicode_Check(key)) {
        PyErr_Format(PyExc_TypeError, "%s() keywords must be strings",
                     spec->fname);
        return -1;
    }
    for (int k = 0; k < spec->n; k++) {
        if (PyUnicode_CompareWithASCIIString(key, name_of(spec, k)) != 0) {
            continue;
        }
        if (k < spec->posonly) {
            PyErr_Format(PyExc_TypeError,
                         "%s() got some positional-only arguments passed as "
                         "keyword arguments: '%U'",
                         spec->fname, key);
            return -1;
        }
        if (k < nargs || out[k] != NULL) {
            PyErr_Format(PyExc_TypeError,
                         "%s() got multiple values for argument '%U'",
                         spec->fname, key);
            return -1;
        }
        return k;
    }
    PyErr_Format(PyExc_TypeError,
                 "%s() got an unexpected keyword argument '%U'", spec->fname,
                 key);
    return -1;
}

int
cm_args_slow(const cm_args *spec, PyObject *const *args, Py_ssize_t nargs,
             PyObject *kwnames, PyObject *kwargs, PyObject **out)
{
    if (nargs > spec->npos) {
        if (spec->npos == spec->required) {
            PyErr_Format(PyExc_TypeError,
                         "%s() takes exactly %d positional argument%s (%zd "
                         "given)",
                         spec->fname, spec->npos, spec->npos == 1 ? "" : "s",
                         nargs);
        }
        else {
            PyErr_Format(PyExc_TypeError,
                         "%s() takes at most %d positional argument%s (%zd "
                         "given)",
                         spec->fname, spec->npos, spec->npos == 1 ? "" : "s",
                         nargs);
        }
        return -1;
    }
    for (int k = 0; k < spec->n; k++) {
        out[k] = k < nargs ? args[k] : NULL;
    }
    if (kwnames != NULL) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kwnames); i++) {
            int k =
                keyword_slot(spec, PyTuple_GET_ITEM(kwnames, i), nargs, out);
            if (k < 0) {
                return -1;
            }
            out[k] = args[nargs + i];
        }
    }
    if (kwargs != NULL) {
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        /* the caller holds the dict, and nothing here runs Python code */
        while (PyDict_Next(kwargs, &pos, &key, &value)) {
            int k = keyword_slot(spec, key, nargs, out);
            if (k < 0) {
                return -1;
            }
            out[k] = value;
        }
    }
    for (int k = 0; k < spec->n; k++) {
        if (out[k] == NULL && is_required(spec, k)) {
            if (k < spec->npos && k >= nargs && kwnames == NULL &&
                kwargs == NULL) {
                PyErr_Format(
                    PyExc_TypeError,
                    "%s() takes %s %d positional argument%s (%zd "
                    "given)",
                    spec->fname,
                    spec->required == spec->npos ? "exactly" : "at least",
                    spec->required, spec->required == 1 ? "" : "s", nargs);
            }
            else {
                PyErr_Format(PyExc_TypeError,
                             "%s() missing required argument '%s'",
                             spec->fname, name_of(spec, k));
            }
            return -1;
        }
    }
    return 0;
}

int
cm_args_ssize(PyObject *o, Py_ssize_t *out)
{
    Py_ssize_t v = PyNumber_AsSsize_t(o, PyExc_OverflowError);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    *out = v;
    return 0;
}
