"""Exceptions that carry their data and the exit status they map to.

Each builds its message once, at the raise site; the CLI prints `str(err)` and
exits with `err.status`.  Nothing here formats for a terminal.
"""

from __future__ import annotations

from typing import Any

from wsgi_drain.status import ExitStatus, NagiosStatus

_S = ExitStatus
# Every exit status each command can return; its --help lists exactly these
# (tests/unit/test_check_messages.py reads the help against this table).
COMMAND_EXITS: dict[str, tuple[int, ...]] = {
    "restart": (
        _S.SUCCESS, _S.ERROR, _S.USAGE, _S.NOT_FOUND, _S.ROUTER, _S.NOT_REPLACED,
        _S.UNHEALTHY, _S.LOCKED, _S.ROLLED_BACK, _S.INTERRUPTED,
    ),
    "drain": (_S.SUCCESS, _S.ERROR, _S.USAGE, _S.ROUTER, _S.LOCKED, _S.INTERRUPTED),
    "undrain": (
        _S.SUCCESS, _S.ERROR, _S.USAGE, _S.NOT_FOUND, _S.ROUTER, _S.UNHEALTHY, _S.LOCKED,
        _S.INTERRUPTED,
    ),
    "status": (_S.SUCCESS, _S.ERROR, _S.USAGE, _S.NOT_FOUND),
    "check": tuple(NagiosStatus),
}  # fmt: skip


class DrainError(Exception):
    """Base of every error wsgi-drain reports to a user instead of a traceback.

    A subclass that has an exit status of its own names it in its class line
    (`class UsageError(DrainError, status=ExitStatus.USAGE)`); the errors
    below it inherit it.  This module lists them in the order of DESIGN.md's
    exit status table, each status's error first.
    """

    status: ExitStatus = ExitStatus.ERROR

    def __init_subclass__(cls, *, status: ExitStatus | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if status is not None:
            cls.status = status


class UnsupportedError(DrainError):
    """The system lacks something wsgi-drain needs to work safely (e.g. pidfd_open)."""


class UsageError(DrainError, status=ExitStatus.USAGE):
    """A request that cannot be carried out as asked (e.g. SIGUSR2 as restart signal)."""


class ConfigError(DrainError, status=ExitStatus.USAGE):
    """wsgi-drain's own configuration (TOML, options) is invalid."""


class NotFoundError(DrainError, status=ExitStatus.NOT_FOUND):
    """Apache, its configuration, or the group could not be found or told apart."""


class ApacheConfigError(NotFoundError):
    """The Apache configuration could not be read (missing file, bad syntax)."""


class ConfigTestError(ApacheConfigError):
    """`reload`: Apache's own configuration test failed; nothing was reloaded (exit 3).

    `output` is what Apache printed (its own words, for the operator).
    """

    def __init__(self, command: str, output: str) -> None:
        self.command = command
        self.output = output
        super().__init__(
            f"Apache's configuration test failed (`{command}`), nothing was reloaded and the "
            f"routers are put back; fix the configuration, then reload again. Apache said:\n"
            f"{output.strip()}"
        )


class GroupNotFoundError(NotFoundError):
    """The named WSGIDaemonProcess group is not in the Apache configuration."""

    def __init__(self, group: str, known: tuple[str, ...], config: str, hint: str = "") -> None:
        self.group = group
        self.known = known
        names = ", ".join(known) if known else "none"
        super().__init__(
            f"group {group!r} not found in {config}; groups defined there: {names}"
            + (f"; {hint}" if hint else "")
        )


class AmbiguousApacheError(NotFoundError):
    """Several Apache instances run and nothing given tells which one is meant."""


class GroupNotRunningError(NotFoundError):
    """The group is configured, but the running Apache has no socket (no process) for it."""


class IdentityError(NotFoundError):
    """Which processes belong to the group cannot be proven; nothing may be signalled."""


class RouterError(DrainError, status=ExitStatus.ROUTER):
    """A front-end router could not be reached or refused a command.

    `applied` says whether a state-changing command took effect: False when it
    was refused or never sent, None when it was sent and the answer was lost
    (it may have been carried out).
    """

    def __init__(self, router: str, message: str, *, applied: bool | None = False) -> None:
        self.router = router
        self.applied = applied
        super().__init__(f"{router}: {message}")


class JournalError(DrainError, status=ExitStatus.ROUTER):
    """A run journal cannot be read: truncated, edited by hand, from a newer version.

    Exit status 4: the journal is the record of router state, and without it
    the router step cannot be done safely.
    """

    def __init__(self, path: object, group: str | None, why: str) -> None:
        self.path = path
        self.group = group
        repair = (
            f"check the routers it may have left diverted, then repair with "
            f"`wsgi-drain undrain --group {group} --haproxy ...` (naming them), which moves "
            "the broken journal aside"
            if group
            else "move it aside once its routers are checked"
        )
        super().__init__(f"run journal {path} {why}; {repair}")


class NotReplacedError(DrainError, status=ExitStatus.NOT_REPLACED):
    """Old processes did not exit, or replacements did not appear, in time."""


class UnhealthyError(DrainError, status=ExitStatus.UNHEALTHY):
    """The group is not healthy after the restart."""


class CrashLoopError(UnhealthyError):
    """The group's new processes die as they start, again and again."""


class ApacheDiedError(UnhealthyError):
    """The Apache parent died during the run (the OOM killer, a crash): nothing serves."""


class RollbackFailedError(UnhealthyError):
    """The new code failed and the rollback did not bring the old code back."""


class LockedError(DrainError, status=ExitStatus.LOCKED):
    """Another run holds the group's lock, or the lock of a router server it needs."""

    def __init__(self, group: str, path: str, holder: str, *, router: bool = False) -> None:
        self.group = group
        self.path = path
        if router:
            message = f"group {group!r} cannot divert now{holder} ({path})"
        else:
            message = (
                f"another wsgi-drain run holds the lock for group {group!r} ({path}{holder}); "
                "wait for it to finish"
            )
        super().__init__(message)


class RolledBack(DrainError, status=ExitStatus.ROLLED_BACK):
    """The new code failed; `--rollback` ran and the old code serves (exit 8)."""


class Interrupted(DrainError, status=ExitStatus.INTERRUPTED):
    """SIGINT or SIGTERM arrived during a run."""
