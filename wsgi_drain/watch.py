"""Waiting for old daemon processes to exit and for their replacements.

Exits are seen through pidfd readiness (the kernel wakes us the moment a
process exits; no polling).  Replacements cannot be waited on the same way -
nothing notifies a non-parent of a fork - so the group is re-read at a short
interval until the parent has spawned enough new members.
"""

from __future__ import annotations

import os
import select
import time
from collections.abc import Callable, Iterable

from wsgi_drain import procfs
from wsgi_drain.deadline import Deadline
from wsgi_drain.discovery import GroupProcesses
from wsgi_drain.interrupts import Interrupts
from wsgi_drain.signals import Handle

REPLACEMENT_INTERVAL = 0.05


def wait_exits(
    handles: Iterable[Handle],
    deadline: Deadline,
    interrupts: Interrupts,
    on_exit: Callable[[Handle, float], None],
) -> list[Handle]:
    """Wait until every handle's process has exited or the deadline passes.

    Calls `on_exit(handle, monotonic_time)` as each one exits.  Returns the
    handles still alive at the deadline.  Raises Interrupted on SIGINT/SIGTERM
    (the processes already signalled carry on restarting regardless).
    """
    alive = {h.fd: h for h in handles}
    poller = select.poll()
    for fd in alive:
        poller.register(fd, select.POLLIN)
    poller.register(interrupts.fd, select.POLLIN)
    while alive:
        interrupts.check()
        remaining = deadline.remaining()
        if remaining <= 0:
            break
        for fd, _event in poller.poll(max(1, int(remaining * 1000))):
            if fd == interrupts.fd:
                interrupts.sleep(0)  # drains the wake-up byte, raises Interrupted
                continue
            handle = alive.pop(fd, None)
            if handle is not None:
                poller.unregister(fd)
                on_exit(handle, time.monotonic())
    return list(alive.values())


def wait_replacements(
    read_group: Callable[[], GroupProcesses],
    gone: set[int],
    baseline: set[int],
    expected: int,
    deadline: Deadline,
    interrupts: Interrupts,
    on_new: Callable[[int, float], None] | None = None,
    give_up: Callable[[], bool] | None = None,
) -> GroupProcesses:
    """Re-read the group until it has `expected` members and none of `gone`.

    `on_new(pid, monotonic_time)` is called once for each member not in
    `baseline` (the pids known before the signal).  Returns the last reading, complete or not,
    when the deadline passes, or as soon as `give_up()` is true (a crash loop).
    """
    known = set(baseline)
    current = read_group()
    while True:
        for pid in current.pids:
            if pid not in known:
                known.add(pid)
                if on_new is not None:
                    on_new(pid, time.monotonic())
        if len(current.pids) >= expected and not (set(current.pids) & gone):
            return current
        if deadline.expired() or (give_up is not None and give_up()):
            return current
        interrupts.sleep(min(REPLACEMENT_INTERVAL, deadline.remaining()))
        current = read_group()


def died_within(pids: Iterable[int], settle: float, interrupts: Interrupts) -> set[int]:
    """Which of `pids` exit within `settle` seconds of starting (a replacement that crashes).

    Each process is watched through a pidfd until it is `settle` seconds old,
    so a death is seen the moment it happens and a healthy process costs at
    most what remains of its first `settle` seconds.  A pid already gone
    counts as died.
    """
    died: set[int] = set()
    fds: dict[int, tuple[int, float]] = {}
    try:
        for pid in pids:
            try:
                fd = os.pidfd_open(pid)
            except ProcessLookupError:
                died.add(pid)
                continue
            # Read after the pidfd is open: a pid reused since would have a
            # later start and only make the watch longer, never shorter.
            started = procfs.started_at(pid)
            if started is None:
                os.close(fd)
                died.add(pid)
                continue
            fds[fd] = (pid, started)
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        poller.register(interrupts.fd, select.POLLIN)
        pending = dict(fds)
        while pending:
            interrupts.check()
            oldest = min(started for _pid, started in pending.values())
            remaining = oldest + settle - procfs.boot_clock()
            if remaining <= 0:
                break
            for fd, _event in poller.poll(max(1, int(remaining * 1000))):
                if fd == interrupts.fd:
                    interrupts.sleep(0)
                    continue
                entry = pending.pop(fd, None)
                if entry is not None:
                    poller.unregister(fd)
                    died.add(entry[0])
            now = procfs.boot_clock()
            for fd, (_pid, started) in list(pending.items()):
                if started + settle <= now:
                    poller.unregister(fd)
                    del pending[fd]
    finally:
        for fd in fds:
            os.close(fd)
    return died
