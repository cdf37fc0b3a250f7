"""Whether a group is ready for traffic: every process up and the health URL 2xx.

`undrain --wait-ready` asks this before it puts a backend back after
something other than `wsgi-drain restart` restarted the group: an Apache
reload for a renewed certificate or a rotated log, a configuration change.
Until the answer is yes the routers stay as they are, so users never reach a
group that is still starting or that came back broken.
"""

from __future__ import annotations

import time

from wsgi_drain.config import Settings
from wsgi_drain.deadline import Deadline
from wsgi_drain.discovery import find_group_apache, group_processes
from wsgi_drain.errors import ApacheConfigError, IdentityError, NotFoundError, UnhealthyError
from wsgi_drain.health import probe_for
from wsgi_drain.outcome import Progress

POLL = 0.25


def wait_ready(settings: Settings, timeout: float, progress: Progress) -> str:
    """Wait up to `timeout` s until the group is ready; what was seen, or UnhealthyError.

    Apache is looked up afresh each time (a reload may have just replaced its
    configuration and every daemon).  Not ready by the deadline raises
    UnhealthyError (exit 6) with the last reason and the repair command.
    """
    deadline = Deadline(timeout)
    while True:
        ready, seen = _look(settings)
        if ready:
            progress("ready", seen)
            return seen
        if deadline.expired():
            raise UnhealthyError(
                f"group {settings.group!r} not ready {timeout:g} s after undrain began: {seen}; "
                "the backend stays out of rotation. Fix the group (wsgi-drain check --group "
                f"{settings.group}), then run `wsgi-drain undrain --group {settings.group}`"
            )
        time.sleep(min(POLL, max(deadline.remaining(), 0.0)))


def _look(settings: Settings) -> tuple[bool, str]:
    named = settings.apache_pidfile is not None or settings.apache_config is not None
    try:
        instance = find_group_apache(settings)
    except ApacheConfigError:
        raise
    except NotFoundError as err:
        if not named:
            raise  # none or several Apache instances: waiting changes nothing
        return False, str(err)  # a reload may be rewriting the pid file
    group = instance.config.group(settings.group)  # a misspelt group: raised at once
    try:
        live = group_processes(instance, group)
    except (NotFoundError, IdentityError) as err:
        # Mid-reload the sockets or the processes may be between generations:
        # not ready yet, and the reason if it lasts.
        return False, str(err)
    up = f"{len(live.pids)}/{group.processes} processes up"
    if len(live.pids) < group.processes:
        return False, up
    if not settings.health_url:
        return True, f"{up}; no health URL"
    result = probe_for(settings)
    if not result.ok:
        return False, f"{up}; {settings.health_url} {result.said()}"
    return True, f"{up}; {result.describe()}"
