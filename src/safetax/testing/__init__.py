"""Helpers for tests: real servers (:mod:`.prometheus`, :mod:`.seaweedfs`) and a clock to move by hand."""

from __future__ import annotations


class FakeClock:
    """A monotonic clock that a test advances by hand: rate limits and durations without sleeping.

    >>> clock = FakeClock()
    >>> clock.advance(2.5)
    >>> clock()
    1002.5
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
