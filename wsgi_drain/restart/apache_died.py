"""Apache itself died during the run (the OOM killer, a crash): say so at once.

Once the parent is gone nothing respawns the daemons and the group's socket
is gone with it, so waiting for replacements (or for Apache to come back, as
after an `apachectl restart`) only delays the verdict.  A parent that exits
cleanly removes its pid file; one that was killed leaves the file naming its
dead pid.  So: the parent gone and the pid file still naming it (or naming
another pid that is not running) is a death; a pid file naming a live
parent, or none at all (a stop, perhaps a start under way), is a restart
that apache_restarted.py follows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from wsgi_drain import procfs
from wsgi_drain.discovery import GroupProcesses
from wsgi_drain.errors import ApacheDiedError
from wsgi_drain.restart.policy import Verdict, ours_diverted
from wsgi_drain.restart.records import Run, Target, Watched


def pidfile_pid(path: Path | None) -> int | None:
    """The pid a pid file names; None when there is no file (or it is unreadable)."""
    if path is None:
        return None
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def died(parent_gone: bool, dead_pid: int, named: int | None, named_alive: bool) -> bool:
    """The rule (module docstring): is a gone parent a death rather than a restart?"""
    if not parent_gone or named is None:
        return False
    return named == dead_pid or not named_alive


def check_parent(run: Run, target: Target, watched: Watched, verdict: Verdict) -> None:
    """Raise ApacheDiedError at once when the Apache parent has died (module docstring)."""
    pid = target.instance.pid
    if not procfs.gone(pid):
        return
    path = run.settings.apache_pidfile or target.instance.config.pid_file
    named = pidfile_pid(path)
    if not died(True, pid, named, named is not None and not procfs.gone(named)):
        return
    verdict.healthy = False
    since = time.monotonic() - (watched.signalled_at or run.outcome.started)
    raise ApacheDiedError(died_message(run, pid, since))


def died_message(run: Run, pid: int, since: float) -> str:
    """The one line: who died when, what that means here, and what to do."""
    group = run.settings.group
    if ours_diverted(run.outcome.routers):
        where = (
            "the backend stays out of rotation. Start Apache again (e.g. `systemctl start "
            f"apache2`; its error log says why it died), check with `wsgi-drain check --group "
            f"{group}`, then put it back with `wsgi-drain undrain --group {group}`"
        )
    else:
        where = (
            "nothing was diverted (no router), so users reach a dead host. Start Apache again "
            f"(e.g. `systemctl start apache2`; its error log says why it died), then check with "
            f"`wsgi-drain check --group {group}`"
        )
    return f"Apache (pid {pid}) died {since:.2f} s after the signal; nothing serves here; {where}"


def guarded(
    read: Callable[[], GroupProcesses],
    run: Run,
    target: Target,
    watched: Watched,
    verdict: Verdict,
) -> Callable[[], GroupProcesses]:
    """`read`, which first makes sure the Apache parent is alive (else ApacheDiedError)."""

    def read_guarded() -> GroupProcesses:
        check_parent(run, target, watched, verdict)
        return read()

    return read_guarded
