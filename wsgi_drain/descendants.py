"""The processes a daemon started: recorded with their ancestry proven, followed, ended on request.

mod_wsgi gives an app no say when its daemon exits, and whatever the app
started is reparented to init and runs on (DESIGN.md "Whatever the app starts
outlives its daemon").  So before a daemon is signalled its descendants are
recorded, each through a pidfd opened while its ancestry is proven:

1. open a pidfd on the child found under a proven parent (/proc children);
2. read the child's parent pid and start time from /proc;
3. check, through the pidfds, that child and parent are both still alive.

A process alive after the reads is the one the reads described (a pid is not
reused while its process lives), so the pidfd names a real descendant of the
daemon for good: a signal sent through it can never reach a process that
reused the pid later.  Nothing found any other way is ever signalled.

A descendant is *left behind* once its daemon has gone and it still runs.
While its daemon lives (a stuck process) it is not, whatever it does.
Zombies count as gone (the hosts' init may never reap them).
"""

from __future__ import annotations

import os
import select
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from wsgi_drain import procfs
from wsgi_drain.procfs import Started

# At most this many descendants are followed in one run (each holds a pidfd
# until the run ends); a fork bomb is named by count, not followed.
MAX_FOLLOWED = 256
# How long a SIGKILLed process may take to be gone.
KILL_WAIT = 5.0


@dataclass
class Descendant(Started):
    """One process an old daemon started (directly or not), and what became of it.

    `ticks` is its start time in clock ticks since boot: pid and ticks name
    one process for good.  `ending` is None while it runs; then "exited" (by
    itself, before any signal of ours), "terminated" (after our SIGTERM),
    "killed" (after our SIGKILL) or "survived" (alive even after SIGKILL).
    """

    pid: int
    ticks: int
    daemon_pid: int
    daemon_ticks: int
    cmdline: list[str]
    fd: int = -1
    ending: str | None = None
    signals: list[str] = field(default_factory=list)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@dataclass
class Family:
    """One old daemon (a dup of its proven pidfd) and the descendants recorded for it."""

    daemon_pid: int
    daemon_ticks: int
    daemon_fd: int
    members: list[Descendant] = field(default_factory=list)

    @property
    def daemon_gone(self) -> bool:
        return exited(self.daemon_fd)


@dataclass
class Descendants:
    """Every old daemon's recorded descendants in one run (restart/leftovers.py reads it)."""

    families: list[Family] = field(default_factory=list)
    # Descendants seen but not followed (past MAX_FOLLOWED).
    untracked: int = 0

    @property
    def followed(self) -> int:
        return sum(len(f.members) for f in self.families)

    def record(self, daemon_pid: int, daemon_fd: int) -> Family | None:
        """Record the live descendants of a daemon named by `daemon_fd` (a proven member's pidfd).

        Call it right before the daemon is signalled.  The pidfd is
        duplicated: the caller keeps and closes its own.  None when the daemon
        has already gone (it has nothing to leave behind that we could prove).
        """
        ticks = procfs.start_ticks(daemon_pid)
        if ticks is None or exited(daemon_fd):
            return None
        family = Family(daemon_pid, ticks, os.dup(daemon_fd))
        self.families.append(family)
        self._walk(family, [(daemon_pid, ticks, family.daemon_fd)])
        return family

    def left_behind(self) -> list[Descendant]:
        """Descendants still running whose daemon has gone (their grandchildren found too).

        Processes that exited meanwhile are dropped (and their pidfds closed):
        they were not left behind.
        """
        found: list[Descendant] = []
        for family in self.families:
            if not family.daemon_gone:
                continue  # a stuck daemon keeps its descendants until it is gone
            alive = [m for m in family.members if m.ending is None and not exited(m.fd)]
            # Children a recorded descendant forked since the record are its own.
            self._walk(family, [(m.pid, m.ticks, m.fd) for m in alive])
            for member in family.members:
                if member.ending is None and exited(member.fd):
                    member.close()
                    continue
                if member.ending is None:
                    found.append(member)
        return _refreshed(found)

    def held(self) -> list[Descendant]:
        """Running descendants of daemons still alive (stuck): not left behind, yet."""
        return _refreshed(
            [
                m
                for f in self.families
                if not f.daemon_gone
                for m in f.members
                if m.ending is None and not exited(m.fd)
            ]
        )

    def close(self) -> None:
        for family in self.families:
            for member in family.members:
                member.close()
            if family.daemon_fd >= 0:
                os.close(family.daemon_fd)
                family.daemon_fd = -1

    def _walk(self, family: Family, parents: list[tuple[int, int, int]]) -> None:
        """Breadth first from `parents` (pid, ticks, pidfd): prove and record each new child."""
        known = {m.pid for m in family.members}
        queue = list(parents)
        while queue:
            parent, parent_ticks, parent_fd = queue.pop(0)
            for child in procfs.children(parent):
                if child in known:
                    continue
                if self.followed >= MAX_FOLLOWED:
                    self.untracked += 1
                    continue
                member = _prove(child, parent, parent_ticks, parent_fd, family)
                if member is None:
                    continue
                known.add(child)
                family.members.append(member)
                queue.append((child, member.ticks, member.fd))


def _prove(
    pid: int, parent: int, parent_ticks: int, parent_fd: int, family: Family
) -> Descendant | None:
    """Open a pidfd on `pid` and prove it a live child of `parent` (alive: `parent_fd`)."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return None  # gone already (or no pidfd: then nothing is ever signalled)
    ticks = procfs.start_ticks(pid)
    ppid = procfs.parent_of(pid)
    cmdline = procfs.cmdline(pid)
    proven = (
        ticks is not None
        and ppid == parent
        and ticks >= parent_ticks
        and not procfs.gone(pid)
        # Both still alive after the reads: the reads were about them.
        and not exited(fd)
        and not exited(parent_fd)
    )
    if not proven:
        os.close(fd)
        return None
    assert ticks is not None
    return Descendant(pid, ticks, family.daemon_pid, family.daemon_ticks, cmdline, fd)


def _refreshed(procs: list[Descendant]) -> list[Descendant]:
    """Read each command line again: one caught between fork and exec had none (or its parent's)."""
    for proc in procs:
        args = procfs.cmdline(proc.pid)
        if args and not exited(proc.fd):  # still alive after the read: the read was about it
            proc.cmdline = args
    return procs


def exited(fd: int) -> bool:
    """Whether the process a pidfd names has exited (a zombie counts); a closed fd counts."""
    if fd < 0:
        return True
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def end(
    procs: Iterable[Descendant],
    term_wait: float,
    *,
    wake_fd: int | None = None,
    kill_wait: float = KILL_WAIT,
) -> bool:
    """SIGTERM each process, wait up to `term_wait` s, SIGKILL the rest, wait; set each ending.

    Signals go only through each Descendant's own pidfd.  Returns False when
    `wake_fd` became readable (an interrupt) and the waits were cut short:
    the endings not known then stay None.
    """
    pending = [p for p in procs if p.ending is None]
    for proc in pending:
        if exited(proc.fd):
            proc.ending = "exited"
        elif _send(proc, signal.SIGTERM):
            proc.signals.append("SIGTERM")
    pending = [p for p in pending if p.ending is None]
    if not _wait(pending, term_wait, wake_fd, "terminated"):
        return False
    for proc in pending:
        if proc.ending is None and _send(proc, signal.SIGKILL):
            proc.signals.append("SIGKILL")
    pending = [p for p in pending if p.ending is None]
    if not _wait(pending, kill_wait, wake_fd, "killed"):
        return False
    for proc in pending:
        if proc.ending is None:
            proc.ending = "survived"
    return True


def _send(proc: Descendant, sig: signal.Signals) -> bool:
    try:
        signal.pidfd_send_signal(proc.fd, sig)
    except ProcessLookupError:
        # Gone between our look and the signal: by itself, or from our SIGTERM.
        proc.ending = "terminated" if proc.signals else "exited"
        return False
    return True


def _wait(procs: list[Descendant], timeout: float, wake_fd: int | None, ending: str) -> bool:
    """Wait until each has exited (ending set) or `timeout` passes; False if woken by wake_fd."""
    left = {p.fd: p for p in procs if p.ending is None}
    end_at = time.monotonic() + timeout
    poller = select.poll()
    for fd in left:
        poller.register(fd, select.POLLIN)
    if wake_fd is not None:
        poller.register(wake_fd, select.POLLIN)
    while left:
        remaining = end_at - time.monotonic()
        if remaining <= 0:
            return True
        for fd, _event in poller.poll(max(1, int(remaining * 1000))):
            if fd == wake_fd:
                return False
            proc = left.pop(fd, None)
            if proc is not None:
                poller.unregister(fd)
                proc.ending = ending
    return True
