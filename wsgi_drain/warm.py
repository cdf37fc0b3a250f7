"""Warm a lazily loaded app's new processes before traffic returns to them.

By default mod_wsgi loads the WSGI script in a daemon process on the first
request that process receives (no process-group/application-group on
WSGIScriptAlias, no WSGIImportScript): after a restart, the first user
request on each new process waits for the app's import.  In drain mode the
host is still out of rotation after the restart, so wsgi-drain sends those
first requests itself: rounds of as many concurrent requests to the health
URL as the group has threads.  A process that read something during a round
(`rchar` in /proc/PID/io rose: an idle daemon reads nothing) served one of
them, and so loaded the app, since its first request is what loads it; where
/proc/PID/io cannot be read, processes seen holding a request on the host
(inflight.by_process) count instead.  Rounds repeat until every new process
has served one, or the time is up.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from wsgi_drain import inflight, procfs
from wsgi_drain.config import Settings
from wsgi_drain.deadline import Deadline
from wsgi_drain.health import Probe, probe_for
from wsgi_drain.interrupts import Interrupts

# How often the daemons' sockets are looked at while a round is in flight.
SAMPLE = 0.005
# At most this many requests at once, whatever the group's size.
MAX_CONCURRENCY = 64


@dataclass
class WarmResult:
    """Which processes were seen serving a warm-up request, and what it took."""

    pids: list[int]
    seen: set[int] = field(default_factory=set)
    requests: int = 0
    failed: int = 0
    rounds: int = 0
    seconds: float = 0.0
    blind: bool = False  # the daemons' sockets could not be read

    @property
    def missed(self) -> list[int]:
        return sorted(set(self.pids) - self.seen)

    def as_dict(self) -> dict[str, object]:
        return {
            "processes": len(self.pids),
            "warmed": sorted(self.seen),
            "missed": self.missed,
            "requests": self.requests,
            "failed": self.failed,
            "rounds": self.rounds,
            "seconds": round(self.seconds, 3),
        }

    def describe(self) -> str:
        if self.blind:
            return (
                f"sent {self.requests} warm-up request(s); cannot tell which processes served "
                "them (the daemons' sockets are unreadable)"
            )
        text = (
            f"{len(self.seen)}/{len(self.pids)} new processes loaded the app before traffic "
            f"returned ({self.requests} requests in {self.rounds} round(s), {self.seconds:.2f} s"
        )
        text += f", {self.failed} failed)" if self.failed else ")"
        if self.missed:
            text += f"; not seen serving: {' '.join(map(str, self.missed))}"
        return text


def warm(
    settings: Settings,
    pids: list[int],
    socket_path: str | Path,
    threads: int,
    timeout: float,
    interrupts: Interrupts,
) -> WarmResult:
    """Send rounds of health requests until each of `pids` has served one, or `timeout`."""
    result = WarmResult(pids=list(pids))
    concurrency = max(1, min(len(pids) * threads, MAX_CONCURRENCY))
    deadline = Deadline(timeout)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="wsgi-drain-warm") as pool:
        while result.missed and not deadline.expired():
            interrupts.check()
            budget = max(min(settings.health_timeout, deadline.remaining()), 0.1)
            before = {pid: procfs.read_chars(pid) for pid in result.missed}
            round_ = [pool.submit(probe_for, settings, budget) for _ in range(concurrency)]
            result.requests += concurrency
            result.rounds += 1
            _watch_round(result, round_, socket_path, interrupts)
            result.failed += sum(1 for f in round_ if not f.result().ok)
            for pid, read in before.items():
                now = procfs.read_chars(pid)
                if read is not None and now is not None and now > read:
                    result.seen.add(pid)
            if result.blind:
                break
    result.seconds = time.monotonic() - started
    return result


def _watch_round(
    result: WarmResult, round_: list[Future[Probe]], socket_path: str | Path, interrupts: Interrupts
) -> None:
    """Until the round's requests are answered, note which processes hold one."""
    while not all(f.done() for f in round_):
        interrupts.check()
        counts = inflight.by_process(result.pids, socket_path)
        if counts is None:
            result.blind = True
            return
        result.seen |= {pid for pid, held in counts.items() if held}
        time.sleep(SAMPLE)
