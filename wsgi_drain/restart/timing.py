"""The watch deadline, derived from the group's own timeouts, and the timing phases share."""

from __future__ import annotations

from wsgi_drain.apacheconf import DaemonGroup

# The Apache parent respawns a daemon 0.2-1 s after it exits (DESIGN.md); allow
# generously for a loaded host and the app's import time.
RESPAWN_MARGIN = 10.0
# How long an idle process takes to leave after SIGUSR1 in rolling mode before
# we conclude load keeps it busy.  mod_wsgi checks for "no active requests"
# when a request ends and from its monitor thread about once a second.
IDLE_WAIT = 2.0
# How often requests in flight are read on the host (/proc) while waiting for them.
HOST_POLL = 0.02


def watch_deadline(group: DaemonGroup, mode: str, timeout: float | None, processes: int) -> float:
    """The watch deadline in seconds: `timeout` (--timeout) if given, else the group's own.

    Drain mode signals every process at once: one drain window, one
    shutdown-timeout and the respawn.  Rolling mode does that one process at
    a time (`rolling_step` each, for at least one process).
    """
    if timeout is not None:
        return timeout
    if mode == "drain":
        return group.drain_window + group.shutdown_window + RESPAWN_MARGIN
    return rolling_step(group) * max(1, processes)


def rolling_step(group: DaemonGroup) -> float:
    """One rolling step: an idle wait (at most the drain window), shutdown-timeout, respawn."""
    return min(IDLE_WAIT, group.drain_window) + group.shutdown_window + RESPAWN_MARGIN
