/* MessagePack: packb / unpackb (csrc/msgpack.c wires them into the module,
 * csrc/msgpack_pack.c encodes, csrc/msgpack_unpack.c decodes). The format and
 * the extension mapping are documented at the top of csrc/msgpack.c and in
 * docs/msgpack.md. */
#ifndef CM_MSGPACK_H
#define CM_MSGPACK_H

#include "common.h"
#include "buffer.h"

/* Containers nested deeper than this are refused by both directions. */
#define CM_MP_MAX_DEPTH 512
/* unpackb refuses inputs larger than this (256 MiB). */
#define CM_MP_MAX_INPUT ((Py_ssize_t)256 * 1024 * 1024)

/* Arrays longer than this are not allocated at their full count up front. */
#define CM_MP_LIST_PRESIZE_MAX ((uint64_t)65536)
/* unpackb pauses the cyclic GC while it decodes inputs this large. */
#define CM_MP_GC_PAUSE_SIZE ((Py_ssize_t)64 * 1024)

/* packb writes its first bytes into a buffer of this size on the C stack. */
#define CM_MP_PACK_STACK 2048
/* A larger output starts at the previous large output's size, up to this. */
#define CM_MP_PACK_HINT_MAX ((Py_ssize_t)4 * 1024 * 1024)

/* Extension type codes (see csrc/msgpack.c). */
#define CM_MP_EXT_TIMESTAMP (-1) /* aware datetime, the msgpack.org one */
#define CM_MP_EXT_DATE 1
#define CM_MP_EXT_TIME 2
#define CM_MP_EXT_DATETIME 3 /* naive datetime */
#define CM_MP_EXT_UUID 4
#define CM_MP_EXT_DECIMAL 5

/* The cache of short map-key strings used by unpackb (like msgspec's). */
#define CM_MP_KEY_CACHE_SIZE 512
#define CM_MP_KEY_CACHE_MAXLEN 32
/* Non-ASCII str up to this many bytes are decoded by msgpack_unpack.c. */
#define CM_MP_UTF8_SHORT 256

typedef struct {
    /* PyDateTime_CAPI * (capsule data), or NULL when the datetime module is
     * the pure-Python one (an isolated subinterpreter of Python 3.12): then
     * fields are read and objects made through the classes below. */
    void *dt_capi;
    PyObject *datetime_mod; /* keeps the capsule's module alive */
    PyObject *dt_datetime;  /* datetime.datetime, .date, .time, ... */
    PyObject *dt_date;
    PyObject *dt_time;
    PyObject *dt_timedelta;
    PyObject *dt_timezone;
    PyObject *dt_utc;    /* datetime.timezone.utc */
    PyObject *Enum;      /* enum.Enum */
    PyObject *UUID;      /* uuid.UUID, looked up when first needed */
    PyObject *Decimal;   /* decimal.Decimal, looked up when first needed */
    PyObject *BaseModel; /* pydantic.BaseModel once pydantic is loaded */
    PyObject *dc_fields; /* dataclasses.fields */
    PyObject *str_value; /* interned attribute names */
    PyObject *str_utcoffset;
    PyObject *str_model_dump;
    PyObject *str_dc_fields; /* "__dataclass_fields__" */
    PyObject *str_name;
    PyObject *str_bytes;
    PyObject *str_int;
    PyObject *keys[CM_MP_KEY_CACHE_SIZE]; /* str or NULL */
    Py_ssize_t pack_hint; /* size of the last large packb output, capped */
} cm_msgpack_state;

/* Append the MessagePack encoding of obj to b. -1 with an exception set. */
int cm_mp_pack(cm_state *st, cm_buf *b, PyObject *obj);

/* Decode exactly one object from data[0:len]; trailing bytes are an error.
 * NULL with MalformedError (or MemoryError) set. */
PyObject *cm_mp_unpack(cm_state *st, const char *data, Py_ssize_t len);

/* Python entry points (METH_O). */
PyObject *cm_msgpack_packb(PyObject *module, PyObject *obj);
PyObject *cm_msgpack_unpackb(PyObject *module, PyObject *data);

/* The lazily resolved classes (UUID, Decimal, BaseModel): 0 or -1. */
int cm_mp_resolve_lazy(cm_msgpack_state *ms);

CM_DECLARE_CONCERN(msgpack);

#endif
