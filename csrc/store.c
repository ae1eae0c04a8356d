/* MemoryStore: a bounded map bytes -> bytes with per-item expiry, a byte
 * budget and LRU eviction, O(1) per operation.
 *
 * Layout: a chained hash table (power-of-two buckets, load factor <= 1,
 * doubled as it fills) of nodes that are also on one intrusive circular
 * doubly-linked LRU list around a sentinel: sentinel.next is the least
 * recently used item, sentinel.prev the most recent.
 *
 * Semantics (the twin in fastapi_cachemate/_pure/store.py is the oracle):
 *   - an item costs len(key) + len(value) + CM_STORE_ITEM_OVERHEAD bytes;
 *   - it is expired when expires_at <= now; get() drops an expired item and
 *     returns None, else moves the item to the most recent end;
 *   - set() removes the key's item, stores nothing when the new item alone is
 *     larger than max_bytes; when the budget is short it first drops the
 *     expired items among the CM_STORE_EXPIRED_SCAN least recently used ones
 *     (not counted), then evicts least recently used items (counted in
 *     `evictions`) until the item fits;
 *   - add() stores like set() only when the key is absent or expired.
 *
 * Keys and values must be exact bytes: hashing (bytes' own cached hash),
 * comparing (memcmp) and releasing them runs no Python code, so a mutation
 * cannot be re-entered half-way. Thread safety comes from the GIL: no method
 * releases it, and each runs to completion before another thread can enter.
 */
#include "store.h"

#include <math.h>
#include <structmember.h>

#include "state.h"

#include "args.h"

#define MIN_BUCKETS 16

typedef struct store_node {
    struct store_node *hnext; /* next in the bucket's chain */
    struct store_node *prev;  /* LRU list */
    struct store_node *next;
    PyObject *key;   /* exact bytes, owned */
    PyObject *value; /* exact bytes, owned */
    double expires_at;
    Py_hash_t hash;
} store_node;

typedef struct {
    PyObject_HEAD
    store_node **buckets;
    size_t mask;    /* nbuckets - 1 */
    size_t count;   /* items */
    store_node lru; /* sentinel: lru.next oldest, lru.prev newest */
    Py_ssize_t nbytes;
    Py_ssize_t max_bytes;
    Py_ssize_t evictions;
} StoreObject;

static inline Py_ssize_t
item_cost(const store_node *n)
{
    return PyBytes_GET_SIZE(n->key) + PyBytes_GET_SIZE(n->value) +
           CM_STORE_ITEM_OVERHEAD;
}

static inline void
lru_unlink(store_node *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
}

static inline void
lru_push_newest(StoreObject *s, store_node *n)
{
    n->prev = s->lru.prev;
    n->next = &s->lru;
    s->lru.prev->next = n;
    s->lru.prev = n;
}

static store_node *
find(StoreObject *s, PyObject *key, Py_hash_t hash)
{
    Py_ssize_t len = PyBytes_GET_SIZE(key);
    const char *kp = PyBytes_AS_STRING(key);
    for (store_node *n = s->buckets[(size_t)hash & s->mask]; n != NULL;
         n = n->hnext) {
        if (n->hash == hash &&
            (n->key == key ||
             (PyBytes_GET_SIZE(n->key) == len &&
              memcmp(PyBytes_AS_STRING(n->key), kp, (size_t)len) == 0))) {
            return n;
        }
    }
    return NULL;
}

/* Unlink n from its bucket and the LRU list, release it. */
static void
remove_node(StoreObject *s, store_node *n)
{
    store_node **pp = &s->buckets[(size_t)n->hash & s->mask];
    while (*pp != n) {
        pp = &(*pp)->hnext;
    }
    *pp = n->hnext;
    lru_unlink(n);
    s->count--;
    s->nbytes -= item_cost(n);
    PyObject *key = n->key, *value = n->value;
    PyMem_Free(n);
    /* exact bytes: their deallocation runs no Python code */
    Py_DECREF(key);
    Py_DECREF(value);
}

static int
grow(StoreObject *s)
{
    size_t nb = (s->mask + 1) * 2;
    store_node **fresh = PyMem_Calloc(nb, sizeof(store_node *));
    if (fresh == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i <= s->mask; i++) {
        store_node *n = s->buckets[i];
        while (n != NULL) {
            store_node *next = n->hnext;
            size_t j = (size_t)n->hash & (nb - 1);
            n->hnext = fresh[j];
            fresh[j] = n;
            n = next;
        }
    }
    PyMem_Free(s->buckets);
    s->buckets = fresh;
    s->mask = nb - 1;
    return 0;
}

static void
remove_all(StoreObject *s)
{
    store_node *n = s->lru.next;
    while (n != &s->lru) {
        store_node *next = n->next;
        Py_DECREF(n->key);
        Py_DECREF(n->value);
        PyMem_Free(n);
        n = next;
    }
    s->lru.next = s->lru.prev = &s->lru;
    if (s->buckets != NULL) {
        memset(s->buckets, 0, (s->mask + 1) * sizeof(store_node *));
    }
    s->count = 0;
    s->nbytes = 0;
}

/* set() after type checks. 1 if stored, 0 if too large, -1 on error. */
static int
store_item(StoreObject *s, PyObject *key, Py_hash_t hash, store_node *old,
           PyObject *value, double expires_at, double now)
{
    if (old != NULL) {
        remove_node(s, old);
    }
    Py_ssize_t cost = PyBytes_GET_SIZE(key) + PyBytes_GET_SIZE(value) +
                      CM_STORE_ITEM_OVERHEAD;
    if (cost > s->max_bytes) {
        return 0;
    }
    if (s->count + 1 > s->mask + 1 && grow(s) < 0) {
        return -1;
    }
    store_node *node = PyMem_Malloc(sizeof(store_node));
    if (node == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    if (s->nbytes > s->max_bytes - cost) {
        store_node *n = s->lru.next;
        for (int i = 0; i < CM_STORE_EXPIRED_SCAN && n != &s->lru; i++) {
            store_node *next = n->next;
            if (n->expires_at <= now) {
                remove_node(s, n);
            }
            n = next;
        }
    }
    while (s->nbytes > s->max_bytes - cost) {
        remove_node(s, s->lru.next);
        s->evictions++;
    }
    node->key = Py_NewRef(key);
    node->value = Py_NewRef(value);
    node->expires_at = expires_at;
    node->hash = hash;
    size_t b = (size_t)hash & s->mask;
    node->hnext = s->buckets[b];
    s->buckets[b] = node;
    lru_push_newest(s, node);
    s->count++;
    s->nbytes += cost;
    return 1;
}

/* ---- argument helpers ---- */

static inline int
check_key(PyObject *key)
{
    if (CM_UNLIKELY(!PyBytes_CheckExact(key))) {
        PyErr_Format(PyExc_TypeError, "key must be bytes, not %.100s",
                     Py_TYPE(key)->tp_name);
        return -1;
    }
    return 0;
}

static inline int
get_time(PyObject *o, const char *name, double *out)
{
    double v;
    if (CM_LIKELY(PyFloat_CheckExact(o))) {
        v = PyFloat_AS_DOUBLE(o);
    }
    else {
        v = PyFloat_AsDouble(o);
        if (v == -1.0 && PyErr_Occurred()) {
            return -1;
        }
    }
    if (CM_UNLIKELY(isnan(v))) {
        PyErr_Format(PyExc_ValueError, "%s must not be NaN", name);
        return -1;
    }
    *out = v;
    return 0;
}

static const char *const get_names[] = {"key", "now"};
static const char *const set_names[] = {"key", "value", "expires_at", "now"};
static const char *const keys_names[] = {"prefix"};
static const cm_args keys_args = {"keys", keys_names, 1, 1, 1, 0};

/* ---- methods ---- */

static store_node *
lookup_live(StoreObject *s, PyObject *const *argv, Py_ssize_t nargs,
            const char *name, int *err)
{
    const cm_args spec = {name, get_names, 2, 2, 2, 2};
    PyObject *args[2];
    double now;
    *err = -1;
    if (cm_args_parse(&spec, argv, nargs, NULL, args) < 0 ||
        check_key(args[0]) < 0 || get_time(args[1], "now", &now) < 0) {
        return NULL;
    }
    *err = 0;
    Py_hash_t hash = PyObject_Hash(args[0]); /* bytes: cannot fail */
    store_node *n = find(s, args[0], hash);
    if (n == NULL) {
        return NULL;
    }
    if (n->expires_at <= now) {
        remove_node(s, n);
        return NULL;
    }
    lru_unlink(n);
    lru_push_newest(s, n);
    return n;
}

static PyObject *
Store_get(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    int err;
    store_node *n = lookup_live((StoreObject *)op, args, nargs, "get", &err);
    if (n == NULL) {
        if (err) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    return Py_NewRef(n->value);
}

static PyObject *
Store_get_with_expiry(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    int err;
    store_node *n =
        lookup_live((StoreObject *)op, args, nargs, "get_with_expiry", &err);
    if (n == NULL) {
        if (err) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    PyObject *exp = PyFloat_FromDouble(n->expires_at);
    if (exp == NULL) {
        return NULL;
    }
    PyObject *out = PyTuple_Pack(2, n->value, exp);
    Py_DECREF(exp);
    return out;
}

/* set / add: 1 stored, 0 not stored, -1 error */
static int
set_or_add(StoreObject *s, PyObject *const *argv, Py_ssize_t nargs,
           const char *name, int only_if_absent)
{
    const cm_args spec = {name, set_names, 4, 4, 4, 4};
    PyObject *args[4];
    double expires_at, now;
    if (cm_args_parse(&spec, argv, nargs, NULL, args) < 0 ||
        check_key(args[0]) < 0) {
        return -1;
    }
    if (CM_UNLIKELY(!PyBytes_CheckExact(args[1]))) {
        PyErr_Format(PyExc_TypeError, "value must be bytes, not %.100s",
                     Py_TYPE(args[1])->tp_name);
        return -1;
    }
    if (get_time(args[2], "expires_at", &expires_at) < 0 ||
        get_time(args[3], "now", &now) < 0) {
        return -1;
    }
    Py_hash_t hash = PyObject_Hash(args[0]);
    store_node *old = find(s, args[0], hash);
    if (only_if_absent && old != NULL && old->expires_at > now) {
        return 0;
    }
    return store_item(s, args[0], hash, old, args[1], expires_at, now);
}

static PyObject *
Store_set(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    if (set_or_add((StoreObject *)op, args, nargs, "set", 0) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
Store_add(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    int rc = set_or_add((StoreObject *)op, args, nargs, "add", 1);
    if (rc < 0) {
        return NULL;
    }
    return PyBool_FromLong(rc);
}

static PyObject *
Store_delete(PyObject *op, PyObject *key)
{
    StoreObject *s = (StoreObject *)op;
    if (check_key(key) < 0) {
        return NULL;
    }
    store_node *n = find(s, key, PyObject_Hash(key));
    if (n == NULL) {
        Py_RETURN_FALSE;
    }
    remove_node(s, n);
    Py_RETURN_TRUE;
}

static PyObject *
Store_clear(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    remove_all((StoreObject *)op);
    Py_RETURN_NONE;
}

static Py_ssize_t
Store_len(PyObject *op)
{
    return (Py_ssize_t)((StoreObject *)op)->count;
}

static PyObject *
Store_new(PyTypeObject *tp, PyObject *args, PyObject *kwargs)
{
    static const char *const names[] = {"max_bytes"};
    static const cm_args spec = {"MemoryStore", names, 1, 0, 1, 0};
    PyObject *arg;
    Py_ssize_t max_bytes = 64 * 1024 * 1024;
    if (cm_args_parse_tuple(&spec, args, kwargs, &arg) < 0 ||
        (arg != NULL && cm_args_ssize(arg, &max_bytes) < 0)) {
        return NULL;
    }
    if (max_bytes < 0) {
        PyErr_Format(PyExc_ValueError, "max_bytes must be >= 0, not %zd",
                     max_bytes);
        return NULL;
    }
    StoreObject *s = (StoreObject *)tp->tp_alloc(tp, 0);
    if (s == NULL) {
        return NULL;
    }
    s->lru.next = s->lru.prev = &s->lru;
    s->max_bytes = max_bytes;
    s->mask = MIN_BUCKETS - 1;
    s->buckets = PyMem_Calloc(MIN_BUCKETS, sizeof(store_node *));
    if (s->buckets == NULL) {
        Py_DECREF(s);
        return PyErr_NoMemory();
    }
    return (PyObject *)s;
}

static void
Store_dealloc(PyObject *op)
{
    StoreObject *s = (StoreObject *)op;
    PyTypeObject *tp = Py_TYPE(op);
    if (s->lru.next != NULL) {
        remove_all(s);
    }
    PyMem_Free(s->buckets);
    s->buckets = NULL;
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyObject *
Store_keys(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    StoreObject *s = (StoreObject *)op;
    PyObject *prefix, *out = NULL;
    const char *pp = "";
    Py_ssize_t plen = 0;
    if (cm_args_parse(&keys_args, args, nargs, NULL, &prefix) < 0) {
        return NULL;
    }
    if (prefix != NULL) {
        if (check_key(prefix) < 0) {
            return NULL;
        }
        pp = PyBytes_AS_STRING(prefix);
        plen = PyBytes_GET_SIZE(prefix);
    }
    out = PyList_New(0);
    if (out == NULL) {
        return NULL;
    }
    /* Appending runs no Python code (exact bytes, a list): the walk cannot
     * be re-entered and the LRU list cannot change under it. */
    for (store_node *n = s->lru.next; n != &s->lru; n = n->next) {
        if (PyBytes_GET_SIZE(n->key) < plen ||
            memcmp(PyBytes_AS_STRING(n->key), pp, (size_t)plen) != 0) {
            continue;
        }
        if (PyList_Append(out, n->key) < 0) {
            Py_DECREF(out);
            return NULL;
        }
    }
    return out;
}

static PyMethodDef Store_methods[] = {
    {"get", (PyCFunction)(void (*)(void))Store_get, METH_FASTCALL,
     PyDoc_STR("get($self, key, now, /)\n--\n\n"
               "The value (now the most recent item), or None; drops an "
               "expired item.")},
    {"get_with_expiry", (PyCFunction)(void (*)(void))Store_get_with_expiry,
     METH_FASTCALL,
     PyDoc_STR("get_with_expiry($self, key, now, /)\n--\n\n"
               "Like get, with the item's expires_at: (value, expires_at).")},
    {"set", (PyCFunction)(void (*)(void))Store_set, METH_FASTCALL,
     PyDoc_STR("set($self, key, value, expires_at, now, /)\n--\n\n"
               "Store (replacing); a value too large for max_bytes is not "
               "stored (and the old one under that key is gone).")},
    {"add", (PyCFunction)(void (*)(void))Store_add, METH_FASTCALL,
     PyDoc_STR("add($self, key, value, expires_at, now, /)\n--\n\n"
               "Store only if the key is absent or expired; True if stored.")},
    {"delete", Store_delete, METH_O,
     PyDoc_STR("delete($self, key, /)\n--\n\n"
               "Remove the item (expired or not); True if there was one.")},
    {"keys", (PyCFunction)(void (*)(void))Store_keys, METH_FASTCALL,
     PyDoc_STR("keys($self, prefix=b\"\", /)\n--\n\n"
               "The keys (expired ones included) that start with prefix, "
               "least recently used first; the items are not touched.")},
    {"clear", Store_clear, METH_NOARGS,
     PyDoc_STR("clear($self, /)\n--\n\nRemove every item.")},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Store_members[] = {
    {"nbytes", T_PYSSIZET, offsetof(StoreObject, nbytes), READONLY,
     "bytes of the budget in use"},
    {"max_bytes", T_PYSSIZET, offsetof(StoreObject, max_bytes), READONLY,
     "the byte budget"},
    {"evictions", T_PYSSIZET, offsetof(StoreObject, evictions), READONLY,
     "live items evicted to make room"},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot Store_slots[] = {
    {Py_tp_doc,
     (void *)PyDoc_STR("MemoryStore(max_bytes=67108864)\n--\n\n"
                       "A bounded map bytes -> bytes with per-item expiry, a "
                       "byte budget and LRU eviction.")},
    {Py_tp_new, Store_new},
    {Py_tp_dealloc, Store_dealloc},
    {Py_tp_methods, Store_methods},
    {Py_tp_members, Store_members},
    {Py_mp_length, Store_len},
    {Py_sq_length, Store_len},
    {0, NULL},
};

static PyType_Spec Store_spec = {
    .name = "fastapi_cachemate._native.MemoryStore",
    .basicsize = sizeof(StoreObject),
    .itemsize = 0,
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = Store_slots,
};

int
cm_store_exec(PyObject *module, cm_state *st)
{
    st->store.MemoryStoreType =
        (PyTypeObject *)PyType_FromModuleAndSpec(module, &Store_spec, NULL);
    if (st->store.MemoryStoreType == NULL) {
        return -1;
    }
    if (PyModule_AddObjectRef(module, "MemoryStore",
                              (PyObject *)st->store.MemoryStoreType) < 0 ||
        PyModule_AddIntConstant(module, "STORE_ITEM_OVERHEAD",
                                CM_STORE_ITEM_OVERHEAD) < 0 ||
        PyModule_AddIntConstant(module, "STORE_EXPIRED_SCAN",
                                CM_STORE_EXPIRED_SCAN) < 0) {
        return -1;
    }
    return 0;
}

int
cm_store_traverse(cm_state *st, visitproc visit, void *arg)
{
    Py_VISIT(st->store.MemoryStoreType);
    return 0;
}

void
cm_store_clear(cm_state *st)
{
    Py_CLEAR(st->store.MemoryStoreType);
}
