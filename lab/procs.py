"""Process helpers for the labs: only ever applied to pids a lab started.

A process held here is a `psutil.Process`, which remembers the create time and
so never signals a pid that was reused by someone else.  This machine's init
does not reap orphans, so a daemonized Apache parent that exited lingers as a
zombie: a zombie counts as gone.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psutil

from wsgi_drain.deadline import Deadline


def is_gone(proc: psutil.Process) -> bool:
    """True when the process exited (or is a zombie, or its pid was reused)."""
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_gone(
    procs: Iterable[psutil.Process], deadline: Deadline, interval: float = 0.05
) -> list[psutil.Process]:
    """Wait until every process is gone or the deadline passes; return those still alive."""
    alive = list(procs)
    while True:
        alive = [p for p in alive if not is_gone(p)]
        if not alive or deadline.expired():
            return alive
        time.sleep(min(interval, deadline.remaining()))


def kill(procs: Iterable[psutil.Process], timeout: float = 5.0) -> list[psutil.Process]:
    """SIGKILL each process still there, wait (bounded); return those still alive."""
    alive = [p for p in procs if not is_gone(p)]
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(signal.SIGKILL)
    return wait_gone(alive, Deadline(timeout))


def process(pid: int) -> psutil.Process | None:
    """The process for `pid` pinned to its create time, or None when it is gone."""
    try:
        proc = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None
    return None if is_gone(proc) else proc


def title(proc: psutil.Process) -> str:
    """argv[0] as the process shows it now (display-name rewrites it in place)."""
    try:
        raw = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.split(b"\0", 1)[0].decode(errors="replace").strip()


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log file, for error messages ('' when unreadable)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def unix_sockets(proc: psutil.Process) -> list[Any]:
    """The process's unix sockets with their bound paths (`laddr`); [] once it is gone."""
    try:
        return [c for c in proc.net_connections(kind="unix") if isinstance(c.laddr, str)]
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return []
