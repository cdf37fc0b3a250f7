"""A clock for the poll and deadline tests: it moves only when the code under test sleeps."""

from __future__ import annotations


class SleepClock:
    """Pass it as a Deadline's clock and its `sleep` in place of `time.sleep`.

    Each sleep is recorded and moves the clock by exactly that much, so a test
    asserts the pauses the code asked for, never a time measured on a shared
    machine.
    """

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
