"""Leak loops of Stats / EndpointStats: bumps, snapshots, totals, reset, lifecycle, errors."""

from _leakcheck import assert_no_leak, raises

from fastapi_cachemate import _native

stats = _native.Stats()
rows = [stats.endpoint(f"/e/{i}") for i in range(20)]
counter = [0]


def churn() -> None:
    i = counter[0] = counter[0] + 1
    row = rows[i % 20]
    row.hit()
    row.miss()
    row.stored(i, i // 2)
    row.not_stored(i % len(_native.NOT_STORED_REASONS))
    row.add(i % len(_native.STATS_COUNTERS), 2**63 + i)
    stats.endpoint(f"/e/{i % 20}")
    if i % 10 == 0:
        stats.snapshot()
        stats.totals()
        stats.endpoints()
        row.snapshot()
        repr(row)
    if i % 100 == 0:
        stats.reset()


def lifecycle() -> None:
    s = _native.Stats()
    for j in range(10):
        s.endpoint(f"ep{j}").hit()
    s.breaker_state = counter[0] % 3
    s.snapshot()


assert_no_leak(churn)
assert_no_leak(lifecycle, calls=2_000)
assert_no_leak(raises(lambda: rows[0].stored(-1, 0), ValueError))
assert_no_leak(raises(lambda: rows[0].stored(2**64, 0), OverflowError))
assert_no_leak(raises(lambda: rows[0].not_stored("x"), TypeError))
assert_no_leak(raises(lambda: rows[0].add(99), ValueError))
assert_no_leak(raises(lambda: stats.endpoint(b"x"), TypeError))
