/* Per-process cache counters, one row of uint64 counters per endpoint.
 *
 * Stats holds the rows (a dict name -> EndpointStats) and the breaker gauge;
 * the request path keeps its endpoint's row and bumps it with METH_NOARGS
 * methods (row.hit()), so a hit costs one method call that increments one
 * integer: no argument parsing, no lookup, no allocation. Counters wrap at
 * 2**64 (never in practice). The twin is fastapi_cachemate/_pure/stats.py.
 */
#ifndef CM_STATS_H
#define CM_STATS_H

#include "common.h"

/* The counters of a row, in index order (STATS_COUNTERS in Python). */
enum {
    CM_STAT_HITS,
    CM_STAT_MISSES,
    CM_STAT_STALE_SERVED,
    CM_STAT_BYPASS,
    CM_STAT_NO_CACHE,
    CM_STAT_STORED,
    CM_STAT_NOT_STORED,
    CM_STAT_REFRESHES,
    CM_STAT_REFRESH_FAILURES,
    CM_STAT_LOCK_WAITS,
    CM_STAT_LOCK_TIMEOUTS,
    CM_STAT_BACKEND_ERRORS,
    CM_STAT_BYTES_RAW,    /* bytes_before_compression: bodies stored */
    CM_STAT_BYTES_STORED, /* bytes_after_compression: entries stored */
    CM_STAT_NOT_STORED_0, /* not_stored_<reason>, NOT_STORED_REASONS order */
};

/* Why a response was not stored (NOT_STORED_REASONS in Python). */
enum {
    CM_REASON_STATUS,
    CM_REASON_SET_COOKIE,
    CM_REASON_NO_STORE,
    CM_REASON_PRIVATE,
    CM_REASON_VARY_STAR,
    CM_REASON_VARY_UNKEYED,
    CM_REASON_HEAD,
    CM_REASON_HEAD_EMPTY_BODY,
    CM_REASON_AUTHORIZATION,
    CM_REASON_TOO_LARGE,
    CM_REASON_STREAMING,
    CM_REASON_ERROR,
    CM_N_REASONS,
};

#define CM_N_STATS (CM_STAT_NOT_STORED_0 + CM_N_REASONS)

/* Breaker gauge values (Stats.breaker_state). */
#define CM_BREAKER_CLOSED 0
#define CM_BREAKER_OPEN 1
#define CM_BREAKER_HALF_OPEN 2

typedef struct {
    PyTypeObject *StatsType;
    PyTypeObject *EndpointStatsType;
    PyObject *counter_names; /* tuple of str, CM_N_STATS */
    PyObject *reason_names;  /* tuple of str, CM_N_REASONS */
} cm_stats_state;

CM_DECLARE_CONCERN(stats);

#endif
