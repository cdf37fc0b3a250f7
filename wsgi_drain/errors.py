"""Exceptions that carry their data and the exit status they map to.

Each builds its message once, at the raise site; the CLI prints `str(err)` and
exits with `err.status`.  Nothing here formats for a terminal.
"""

from __future__ import annotations

from wsgi_drain.status import ExitStatus


class DrainError(Exception):
    """Base of every error wsgi-drain reports to a user instead of a traceback."""

    status: ExitStatus = ExitStatus.ERROR


class UsageError(DrainError):
    """A request that cannot be carried out as asked (e.g. SIGUSR2 as restart signal)."""

    status = ExitStatus.USAGE


class ConfigError(DrainError):
    """wsgi-drain's own configuration (TOML, options) is invalid."""

    status = ExitStatus.USAGE


class NotFoundError(DrainError):
    """Apache, its configuration, or the group could not be found or told apart."""

    status = ExitStatus.NOT_FOUND


class ApacheConfigError(NotFoundError):
    """The Apache configuration could not be read (missing file, bad syntax)."""


class GroupNotFoundError(NotFoundError):
    """The named WSGIDaemonProcess group is not in the Apache configuration."""

    def __init__(self, group: str, known: tuple[str, ...], config: str) -> None:
        self.group = group
        self.known = known
        names = ", ".join(known) if known else "none"
        super().__init__(f"group {group!r} not found in {config}; groups defined there: {names}")


class RouterError(DrainError):
    """A front-end router could not be reached or refused a command."""

    status = ExitStatus.ROUTER

    def __init__(self, router: str, message: str) -> None:
        self.router = router
        super().__init__(f"{router}: {message}")


class NotReplacedError(DrainError):
    """Old processes did not exit, or replacements did not appear, in time."""

    status = ExitStatus.NOT_REPLACED


class UnhealthyError(DrainError):
    """The group is not healthy after the restart."""

    status = ExitStatus.UNHEALTHY


class LockedError(DrainError):
    """Another run holds the group's lock."""

    status = ExitStatus.LOCKED

    def __init__(self, group: str, path: str, holder: str) -> None:
        self.group = group
        self.path = path
        super().__init__(
            f"another wsgi-drain run holds the lock for group {group!r} ({path}{holder}); "
            "wait for it to finish"
        )


class Interrupted(DrainError):
    """SIGINT or SIGTERM arrived during a run."""

    status = ExitStatus.INTERRUPTED
