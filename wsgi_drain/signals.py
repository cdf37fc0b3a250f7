"""Sending restart signals safely: through a pidfd, to proven group members only.

A pidfd refers to one process for its whole life, so once it is open and the
process it names has been re-checked as a member of the group, a signal sent
through it can never reach a different process that later got the same pid.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field

from wsgi_drain.discovery import ApacheInstance, DaemonProcess, still_member
from wsgi_drain.errors import UnsupportedError, UsageError
from wsgi_drain.identity import GroupSocket

# SIGUSR1 is mod_wsgi's graceful restart on every version; SIGTERM stops a
# daemon accepting at once and gives in-flight requests shutdown-timeout.
RESTART_SIGNALS = {"SIGUSR1": signal.SIGUSR1, "SIGTERM": signal.SIGTERM}

_WHY_NOT = {
    "SIGUSR2": (
        "SIGUSR2 is not a restart signal: mod_wsgi 4.9/5.x daemons die at once on it "
        "(in-flight requests get 500) and 6.x only passes it to the application. "
        "Use SIGUSR1 (graceful restart, the default)"
    ),
    "SIGHUP": (
        "SIGHUP is not a restart signal for a mod_wsgi daemon (6.x hands it to the "
        "application). Use SIGUSR1 (graceful restart, the default)"
    ),
    "SIGKILL": "SIGKILL cuts off every request; wsgi-drain sends it only with --force to a "
    "process stuck past its deadline",
}


def parse_signal(name: str) -> signal.Signals:
    """The restart signal for a user's `--signal NAME` (USR1, SIGUSR1, TERM ...).

    Raises UsageError that explains the refusal for SIGUSR2 and friends.
    """
    key = name.strip().upper()
    if key.isdigit():
        try:
            key = signal.Signals(int(key)).name
        except ValueError:
            key = name
    if not key.startswith("SIG"):
        key = "SIG" + key
    if key in RESTART_SIGNALS:
        return RESTART_SIGNALS[key]
    if key in _WHY_NOT:
        raise UsageError(_WHY_NOT[key])
    allowed = ", ".join(RESTART_SIGNALS)
    raise UsageError(f"{name!r} is not a restart signal wsgi-drain sends; use one of {allowed}")


@dataclass
class Handle:
    """An open pidfd on a proven group member."""

    proc: DaemonProcess
    fd: int
    signalled: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, sig: signal.Signals) -> bool:
        """Signal the process; False when it has already exited."""
        try:
            signal.pidfd_send_signal(self.fd, sig)
        except ProcessLookupError:
            return False
        self.signalled.append(sig.name)
        return True

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


_NO_PIDFD = (
    "this system cannot signal through a pidfd ({why}); wsgi-drain needs Linux 5.3 or later "
    "(and Python 3.9+ built for it) because signalling a bare pid can reach an unrelated "
    "process that reused it"
)


def check_support() -> None:
    """Raise UnsupportedError unless pidfds work here: checked before anything is changed."""
    if not hasattr(os, "pidfd_open") or not hasattr(signal, "pidfd_send_signal"):
        raise UnsupportedError(_NO_PIDFD.format(why="this Python has no os.pidfd_open"))
    try:
        fd = os.pidfd_open(os.getpid())
    except OSError as err:
        raise UnsupportedError(_NO_PIDFD.format(why=f"pidfd_open: {err.strerror}")) from err
    os.close(fd)


def open_handle(
    instance: ApacheInstance, sock: GroupSocket | None, proc: DaemonProcess
) -> Handle | None:
    """Open a pidfd on `proc` and prove it is still the group member we found.

    The check comes after the pidfd is open: if it passes, the fd names the
    member for good.  Returns None when the process is gone or is no longer a
    member (exited, replaced, pid reused).  Raises UnsupportedError when the
    kernel has no pidfd_open (ENOSYS): never falls back to a bare pid.
    """
    try:
        fd = os.pidfd_open(proc.pid)
    except ProcessLookupError:
        return None
    except OSError as err:
        raise UnsupportedError(_NO_PIDFD.format(why=f"pidfd_open: {err.strerror}")) from err
    if not still_member(instance, sock, proc):
        os.close(fd)
        return None
    return Handle(proc=proc, fd=fd)
