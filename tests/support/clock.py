"""A clock a test moves by hand, for code that takes a ``clock`` callable."""

from __future__ import annotations

__all__ = ["FakeClock"]


class FakeClock:
    """``clock()`` reads ``clock.now``; the test moves it: ``clock.now += 1.5``."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
