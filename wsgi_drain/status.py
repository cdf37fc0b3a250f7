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
    INTERRUPTED = 130


class NagiosStatus(IntEnum):
    """Exit statuses of `check`, by the Nagios plugin conventions."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3
