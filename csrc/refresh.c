/* Refresh decisions: the rules are written in refresh.h and
 * docs/design.md ("Refresh rule"); the Python twin is _pure/refresh.py. */
#include "state.h"

#include "args.h"

#include <float.h>
#include <math.h>

static double
clamp(double x)
{
    if (!(x >= 0.0)) { /* NaN and negatives */
        return 0.0;
    }
    return x <= DBL_MAX ? x : DBL_MAX;
}

double
cm_refresh_window(double compute_ms, double ttl_ms, double max_planning_ms,
                  double buffer)
{
    double c = clamp(compute_ms);
    double t = clamp(ttl_ms);
    double p = clamp(max_planning_ms);
    double b = clamp(buffer);
    double three_c = 3.0 * c;
    double planned = three_c < p ? three_c : p;
    double window = b * c + planned;
    double floor_ms = CM_REFRESH_TTL_FLOOR * t;
    return window >= floor_ms ? window : floor_ms;
}

int
cm_refresh_due(double compute_ms, double remaining_ms, double ttl_ms,
               double max_planning_ms, double buffer)
{
    double window =
        cm_refresh_window(compute_ms, ttl_ms, max_planning_ms, buffer);
    return remaining_ms > 0.0 && remaining_ms < INFINITY &&
           remaining_ms <= window;
}

int
cm_xfetch_due(double compute_ms, double remaining_ms, double beta, double u)
{
    if (!(remaining_ms > 0.0 && remaining_ms < INFINITY) || isnan(u)) {
        return 0;
    }
    double scale = clamp(compute_ms) * clamp(beta);
    if (scale == 0.0 || u >= 1.0) {
        return 0;
    }
    if (u <= 0.0) {
        return 1;
    }
    return scale * -log(u) >= remaining_ms;
}

/* ---- Python ---- */

/* float or int only (the twin does the same); -1 with TypeError otherwise. */
static int
as_double(PyObject *o, double *out)
{
    if (PyFloat_Check(o)) {
        *out = PyFloat_AS_DOUBLE(o);
        return 0;
    }
    if (PyLong_Check(o)) {
        *out = PyLong_AsDouble(o);
        return (*out == -1.0 && PyErr_Occurred()) ? -1 : 0;
    }
    PyErr_Format(PyExc_TypeError, "must be float or int, not %.100s",
                 Py_TYPE(o)->tp_name);
    return -1;
}

/* Every argument a float or an int, by position. */
static int
parse_doubles(const cm_args *spec, PyObject *const *args, Py_ssize_t nargs,
              double *out)
{
    PyObject *argv[5];
    if (cm_args_parse(spec, args, nargs, NULL, argv) < 0) {
        return -1;
    }
    for (int i = 0; i < spec->n; i++) {
        if (as_double(argv[i], &out[i]) < 0) {
            return -1;
        }
    }
    return 0;
}

static const char *const window_names[] = {"compute_ms", "ttl_ms",
                                           "max_planning_ms", "buffer"};
static const cm_args window_args = {
    "refresh_window", window_names, 4, 4, 4, 4};
static const char *const due_names[] = {"compute_ms", "remaining_ms", "ttl_ms",
                                        "max_planning_ms", "buffer"};
static const cm_args due_args = {"refresh_due", due_names, 5, 5, 5, 5};
static const char *const xfetch_names[] = {"compute_ms", "remaining_ms",
                                           "beta", "u"};
static const cm_args xfetch_args = {"xfetch_due", xfetch_names, 4, 4, 4, 4};

static PyObject *
py_refresh_window(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    double a[4];
    if (parse_doubles(&window_args, args, nargs, a) < 0) {
        return NULL;
    }
    return PyFloat_FromDouble(cm_refresh_window(a[0], a[1], a[2], a[3]));
}

static PyObject *
py_refresh_due(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    double a[5];
    if (parse_doubles(&due_args, args, nargs, a) < 0) {
        return NULL;
    }
    return PyBool_FromLong(cm_refresh_due(a[0], a[1], a[2], a[3], a[4]));
}

static PyObject *
py_xfetch_due(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    double a[4];
    if (parse_doubles(&xfetch_args, args, nargs, a) < 0) {
        return NULL;
    }
    return PyBool_FromLong(cm_xfetch_due(a[0], a[1], a[2], a[3]));
}

static PyMethodDef refresh_methods[] = {
    {"refresh_window", (PyCFunction)(void (*)(void))py_refresh_window,
     METH_FASTCALL,
     PyDoc_STR("refresh_window($module, compute_ms, ttl_ms, max_planning_ms, "
               "buffer, /)\n--\n\n"
               "ms before expiry from which refresh_due fires: "
               "max(b*c + min(3c, P), floor*ttl).")},
    {"refresh_due", (PyCFunction)(void (*)(void))py_refresh_due, METH_FASTCALL,
     PyDoc_STR("refresh_due($module, compute_ms, remaining_ms, ttl_ms, "
               "max_planning_ms, buffer, /)\n--\n\n"
               "True when a fresh hit should start a background refresh.")},
    {"xfetch_due", (PyCFunction)(void (*)(void))py_xfetch_due, METH_FASTCALL,
     PyDoc_STR("xfetch_due($module, compute_ms, remaining_ms, beta, u, /)\n"
               "--\n\n"
               "XFetch: compute_ms * beta * -ln(u) >= remaining_ms.")},
    {NULL, NULL, 0, NULL},
};

int
cm_refresh_exec(PyObject *module, cm_state *st)
{
    (void)st;
    PyObject *floor_obj = PyFloat_FromDouble(CM_REFRESH_TTL_FLOOR);
    if (floor_obj == NULL) {
        return -1;
    }
    int rc = PyModule_AddObjectRef(module, "REFRESH_TTL_FLOOR", floor_obj);
    Py_DECREF(floor_obj);
    if (rc < 0) {
        return -1;
    }
    return PyModule_AddFunctions(module, refresh_methods);
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
