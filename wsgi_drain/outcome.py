"""What a run did, as plain data: phases, processes, routers, verdict.

The restart sequence fills an Outcome as it goes; report.py is the only place
that turns it into text or JSON.  `Progress` is how the core tells the
outside world what is happening without printing.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from wsgi_drain._compat import StrEnum
from wsgi_drain.descendants import Descendant
from wsgi_drain.errors import DrainError
from wsgi_drain.impact import Impact
from wsgi_drain.routers import RouterState
from wsgi_drain.status import ExitStatus


class Phase(StrEnum):
    DISCOVER = "discover"
    LOCK = "lock"
    DIVERT = "divert"
    SIGNAL = "signal"
    WATCH = "watch"
    VERIFY = "verify"
    WARM = "warm"
    RESTORE = "restore"
    ROLLBACK = "rollback"
    LEFTOVERS = "leftovers"
    # The whole host's runs (wsgi_drain/host/).
    CONFIGTEST = "configtest"
    GRACEFUL = "graceful"
    STOP = "stop"


# (phase, message) -> None; called as things happen.
Progress = Callable[[str, str], None]


@dataclass
class PhaseRecord:
    name: str
    status: str = "ok"  # ok | failed | skipped
    duration: float = 0.0
    detail: str = ""


@dataclass
class ProcessRecord:
    """One old process and what became of it."""

    old_pid: int
    signals: list[str] = field(default_factory=list)
    ending: str = "alive"  # drained | forced | aborted | exited | killed | stuck | gone | alive
    exited_after: float | None = None  # seconds from its first signal to its exit
    new_pid: int | None = None
    threads: int | None = None  # for stuck processes
    stack: str | None = None  # py-spy dump of a stuck process
    # Alive after the signal with no request in flight: hanging in interpreter
    # shutdown (inspected while it hung); the threads that block it, by name.
    hung: bool = False
    hang_threads: list[str] = field(default_factory=list)
    # Requests it had in flight when signalled, counted on the host (None: unreadable).
    in_flight_at_signal: int | None = None


@dataclass
class RouterRecord:
    """One router in a run.

    `before` is the server's administrative state when the run began; only a
    "ready" one is diverted, and only what this run diverted is put back.
    `diverted` is True from the moment the divert command is sent (an
    unanswered command may have been carried out: `unconfirmed`); `adopted`
    when a previous run left it diverted and this run took it over.
    """

    name: str
    diverted: bool = False
    restored: bool = False
    sessions_at_signal: int | None = None
    error: str | None = None
    before: str | None = None
    adopted: bool = False
    unconfirmed: bool = False
    # Seconds from its restore until the router saw the server UP (its checks
    # passed); None when not waited for or not seen.
    up_after: float | None = None
    # The last state read before the divert (its peers are reported).
    state: RouterState | None = None
    # Epoch seconds: out of rotation for good (after the recount) and back in.
    out_at: float | None = None
    back_at: float | None = None

    @property
    def peers_up(self) -> int | None:
        return None if self.state is None else self.state.peers_up

    @property
    def peers_out(self) -> tuple[str, ...]:
        return () if self.state is None else self.state.peers_out

    @property
    def ours(self) -> bool:
        """Whether this run may divert and restore it (it was in rotation, or left by us)."""
        return self.before == "ready" or self.adopted


@dataclass
class Outcome:
    """The report of one `restart` run."""

    group: str
    mode: str
    requested_mode: str
    signal: str
    dry_run: bool = False
    apache_pid: int | None = None
    apache_config: str | None = None
    processes_expected: int | None = None
    deadline: float | None = None
    phases: list[PhaseRecord] = field(default_factory=list)
    processes: list[ProcessRecord] = field(default_factory=list)
    routers: list[RouterRecord] = field(default_factory=list)
    new_pids: list[int] = field(default_factory=list)
    health: dict[str, object] | None = None
    warnings: list[str] = field(default_factory=list)
    # What the group's new processes wrote to the error log, when the run failed after the signal.
    app_log: list[str] = field(default_factory=list)
    # Set when Apache restarted the group itself during the run.
    apache_restarted: str | None = None
    # Said after the verdict on the first line (e.g. a shutdown hang that slowed every restart).
    notes: list[str] = field(default_factory=list)
    plan: list[str] = field(default_factory=list)
    left_diverted: bool = False
    # Drain mode: requests still in flight on the host when the group was
    # signalled, counted at the daemons (those that bypassed the router).
    host_in_flight_at_signal: int | None = None
    # Seconds spent waiting for other servers to be UP (--peer-wait), and how
    # often this run backed off because another went out as it diverted.
    peer_wait: float = 0.0
    backoffs: int = 0
    # Lazily loaded app: which replacements were warmed before traffic returned.
    warm: dict[str, object] | None = None
    # --rollback: the program's record (rollback.py); rolling mode's failure
    # with nothing diverted: what serves what (serving.py).
    rollback: dict[str, object] | None = None
    serving: dict[str, object] | None = None
    # What the run cost the users (restart/impact.py); None when it never took the lock.
    impact: Impact | None = None
    # What the old daemons started that outlived them (restart/leftovers.py).
    leftovers: list[Descendant] = field(default_factory=list)
    error: DrainError | None = None
    unexpected: BaseException | None = None
    started: float = field(default_factory=time.monotonic)
    duration: float = 0.0

    @property
    def status(self) -> ExitStatus:
        if self.unexpected is not None:
            return ExitStatus.ERROR
        return self.error.status if self.error is not None else ExitStatus.SUCCESS

    @property
    def verdict(self) -> str:
        return self.status.name.lower()

    def record(self, old_pid: int) -> ProcessRecord:
        for rec in self.processes:
            if rec.old_pid == old_pid:
                return rec
        rec = ProcessRecord(old_pid=old_pid)
        self.processes.append(rec)
        return rec

    @contextlib.contextmanager
    def phase(self, name: Phase, progress: Progress) -> Iterator[PhaseRecord]:
        """Time a phase; mark it failed if it raises (the error propagates)."""
        rec = PhaseRecord(name=name.value)
        self.phases.append(rec)
        start = time.monotonic()
        try:
            yield rec
        except BaseException:
            rec.status = "failed"
            raise
        finally:
            rec.duration = time.monotonic() - start
            if rec.status == "ok" and rec.detail:
                progress(name.value, rec.detail)
