"""Twin of csrc/refresh.c: when a fresh hit should start a background refresh.

refresh_due, the seed's early-refresh window without its dead zones (docs/design.md):

    c, T, P, b = compute_ms, ttl_ms, max_planning_ms, buffer, each clamped to [0, DBL_MAX]
                 (NaN and negatives become 0, +inf becomes DBL_MAX)
    window     = max(b*c + min(3*c, P),  REFRESH_TTL_FLOOR * T)
    due        = 0 < remaining_ms < +inf  and  remaining_ms <= window

The seed also required remaining > c, which made the window empty for slow endpoints
(c*(1 - b) >= P) and, with its zero window for c = 0, for instant endpoints too. Here the
window always reaches down to expiry, and the floor (the last 5 % of the ttl) lets ~0 ms
endpoints refresh as well. remaining <= 0 (stale or expired) is never "due": expiry is
handled by the caller.

xfetch_due, probabilistic early expiration (Vattani et al., "Optimal Probabilistic Cache
Stampede Prevention"): due when compute_ms * beta * (-ln u) >= remaining_ms, u uniform in
(0, 1]. remaining not in (0, +inf) or u NaN: False; compute or beta NaN/negative count as 0
(never due); u <= 0 counts as the limit u -> 0 (-ln u = +inf: due when compute*beta > 0);
u >= 1 gives -ln u = 0 (never due). No NaN is ever compared.
"""

from __future__ import annotations

import math
import sys
from typing import Final

__all__ = ["REFRESH_TTL_FLOOR", "refresh_due", "refresh_window", "xfetch_due"]

REFRESH_TTL_FLOOR: Final = 0.05
_DBL_MAX: Final = sys.float_info.max


def _double(x: float) -> float:
    """float or int only, as the C side (PyFloat_Check / PyLong_Check)."""
    if isinstance(x, float):
        return x
    if isinstance(x, int):
        return float(x)
    raise TypeError(f"must be float or int, not {type(x).__name__}")


def _clamp(x: float) -> float:
    x = _double(x)
    if not x >= 0.0:  # NaN and negatives
        return 0.0
    return x if x <= _DBL_MAX else _DBL_MAX


def refresh_window(
    compute_ms: float, ttl_ms: float, max_planning_ms: float, buffer: float, /
) -> float:
    """The length (ms before expiry) of the early-refresh window; never NaN."""
    c = _clamp(compute_ms)
    t = _clamp(ttl_ms)
    p = _clamp(max_planning_ms)
    b = _clamp(buffer)
    three_c = 3.0 * c
    planned = three_c if three_c < p else p
    window = b * c + planned
    floor = REFRESH_TTL_FLOOR * t
    return window if window >= floor else floor


def refresh_due(
    compute_ms: float,
    remaining_ms: float,
    ttl_ms: float,
    max_planning_ms: float,
    buffer: float,
    /,
) -> bool:
    r = _double(remaining_ms)
    window = refresh_window(compute_ms, ttl_ms, max_planning_ms, buffer)
    return 0.0 < r < math.inf and r <= window


def xfetch_due(compute_ms: float, remaining_ms: float, beta: float, u: float, /) -> bool:
    r = _double(remaining_ms)
    u = _double(u)
    c = _clamp(compute_ms)
    b = _clamp(beta)
    if not 0.0 < r < math.inf or math.isnan(u):
        return False
    scale = c * b
    if scale == 0.0 or u >= 1.0:
        return False
    if u <= 0.0:
        return True
    return scale * -math.log(u) >= r
