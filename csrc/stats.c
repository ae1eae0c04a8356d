/* Stats and EndpointStats: per-process, per-endpoint cache counters.
 *
 * Layout: a Stats owns a dict name -> EndpointStats (created on the first
 * Stats.endpoint(name), the same row afterwards) and the breaker gauge. An
 * EndpointStats is its name and a fixed array of CM_N_STATS uint64 counters
 * (order: stats.h, STATS_COUNTERS). It holds no reference to its Stats, so a
 * row kept by an endpoint stays valid (and keeps counting, unseen) if the
 * Stats goes away; Stats.reset() zeroes the rows in place, so rows held by
 * endpoints keep being the ones read.
 *
 * Semantics (the twin in fastapi_cachemate/_pure/stats.py is the oracle):
 *   - hit, miss, stale, bypass, no_cache, refresh, refresh_failure,
 *     lock_wait, lock_timeout, backend_error: +1 on their counter;
 *   - stored(raw, stored): stored +1, bytes_before_compression += raw,
 *     bytes_after_compression += stored (ints >= 0);
 *   - not_stored(reason): not_stored +1 and not_stored_<reason> +1, reason
 *     an index into NOT_STORED_REASONS (ValueError outside);
 *   - add(counter, n=1): counter index in STATS_COUNTERS, n >= 0; nothing
 *     else is bumped;
 *   - snapshot(): {counter name: int}, every counter, zeros included.
 * Counters are unsigned 64-bit and wrap modulo 2**64 (the twin too).
 * Thread safety comes from the GIL: no method releases it.
 */
#include "stats.h"

#include "state.h"

#include "args.h"

/* Unsized, so that a name missing from a table is a compile error below. */
static const char *const counter_names[] = {
    "hits",
    "misses",
    "stale_served",
    "bypass",
    "no_cache",
    "stored",
    "not_stored",
    "refreshes",
    "refresh_failures",
    "lock_waits",
    "lock_timeouts",
    "backend_errors",
    "bytes_before_compression",
    "bytes_after_compression",
    "not_stored_status",
    "not_stored_set_cookie",
    "not_stored_no_store",
    "not_stored_private",
    "not_stored_vary_star",
    "not_stored_vary_unkeyed",
    "not_stored_head",
    "not_stored_head_empty_body",
    "not_stored_authorization",
    "not_stored_too_large",
    "not_stored_streaming",
    "not_stored_error",
};

static const char *const reason_names[] = {
    "status",        "set_cookie",   "no_store",  "private",
    "vary_star",     "vary_unkeyed", "head",      "head_empty_body",
    "authorization", "too_large",    "streaming", "error",
};

_Static_assert(sizeof(counter_names) / sizeof(counter_names[0]) == CM_N_STATS,
               "one name per counter of stats.h");
_Static_assert(sizeof(reason_names) / sizeof(reason_names[0]) == CM_N_REASONS,
               "one name per reason of stats.h");

/* --- EndpointStats ------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    PyObject *name; /* str */
    uint64_t c[CM_N_STATS];
} RowObject;

typedef struct {
    PyObject_HEAD
    PyObject *rows; /* dict str -> RowObject */
    int breaker_state;
} StatsObject;

static PyObject *
counts_dict(const uint64_t *c, PyObject *names)
{
    PyObject *out = PyDict_New();
    if (out == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < CM_N_STATS; i++) {
        PyObject *v = PyLong_FromUnsignedLongLong(c[i]);
        if (v == NULL) {
            goto error;
        }
        int rc = PyDict_SetItem(out, PyTuple_GET_ITEM(names, i), v);
        Py_DECREF(v);
        if (rc < 0) {
            goto error;
        }
    }
    return out;
error:
    Py_DECREF(out);
    return NULL;
}

#define ROW_BUMP(meth, idx)                                                 \
    static PyObject *Row_##meth(PyObject *op, PyObject *Py_UNUSED(ignored)) \
    {                                                                       \
        ((RowObject *)op)->c[idx]++;                                        \
        Py_RETURN_NONE;                                                     \
    }

ROW_BUMP(hit, CM_STAT_HITS)
ROW_BUMP(miss, CM_STAT_MISSES)
ROW_BUMP(stale, CM_STAT_STALE_SERVED)
ROW_BUMP(bypass, CM_STAT_BYPASS)
ROW_BUMP(no_cache, CM_STAT_NO_CACHE)
ROW_BUMP(refresh, CM_STAT_REFRESHES)
ROW_BUMP(refresh_failure, CM_STAT_REFRESH_FAILURES)
ROW_BUMP(lock_wait, CM_STAT_LOCK_WAITS)
ROW_BUMP(lock_timeout, CM_STAT_LOCK_TIMEOUTS)
ROW_BUMP(backend_error, CM_STAT_BACKEND_ERRORS)

/* An int >= 0 as uint64: TypeError for a non-int, ValueError below 0,
 * OverflowError above 2**64 - 1. Returns -1 with an exception set on error,
 * else 0 with *out set. */
static int
as_count(PyObject *obj, const char *what, uint64_t *out)
{
    if (!PyLong_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be int, not %.100s", what,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (overflow < 0 || (overflow == 0 && v < 0)) {
        PyErr_Format(PyExc_ValueError, "%s must be >= 0", what);
        return -1;
    }
    if (overflow == 0) {
        *out = (uint64_t)v;
        return 0;
    }
    unsigned long long u = PyLong_AsUnsignedLongLong(obj);
    if (u == (unsigned long long)-1 && PyErr_Occurred()) {
        return -1;
    }
    *out = (uint64_t)u;
    return 0;
}

/* An index in [0, n): TypeError for a non-int, ValueError outside. -1 with
 * an exception set on error. */
static Py_ssize_t
as_index(PyObject *obj, Py_ssize_t n, const char *what)
{
    if (!PyLong_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be int, not %.100s", what,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (overflow != 0 || v < 0 || v >= n) {
        PyErr_Format(PyExc_ValueError, "%s must be in 0..%zd", what, n - 1);
        return -1;
    }
    return (Py_ssize_t)v;
}

static PyObject *
Row_stored(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    static const char *const names[] = {"raw_bytes", "stored_bytes"};
    static const cm_args spec = {"stored", names, 2, 2, 2, 2};
    RowObject *row = (RowObject *)op;
    PyObject *argv[2];
    uint64_t raw = 0, stored = 0;
    if (cm_args_parse(&spec, args, nargs, NULL, argv) < 0 ||
        as_count(argv[0], "raw_bytes", &raw) < 0 ||
        as_count(argv[1], "stored_bytes", &stored) < 0) {
        return NULL;
    }
    row->c[CM_STAT_STORED]++;
    row->c[CM_STAT_BYTES_RAW] += raw;
    row->c[CM_STAT_BYTES_STORED] += stored;
    Py_RETURN_NONE;
}

static PyObject *
Row_not_stored(PyObject *op, PyObject *reason)
{
    RowObject *row = (RowObject *)op;
    Py_ssize_t r = as_index(reason, CM_N_REASONS, "reason");
    if (r < 0) {
        return NULL;
    }
    row->c[CM_STAT_NOT_STORED]++;
    row->c[CM_STAT_NOT_STORED_0 + r]++;
    Py_RETURN_NONE;
}

static PyObject *
Row_add(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    static const char *const names[] = {"counter", "n"};
    static const cm_args spec = {"add", names, 2, 2, 2, 1};
    RowObject *row = (RowObject *)op;
    PyObject *argv[2];
    uint64_t n = 1;
    if (cm_args_parse(&spec, args, nargs, NULL, argv) < 0) {
        return NULL;
    }
    Py_ssize_t i = as_index(argv[0], CM_N_STATS, "counter");
    if (i < 0) {
        return NULL;
    }
    if (argv[1] != NULL && as_count(argv[1], "n", &n) < 0) {
        return NULL;
    }
    row->c[i] += n;
    Py_RETURN_NONE;
}

static PyObject *
Row_snapshot(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    cm_state *st = cm_state_from_type(Py_TYPE(op));
    if (st == NULL) {
        return NULL;
    }
    return counts_dict(((RowObject *)op)->c, st->stats.counter_names);
}

static PyObject *
Row_reset(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    memset(((RowObject *)op)->c, 0, sizeof(((RowObject *)op)->c));
    Py_RETURN_NONE;
}

static PyObject *
Row_get_name(PyObject *op, void *Py_UNUSED(closure))
{
    return Py_NewRef(((RowObject *)op)->name);
}

static PyObject *
Row_repr(PyObject *op)
{
    RowObject *row = (RowObject *)op;
    return PyUnicode_FromFormat("<EndpointStats %R hits=%llu misses=%llu>",
                                row->name,
                                (unsigned long long)row->c[CM_STAT_HITS],
                                (unsigned long long)row->c[CM_STAT_MISSES]);
}

static void
Row_dealloc(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    Py_CLEAR(((RowObject *)op)->name);
    tp->tp_free(op);
    Py_DECREF(tp);
}

#define BUMP_DEF(meth, doc)                           \
    {                                                 \
#meth, Row_##meth, METH_NOARGS,               \
            PyDoc_STR(#meth "($self, /)\n--\n\n" doc) \
    }

static PyMethodDef Row_methods[] = {
    BUMP_DEF(hit, "A fresh entry was served: hits += 1."),
    BUMP_DEF(miss, "The endpoint ran for a cacheable request: misses += 1."),
    BUMP_DEF(stale, "A stale entry was served: stale_served += 1."),
    BUMP_DEF(bypass, "The request bypassed the cache: bypass += 1."),
    BUMP_DEF(no_cache, "The request was answered uncached: no_cache += 1."),
    BUMP_DEF(refresh,
             "A background refresh stored a new entry: refreshes "
             "+= 1."),
    BUMP_DEF(refresh_failure,
             "A background refresh failed: "
             "refresh_failures += 1."),
    BUMP_DEF(lock_wait,
             "A request waited for another's computation: "
             "lock_waits += 1."),
    BUMP_DEF(lock_timeout,
             "A wait for another's computation timed out: "
             "lock_timeouts += 1."),
    BUMP_DEF(backend_error, "A backend call failed: backend_errors += 1."),
    {"stored", (PyCFunction)(void (*)(void))Row_stored, METH_FASTCALL,
     PyDoc_STR("stored($self, raw_bytes, stored_bytes, /)\n--\n\n"
               "An entry was stored: stored += 1, bytes_before_compression "
               "+= raw_bytes, bytes_after_compression += stored_bytes.")},
    {"not_stored", Row_not_stored, METH_O,
     PyDoc_STR("not_stored($self, reason, /)\n--\n\n"
               "A response was not stored: not_stored += 1 and "
               "not_stored_<reason> += 1 (reason: an index into "
               "NOT_STORED_REASONS).")},
    {"add", (PyCFunction)(void (*)(void))Row_add, METH_FASTCALL,
     PyDoc_STR("add($self, counter, n=1, /)\n--\n\n"
               "Add n to one counter (an index into STATS_COUNTERS).")},
    {"snapshot", Row_snapshot, METH_NOARGS,
     PyDoc_STR("snapshot($self, /)\n--\n\n"
               "Every counter of this row: {name: int}.")},
    {"reset", Row_reset, METH_NOARGS,
     PyDoc_STR("reset($self, /)\n--\n\nZero every counter of this row.")},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Row_getset[] = {
    {"name", Row_get_name, NULL, "the endpoint's name", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot Row_slots[] = {
    {Py_tp_doc, (void *)PyDoc_STR("The counters of one endpoint (from "
                                  "Stats.endpoint(name)).")},
    {Py_tp_dealloc, Row_dealloc},
    {Py_tp_repr, Row_repr},
    {Py_tp_methods, Row_methods},
    {Py_tp_getset, Row_getset},
    {0, NULL},
};

static PyType_Spec Row_spec = {
    .name = "fastapi_cachemate._native.EndpointStats",
    .basicsize = sizeof(RowObject),
    .itemsize = 0,
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = Row_slots,
};

/* --- Stats -------------------------------------------------------------- */

static PyObject *
Stats_new(PyTypeObject *tp, PyObject *args, PyObject *kwargs)
{
    if (PyTuple_GET_SIZE(args) != 0 ||
        (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0)) {
        PyErr_SetString(PyExc_TypeError, "Stats() takes no arguments");
        return NULL;
    }
    StatsObject *s = (StatsObject *)tp->tp_alloc(tp, 0);
    if (s == NULL) {
        return NULL;
    }
    s->breaker_state = CM_BREAKER_CLOSED;
    s->rows = PyDict_New();
    if (s->rows == NULL) {
        Py_DECREF(s);
        return NULL;
    }
    return (PyObject *)s;
}

static void
Stats_dealloc(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    Py_CLEAR(((StatsObject *)op)->rows);
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyObject *
Stats_endpoint(PyObject *op, PyObject *name)
{
    StatsObject *s = (StatsObject *)op;
    PyObject *row = NULL;
    if (!PyUnicode_CheckExact(name)) {
        PyErr_Format(PyExc_TypeError, "name must be str, not %.100s",
                     Py_TYPE(name)->tp_name);
        return NULL;
    }
    row = PyDict_GetItemWithError(s->rows, name); /* borrowed */
    if (row != NULL) {
        return Py_NewRef(row);
    }
    if (PyErr_Occurred()) {
        return NULL;
    }
    cm_state *st = cm_state_from_type(Py_TYPE(op));
    if (st == NULL) {
        return NULL;
    }
    PyTypeObject *rt = st->stats.EndpointStatsType;
    RowObject *r = (RowObject *)rt->tp_alloc(rt, 0);
    if (r == NULL) {
        return NULL;
    }
    /* tp_alloc zeroes the counters */
    r->name = Py_NewRef(name);
    if (PyDict_SetItem(s->rows, name, (PyObject *)r) < 0) {
        Py_DECREF(r);
        return NULL;
    }
    return (PyObject *)r;
}

static PyObject *
Stats_snapshot(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    StatsObject *s = (StatsObject *)op;
    PyObject *out = NULL, *key = NULL, *value = NULL;
    cm_state *st = cm_state_from_type(Py_TYPE(op));
    if (st == NULL) {
        return NULL;
    }
    out = PyDict_New();
    if (out == NULL) {
        return NULL;
    }
    Py_ssize_t pos = 0;
    while (PyDict_Next(s->rows, &pos, &key, &value)) {
        /* making a dict may start a collection whose finalizers run Python
         * code (Stats.endpoint may add a row): hold the row and its name */
        Py_INCREF(key);
        Py_INCREF(value);
        PyObject *d =
            counts_dict(((RowObject *)value)->c, st->stats.counter_names);
        int rc = d == NULL ? -1 : PyDict_SetItem(out, key, d);
        Py_XDECREF(d);
        Py_DECREF(key);
        Py_DECREF(value);
        if (rc < 0) {
            goto error;
        }
    }
    return out;
error:
    Py_DECREF(out);
    return NULL;
}

static PyObject *
Stats_totals(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    StatsObject *s = (StatsObject *)op;
    PyObject *key = NULL, *value = NULL;
    uint64_t sum[CM_N_STATS];
    cm_state *st = cm_state_from_type(Py_TYPE(op));
    if (st == NULL) {
        return NULL;
    }
    memset(sum, 0, sizeof(sum));
    Py_ssize_t pos = 0;
    while (PyDict_Next(s->rows, &pos, &key, &value)) {
        const RowObject *r = (const RowObject *)value;
        for (Py_ssize_t i = 0; i < CM_N_STATS; i++) {
            sum[i] += r->c[i];
        }
    }
    return counts_dict(sum, st->stats.counter_names);
}

static PyObject *
Stats_reset(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    StatsObject *s = (StatsObject *)op;
    PyObject *key = NULL, *value = NULL;
    Py_ssize_t pos = 0;
    while (PyDict_Next(s->rows, &pos, &key, &value)) {
        RowObject *r = (RowObject *)value;
        memset(r->c, 0, sizeof(r->c));
    }
    s->breaker_state = CM_BREAKER_CLOSED;
    Py_RETURN_NONE;
}

static PyObject *
Stats_endpoints(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return PyDict_Keys(((StatsObject *)op)->rows);
}

static Py_ssize_t
Stats_len(PyObject *op)
{
    return PyDict_GET_SIZE(((StatsObject *)op)->rows);
}

static PyObject *
Stats_get_breaker(PyObject *op, void *Py_UNUSED(closure))
{
    return PyLong_FromLong(((StatsObject *)op)->breaker_state);
}

static int
Stats_set_breaker(PyObject *op, PyObject *value, void *Py_UNUSED(closure))
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError,
                        "breaker_state cannot be deleted");
        return -1;
    }
    Py_ssize_t v = as_index(value, 3, "breaker_state");
    if (v < 0) {
        return -1;
    }
    ((StatsObject *)op)->breaker_state = (int)v;
    return 0;
}

static PyMethodDef Stats_methods[] = {
    {"endpoint", Stats_endpoint, METH_O,
     PyDoc_STR("endpoint($self, name, /)\n--\n\n"
               "The counters of the endpoint named name (a str), created "
               "on the first call; the same object afterwards.")},
    {"snapshot", Stats_snapshot, METH_NOARGS,
     PyDoc_STR("snapshot($self, /)\n--\n\n"
               "{endpoint name: {counter name: int}} for every endpoint.")},
    {"totals", Stats_totals, METH_NOARGS,
     PyDoc_STR("totals($self, /)\n--\n\n"
               "{counter name: int} summed over the endpoints.")},
    {"endpoints", Stats_endpoints, METH_NOARGS,
     PyDoc_STR("endpoints($self, /)\n--\n\n"
               "The endpoint names, in the order they were first seen.")},
    {"reset", Stats_reset, METH_NOARGS,
     PyDoc_STR("reset($self, /)\n--\n\n"
               "Zero every counter (rows are kept: endpoints hold them) and "
               "set breaker_state to BREAKER_CLOSED.")},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Stats_getset[] = {
    {"breaker_state", Stats_get_breaker, Stats_set_breaker,
     "gauge: BREAKER_CLOSED, BREAKER_OPEN or BREAKER_HALF_OPEN", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot Stats_slots[] = {
    {Py_tp_doc,
     (void *)PyDoc_STR("Stats()\n--\n\n"
                       "Per-process cache counters, one EndpointStats row "
                       "per endpoint, and the breaker gauge.")},
    {Py_tp_new, Stats_new},
    {Py_tp_dealloc, Stats_dealloc},
    {Py_tp_methods, Stats_methods},
    {Py_tp_getset, Stats_getset},
    {Py_mp_length, Stats_len},
    {Py_sq_length, Stats_len},
    {0, NULL},
};

static PyType_Spec Stats_spec = {
    .name = "fastapi_cachemate._native.Stats",
    .basicsize = sizeof(StatsObject),
    .itemsize = 0,
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = Stats_slots,
};

/* --- the concern -------------------------------------------------------- */

static PyObject *
names_tuple(const char *const *names, Py_ssize_t n)
{
    PyObject *t = PyTuple_New(n);
    if (t == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *s = PyUnicode_InternFromString(names[i]);
        if (s == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, s);
    }
    return t;
}

int
cm_stats_exec(PyObject *module, cm_state *st)
{
    st->stats.counter_names = names_tuple(counter_names, CM_N_STATS);
    if (st->stats.counter_names == NULL) {
        return -1;
    }
    st->stats.reason_names = names_tuple(reason_names, CM_N_REASONS);
    if (st->stats.reason_names == NULL) {
        return -1;
    }
    st->stats.EndpointStatsType =
        (PyTypeObject *)PyType_FromModuleAndSpec(module, &Row_spec, NULL);
    if (st->stats.EndpointStatsType == NULL) {
        return -1;
    }
    st->stats.StatsType =
        (PyTypeObject *)PyType_FromModuleAndSpec(module, &Stats_spec, NULL);
    if (st->stats.StatsType == NULL) {
        return -1;
    }
    if (PyModule_AddObjectRef(module, "Stats",
                              (PyObject *)st->stats.StatsType) < 0 ||
        PyModule_AddObjectRef(module, "EndpointStats",
                              (PyObject *)st->stats.EndpointStatsType) < 0 ||
        PyModule_AddObjectRef(module, "STATS_COUNTERS",
                              st->stats.counter_names) < 0 ||
        PyModule_AddObjectRef(module, "NOT_STORED_REASONS",
                              st->stats.reason_names) < 0 ||
        PyModule_AddIntConstant(module, "BREAKER_CLOSED", CM_BREAKER_CLOSED) <
            0 ||
        PyModule_AddIntConstant(module, "BREAKER_OPEN", CM_BREAKER_OPEN) < 0 ||
        PyModule_AddIntConstant(module, "BREAKER_HALF_OPEN",
                                CM_BREAKER_HALF_OPEN) < 0) {
        return -1;
    }
    return 0;
}

int
cm_stats_traverse(cm_state *st, visitproc visit, void *arg)
{
    Py_VISIT(st->stats.StatsType);
    Py_VISIT(st->stats.EndpointStatsType);
    Py_VISIT(st->stats.counter_names);
    Py_VISIT(st->stats.reason_names);
    return 0;
}

void
cm_stats_clear(cm_state *st)
{
    Py_CLEAR(st->stats.StatsType);
    Py_CLEAR(st->stats.EndpointStatsType);
    Py_CLEAR(st->stats.counter_names);
    Py_CLEAR(st->stats.reason_names);
}
