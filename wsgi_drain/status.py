"""Exit statuses: the contract deploy scripts and monitoring read."""

from enum import IntEnum


class ExitStatus(IntEnum):
    """Exit statuses of `restart`, `drain` and `undrain` (DESIGN.md, "Exit statuses")."""

    SUCCESS = 0
    ERROR = 1
    USAGE = 2
    NOT_FOUND = 3
    ROUTER = 4
    NOT_REPLACED = 5
    UNHEALTHY = 6
    LOCKED = 7
    ROLLED_BACK = 8
    INTERRUPTED = 130


class NagiosStatus(IntEnum):
    """Exit statuses of `check`, by the Nagios plugin conventions."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3

    @property
    def severity(self) -> int:
        """How bad, for the worst-of rule: CRITICAL > WARNING > UNKNOWN > OK.

        UNKNOWN (something could not be read) must not hide a CRITICAL that
        was read, nor outrank a real WARNING.
        """
        return {0: 0, 3: 1, 1: 2, 2: 3}[int(self)]
