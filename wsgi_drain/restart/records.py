"""What a run knows, as the small records its phases pass to one another.

`Run` is what the run was asked and where it reports (read by every phase;
only its Outcome, the report, is written).  `Target` is what discovery found,
followed through an Apache restart by apache_restarted.py (its only writer
after discovery).  `Routing` is the routers with their records and the
journal (divert.py and restore.py write them).  `Watched` is what the watch
learns from the signal on: the error log and the group's new members.  The
failure policy's own record, `Verdict`, lives in policy.py.  `Job` hands all
of them, with how to restart (the signal, --force), to the phases that need
them all once the lock is held: the signal, the watch, rolling mode and the
rollback.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from pathlib import Path

from wsgi_drain.applog import RunLog
from wsgi_drain.config import Settings
from wsgi_drain.descendants import Descendants
from wsgi_drain.discovery import ApacheInstance, GroupProcesses
from wsgi_drain.interrupts import Interrupts
from wsgi_drain.outcome import Outcome, Progress, RouterRecord
from wsgi_drain.restart.policy import Verdict
from wsgi_drain.routers import Router
from wsgi_drain.signals import Handle
from wsgi_drain.state import Journal


@dataclass(frozen=True)
class Run:
    """The run's settings, its progress callback, SIGINT/SIGTERM, and its report."""

    settings: Settings
    progress: Progress
    interrupts: Interrupts
    outcome: Outcome
    py_spy: Path | None = None

    def warn(self, message: str) -> None:
        self.outcome.warnings.append(message)
        self.progress("warning", message)


@dataclass
class Target:
    """The Apache instance and the group's processes, as discovered (and followed since).

    `procs.processes` stays the set found before the signal: the old
    processes; `expected` is processes= of the group as it runs (the files'
    value unless the running configuration could not be proven to be the one
    on disk).  `parent_pid` is the Apache parent at discovery.
    """

    instance: ApacheInstance
    procs: GroupProcesses
    expected: int
    parent_pid: int
    # Set once, when Apache restarted the group itself during the run.
    apache_restarted: str | None = None

    @property
    def old_pids(self) -> set[int]:
        return set(self.procs.pids)


@dataclass
class Routing:
    """Each router with its record in the report, and the journal of the run."""

    routers: tuple[tuple[str, Router], ...]
    records: list[RouterRecord]
    # A journal an earlier run of ours left behind (that run is gone).
    previous: Journal | None = None
    journal: Journal | None = None

    def paired(self) -> list[tuple[tuple[str, Router], RouterRecord]]:
        """Each router with its record (built together in discover, so always as many)."""
        assert len(self.routers) == len(self.records)
        return list(zip(self.routers, self.records))


@dataclass
class Watched:
    """What the watch learns from the signal on."""

    log: RunLog | None = None
    signalled_at: float | None = None
    # New members seen after the signal, and those of them seen gone again.
    seen_new: set[int] = field(default_factory=set)
    vanished: set[int] = field(default_factory=set)
    # The old daemons' descendants, recorded before each signal (restart/leftovers.py).
    descendants: Descendants = field(default_factory=Descendants)


@dataclass(frozen=True)
class Job:
    """One group's restart once the lock is held: the records above, and how to restart.

    Each phase still writes only its own part (the journal, Watched, the
    Verdict, the report); `sig` is the restart signal and `force` whether a
    process stuck past the deadline is killed (--force).
    """

    run: Run
    target: Target
    routing: Routing
    watched: Watched
    verdict: Verdict
    sig: signal.Signals
    force: bool = False


def close(handles: list[Handle]) -> None:
    for handle in handles:
        handle.close()
