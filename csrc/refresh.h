/* Refresh decisions on plain doubles, so they can be tested exhaustively
 * against the Python twin (fastapi_cachemate/_pure/refresh.py).
 *
 * cm_refresh_due: the seed's early-refresh window without its dead zones.
 *   c, T, P, b = compute_ms, ttl_ms, max_planning_ms, buffer, each clamped to
 *                [0, DBL_MAX] (NaN and negatives become 0, +inf DBL_MAX)
 *   window     = max(b*c + min(3*c, P), CM_REFRESH_TTL_FLOOR * T)
 *   due        = 0 < remaining_ms < +inf && remaining_ms <= window
 * The seed also asked remaining > c: that emptied the window of endpoints
 * slower than the cap (c*(1-b) >= P) and, with a zero window at c = 0, of
 * instant endpoints. The window here reaches down to expiry and is never
 * shorter than the last 5 % of the ttl. remaining <= 0 is expiry (the
 * caller's business), never "due". The window is never NaN: it is a sum and
 * products of non-negative non-NaN numbers (inf only by overflow).
 *
 * cm_xfetch_due: probabilistic early expiration (XFetch):
 *   due = compute_ms * beta * (-ln u) >= remaining_ms,  u uniform in (0, 1]
 * remaining not in (0, +inf) or u NaN: 0. compute and beta clamped as above
 * (c*beta == 0: never due, which also avoids 0 * inf). u >= 1: -ln u = 0,
 * never due. u <= 0: the limit u -> 0, -ln u = +inf, due (c*beta > 0 here).
 * log() is only called on u in (0, 1): no domain error, no NaN compared.
 */
#ifndef CM_REFRESH_H
#define CM_REFRESH_H

#include "common.h"

#define CM_REFRESH_TTL_FLOOR 0.05

typedef struct {
    int reserved;
} cm_refresh_state;

double cm_refresh_window(double compute_ms, double ttl_ms,
                         double max_planning_ms, double buffer);
int cm_refresh_due(double compute_ms, double remaining_ms, double ttl_ms,
                   double max_planning_ms, double buffer);
int cm_xfetch_due(double compute_ms, double remaining_ms, double beta,
                  double u);

CM_DECLARE_CONCERN(refresh);

#endif
