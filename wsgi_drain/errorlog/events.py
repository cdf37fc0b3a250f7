"""The events mod_wsgi's lifecycle lines record, and how a daemon's life ended.

mod_wsgi logs each step of a daemon process's life at ``info`` (start,
graceful request, "Requests have completed", timer expired, shutdown,
abort, exit) and the Apache parent logs the death it noticed.  Reading those
lines is the only way to tell, after the fact, whether an old process drained
cleanly or was forced off with requests still running.  The wording changed
completely between mod_wsgi 4.x/5.x and 6.x; both are recognised here.  See
docs/mod_wsgi.md for where each line comes from.

Event kinds (``LifecycleEvent.kind``):

``started``
    A daemon process began ("Starting [daemon] process 'G' with ...").  Logged
    by the new process itself, so its pid is the replacement's pid.  There is
    no separate "restarted" line: the parent's ``died`` line is followed by the
    replacement's ``started`` line.
``graceful``
    A graceful stop was requested while requests were running (SIGUSR1, or
    maximum-requests / restart-interval / cpu-time-limit / 6.x request-timeout
    reached).  The process *keeps accepting new requests* until it is idle
    (``completed``) or its graceful/eviction timer expires (``timer_expired``).
``completed``
    The process found itself idle and stopped by itself: "Requests have
    completed", or a graceful request / restart interval / maximum requests /
    CPU limit that arrived while nothing was running ("... triggering immediate
    shutdown"), or the idle inactivity timer.
``timer_expired``
    The graceful/eviction timer ran out ("graceful timer expired" in 4.x,
    "restart timer expired ...; forcing shutdown" in 6.x): shutdown begins with
    requests possibly still running; they get shutdown-timeout.
``limit``
    The process stops itself because a fault limit tripped (deadlock timer,
    request time limit, startup timer); shutdown begins with requests running.
``shutdown``
    "Shutdown requested": the main thread has begun shutting down and no longer
    accepts requests; the shutdown-timeout reaper starts now.  Follows every
    one of the above, and comes alone on SIGTERM/SIGINT (or an Apache
    restart/stop).
``aborting``
    shutdown-timeout expired: the process exits at once (status 255) and any
    request still running is cut off.
``stopping``
    "Stopping process": every running request finished, the interpreter is
    being torn down (the clean path).
``exiting``
    The process's last line, on both the clean and the aborted path.
``died``
    The Apache parent noticed the death and starts a replacement at once (also
    "appears to have been lost").  ``pid`` is the dead daemon's pid.
``deregistered``
    The parent stops watching the process because Apache itself is stopping
    or restarting: no replacement follows from this parent generation.
``terminated``
    The parent's report of the wait status: ``exit_code`` or ``signal`` is set.
    mod_wsgi decodes an already-decoded status with the POSIX wait macros, so
    only "exit code 0" and "signal N" lines appear, a non-zero exit code N
    below 127 reads as "signal N", and exit status 255 (the abort) logs no
    such line at all.  Apache core's "AH00052: child pid N exit signal ..."
    line (a daemon killed by a signal other than TERM/HUP/USR1/KILL) gives the
    same kind with ``group`` None.
``request_failed``
    An Apache worker lost a request because the daemon went away while it was
    running ("Truncated or oversized response headers received from daemon
    process" in 4.x, WSGI0146/WSGI0147 in 6.x).  ``pid`` is the worker's pid,
    not the daemon's.

Lines mod_wsgi writes that are not listed here (interpreter set-up and
teardown, "has been deregistered and will no longer be monitored", debug
lines) parse to None.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from wsgi_drain._compat import StrEnum

KINDS = frozenset(
    {
        "started",
        "graceful",
        "completed",
        "timer_expired",
        "limit",
        "shutdown",
        "aborting",
        "stopping",
        "exiting",
        "died",
        "deregistered",
        "terminated",
        "request_failed",
    }
)


class Ending(StrEnum):
    """How a daemon process's life ended, as far as the error log tells."""

    DRAINED = "drained"
    """It went idle and exited by itself ("Requests have completed" or equivalent)."""
    FORCED = "forced"
    """A timer expired or a stop signal arrived, and shutdown began while requests
    may have been running; they finished within shutdown-timeout."""
    ABORTED = "aborted"
    """shutdown-timeout expired (or a signal killed it): running requests were cut off."""
    EXITED = "exited"
    """It exited but the log does not say how (LogLevel hides info, lines not found)."""


@dataclass(frozen=True)
class LifecycleEvent:
    """One lifecycle line of one daemon process.

    ``pid`` is the daemon the line is about: the logging pid for the daemon's
    own lines, the dead daemon's pid for the parent's lines, and the Apache
    worker's pid for ``request_failed``.  ``group`` is None only when the line
    does not name it (Apache core's exit-signal line).
    """

    pid: int
    group: str | None
    kind: str
    line: str
    exit_code: int | None = None
    signal: int | None = None


def ending_of(events: Iterable[LifecycleEvent]) -> Ending:
    """How one daemon's life ended, from the events about its pid.

    The caller selects the pid (``request_failed`` events are about an Apache
    worker, not the daemon, and are ignored here).  Evidence of a cut-off wins
    over evidence of a drain: an ``aborting`` line or death by a signal is
    ABORTED; a timer, a fault limit, or a shutdown that no ``completed`` line
    preceded (SIGTERM, Apache restart) is FORCED; a ``completed`` line is
    DRAINED; anything else, including no events at all, is EXITED.
    """
    kinds: set[str] = set()
    killed = False
    for event in events:
        if event.kind == "request_failed":
            continue
        kinds.add(event.kind)
        if event.kind == "terminated" and event.signal is not None:
            killed = True
    if "aborting" in kinds or killed:
        return Ending.ABORTED
    if kinds & {"timer_expired", "limit"}:
        return Ending.FORCED
    if "completed" in kinds:
        return Ending.DRAINED
    if "shutdown" in kinds:
        return Ending.FORCED
    return Ending.EXITED
