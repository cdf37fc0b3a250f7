"""A monotonic deadline that sub-steps can borrow from but never extend."""

from __future__ import annotations

import time
from collections.abc import Callable


class Deadline:
    """A point in `clock()` time after which a step has run out of time.

    `within(timeout)` gives a sub-deadline that ends at the earlier of now +
    timeout and this deadline, so a sub-step can never extend its parent.
    `clock` is injectable so tests can use a fake clock.
    """

    def __init__(self, timeout: float, clock: Callable[[], float] = time.monotonic) -> None:
        if timeout < 0:
            raise ValueError(f"timeout must be >= 0, got {timeout}")
        self._clock = clock
        self.at = clock() + timeout

    @classmethod
    def _at(cls, at: float, clock: Callable[[], float]) -> Deadline:
        d = cls(0.0, clock)
        d.at = at
        return d

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.at - self._clock())

    def expired(self) -> bool:
        return self._clock() >= self.at

    def within(self, timeout: float) -> Deadline:
        """A sub-deadline: now + timeout, capped at this deadline."""
        return Deadline._at(min(self.at, self._clock() + timeout), self._clock)

    def __repr__(self) -> str:
        return f"Deadline(remaining={self.remaining():.3f})"
