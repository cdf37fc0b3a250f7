"""Watch: the old processes exit and the parent spawns their replacements.

Exits are seen through each process's pidfd (wsgi_drain/watch.py), within
the deadline derived from the group's timeouts (timing.py).  A process that
hangs in interpreter shutdown is inspected while it hangs; one still alive
at the deadline is stuck: its threads and stack are reported, and it is
killed only with --force.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import psutil

from wsgi_drain import pyspy
from wsgi_drain.deadline import Deadline
from wsgi_drain.errors import NotReplacedError
from wsgi_drain.outcome import Phase, RouterRecord
from wsgi_drain.restart.apache_restarted import reader
from wsgi_drain.restart.crashloop import watching_reader
from wsgi_drain.restart.records import Job, Run, close
from wsgi_drain.restart.timing import RESPAWN_MARGIN
from wsgi_drain.signals import Handle
from wsgi_drain.watch import wait_exits, wait_replacements

# A process still alive this long after SIGUSR1 with no request in flight is
# hanging in interpreter shutdown (an idle daemon leaves within ~0.01 s): it
# is inspected then, while it hangs, not at the deadline when it may be gone.
HANG_INSPECT = 1.0
# How long a SIGKILLed process (--force) may take to be gone.
KILL_WAIT = 5.0


def watch_all(job: Job, handles: list[Handle], deadline: Deadline) -> list[Handle]:
    """Drain mode: wait for every signalled process to exit and be replaced; the stuck ones."""
    run, target, routing = job.run, job.target, job.routing
    out = run.outcome
    assert routing.journal is not None
    sent_at = time.monotonic()
    old = {h.pid for h in handles}
    with out.phase(Phase.WATCH, run.progress) as ph:
        routing.journal.phase = "watch"
        routing.journal.save(run.settings.state_dir)
        exited = on_exit(run, sent_at)
        alive = wait_exits(handles, deadline.within(HANG_INSPECT), run.interrupts, exited)
        if alive and _nothing_in_flight(routing.records):
            _inspect_hang(run, alive, time.monotonic() - sent_at)
        stuck = wait_exits(alive, deadline, run.interrupts, exited) if alive else []
        current = wait_replacements(
            watching_reader(run, target, job.watched, job.verdict),
            old,
            old,
            target.expected,
            deadline,
            run.interrupts,
            on_new(run),
        )
        close([h for h in handles if h not in stuck])  # stuck ones may still need a SIGKILL
        out.new_pids = [pid for pid in current.pids if pid not in old]
        ph.detail = (
            f"{len(old) - len(stuck)}/{len(old)} old processes exited, "
            f"{len(out.new_pids)}/{target.expected} replacements up"
        )
        if stuck:
            ph.status = "failed"
    return stuck


def force_stuck(job: Job, stuck: list[Handle]) -> list[Handle]:
    """Report the stuck processes; with --force kill them and wait for their replacements.

    Returns the processes still stuck (none after --force).
    """
    run, target = job.run, job.target
    if not stuck:
        return []
    report_stuck(run, stuck)
    if not job.force:
        return stuck
    kill(run, stuck)
    old = target.old_pids
    current = wait_replacements(
        reader(run, target),
        old,
        old,
        target.expected,
        Deadline(RESPAWN_MARGIN),
        run.interrupts,
        on_new(run),
    )
    run.outcome.new_pids = [pid for pid in current.pids if pid not in old]
    return []


def on_exit(run: Run, sent_at: float) -> Callable[[Handle, float], None]:
    """Record and report an old process's exit, `sent_at` being when it was signalled."""

    def exited(handle: Handle, when: float) -> None:
        rec = run.outcome.record(handle.pid)
        rec.exited_after = when - sent_at
        rec.ending = "exited"
        run.progress("watch", f"{handle.pid} exited after {rec.exited_after:.2f} s")

    return exited


def on_new(run: Run) -> Callable[[int, float], None]:
    """Pair a new member with the first old process that has left and has no successor yet."""

    def started(pid: int, when: float) -> None:
        out = run.outcome
        for rec in out.processes:
            if rec.ending != "alive" and rec.new_pid is None and rec.ending != "gone":
                rec.new_pid = pid
                break
        run.progress("watch", f"{pid} started ({when - out.started:.2f} s into the run)")

    return started


def _nothing_in_flight(records: list[RouterRecord]) -> bool:
    """Did every diverted router show no request in flight at the signal?"""
    diverted = [rec for rec in records if rec.diverted]
    return bool(diverted) and all(rec.sessions_at_signal == 0 for rec in diverted)


def _inspect_hang(run: Run, alive: list[Handle], since: float) -> None:
    """Look at processes hanging in shutdown while they still hang: threads and stacks."""
    found, why_not = pyspy.find(run.py_spy)
    for handle in alive:
        rec = run.outcome.record(handle.pid)
        rec.hung = True
        try:
            rec.threads = psutil.Process(handle.pid).num_threads()
        except psutil.Error:
            continue  # gone meanwhile: nothing to look at
        rec.stack = pyspy.dump(found, handle.pid) if found else f"no stack: {why_not}"
        rec.hang_threads = pyspy.thread_names(rec.stack)
        run.progress(
            "watch",
            f"{handle.pid} still alive {since:.1f} s after the signal with no request in "
            f"flight: blocked in interpreter shutdown, {rec.threads} threads"
            + (f" (thread {', '.join(rec.hang_threads)})" if rec.hang_threads else "")
            + ("" if found else f"; {why_not}"),
        )


def report_stuck(run: Run, stuck: list[Handle]) -> None:
    """Record each stuck process's threads and Python stacks (py-spy, when installed)."""
    found, why_not = pyspy.find(run.py_spy)
    for handle in stuck:
        rec = run.outcome.record(handle.pid)
        rec.ending = "stuck"
        try:
            rec.threads = psutil.Process(handle.pid).num_threads()
        except psutil.Error:
            rec.threads = None
        rec.stack = pyspy.dump(found, handle.pid) if found else f"no stack: {why_not}"
        run.progress(
            "watch",
            f"{handle.pid} is stuck: alive past the deadline with {rec.threads} threads"
            + ("" if found else f" ({why_not})"),
        )


def stuck_error(run: Run, stuck: list[Handle]) -> NotReplacedError:
    """The error for processes alive past the deadline (their handles closed)."""
    close(stuck)
    pids = " ".join(str(h.pid) for h in stuck)
    return NotReplacedError(
        f"process(es) {pids} of group {run.settings.group!r} did not exit by the deadline "
        f"({run.outcome.deadline:g} s); an application thread that never exits keeps a daemon "
        "alive: see its stack in the report, fix the app, or rerun with --force to kill it"
    )


def kill(run: Run, stuck: list[Handle]) -> None:
    """--force: SIGKILL through the pidfd, wait for the exits (bounded)."""
    for handle in stuck:
        if handle.send(signal.SIGKILL):
            run.outcome.record(handle.pid).signals.append("SIGKILL")
            run.progress("watch", f"{handle.pid} killed (--force)")
    wait_exits(stuck, Deadline(KILL_WAIT), run.interrupts, lambda h, t: None)
    for handle in stuck:
        run.outcome.record(handle.pid).ending = "killed"
    close(stuck)
