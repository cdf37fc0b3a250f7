"""Whether the host was stopped for maintenance by `wsgi-drain stop` (read by `check`).

`stop` leaves its journal (kind "stop", under the host's name) naming the
routers it left out and why; until `undrain` puts them back, a check of any
group of the host says so instead of a bare "Apache is not running".
"""

from __future__ import annotations

import time
from pathlib import Path

from wsgi_drain.errors import DrainError
from wsgi_drain.state import HOST, Journal

STOPPED = "stopped-for-maintenance"


def stop_note(state_dir: Path, group: str, *, apache_running: bool = False) -> str | None:
    """What a maintenance stop left, for `check`; None when there is none (or it is unreadable).

    Once Apache runs again, a stop that left no router out (none was
    configured) is over: there is nothing for `undrain` to put back.
    """
    try:
        journal = Journal.load(state_dir, HOST, "stop")
    except DrainError:
        return None  # the journal rule of a restart reports broken journals; not this one
    if journal is None or (apache_running and not journal.still_diverted):
        return None
    ago = max(0.0, time.time() - journal.started)
    when = f"{ago / 60:.0f} min" if ago >= 120 else f"{ago:.0f} s"
    done = "" if journal.phase == STOPPED else f" (the stop did not finish: {journal.phase})"
    return (
        f"Apache stopped for maintenance by `wsgi-drain stop` (pid {journal.pid}, {when} ago)"
        f"{done}; the host is out of rotation. Once Apache runs again: "
        f"wsgi-drain undrain --group {group} --wait-ready 60"
    )
