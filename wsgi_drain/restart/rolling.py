"""Rolling mode: one process at a time, keeping the others serving; stop at the first that fails.

No router is touched.  Idle processes go first, by the requests each holds
on the host (inflight.py).  Before the next process is signalled, the
replacement must be up, live past SETTLE and, with a health URL, the app
must answer: a broken deploy stops after one process while the others keep
serving the old code.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterable

from wsgi_drain import inflight, procfs
from wsgi_drain.deadline import Deadline
from wsgi_drain.discovery import DaemonProcess
from wsgi_drain.errors import NotReplacedError, UnhealthyError
from wsgi_drain.interrupts import Interrupts
from wsgi_drain.outcome import Phase
from wsgi_drain.restart.apache_died import guarded
from wsgi_drain.restart.apache_restarted import reader
from wsgi_drain.restart.crashloop import SETTLE, is_crash_loop, new_deaths, new_pids
from wsgi_drain.restart.leftovers import record
from wsgi_drain.restart.policy import Verdict
from wsgi_drain.restart.records import Job, Run, Target, Watched
from wsgi_drain.restart.timing import HOST_POLL, IDLE_WAIT, RESPAWN_MARGIN
from wsgi_drain.restart.verify import HEALTH_WAIT, probe_until_ok
from wsgi_drain.restart.watch import kill, on_exit, on_new, report_stuck
from wsgi_drain.signals import Handle, open_handle
from wsgi_drain.watch import died_within, wait_exits, wait_replacements

# With its requests visible on the host, an idle process is known idle at
# once: it leaves within ~0.01 s of SIGUSR1; this is the margin for that.
IDLE_EXIT = 0.25


def rolling(job: Job, deadline: Deadline) -> list[Handle]:
    """Replace the group one process at a time; the stuck process (without --force), else [].

    SIGUSR1 first: an idle process leaves within milliseconds.  A busy one
    keeps accepting during its drain window, so it would leave only when the
    window ends; instead, once the requests it held when signalled are done
    (those keep up to the drain window, mod_wsgi's own timer), it gets
    SIGTERM, which makes it stop accepting while its siblings take new
    requests; the ones it took since get the full shutdown-timeout, even when
    the overall deadline is short (no request is ever given less).
    """
    run, target, routing, watched, sig = job.run, job.target, job.routing, job.watched, job.sig
    out = run.outcome
    assert routing.journal is not None
    old_pids = target.old_pids
    known = set(old_pids)
    total = len(target.procs.processes)
    pending = list(target.procs.processes)
    with out.phase(Phase.WATCH, run.progress) as ph:
        for done in range(total):
            run.interrupts.check()
            if deadline.expired():
                ph.status = "failed"
                raise NotReplacedError(
                    f"the deadline ({out.deadline:g} s) ran out after {done} of {total} "
                    f"processes were replaced; the others were not signalled and keep serving"
                )
            proc = _least_busy(target, pending)
            pending.remove(proc)
            rec = out.record(proc.pid)
            handle = open_handle(target.instance, target.procs.socket, proc)
            if handle is None:
                rec.ending = "gone"
                run.progress("watch", f"{proc.pid} already gone")
                continue
            routing.journal.phase = "rolling"
            routing.journal.signalled.append(proc.pid)
            routing.journal.save(run.settings.state_dir)
            job.verdict.signalled = True
            sent_at = time.monotonic()
            if watched.signalled_at is None:
                watched.signalled_at = sent_at
            record(run, watched, [handle])  # before the signal: its descendants, proven
            handle.send(sig)
            rec.signals.append(sig.name)
            own = _requests_of(target, proc.pid)
            rec.in_flight_at_signal = None if own is None else len(own)
            held = "" if own is None else f" ({len(own)} in flight)"
            run.progress("signal", f"{sig.name} -> {proc.pid}{held}")
            alive = _stop_one(job, handle, own, deadline, on_exit(run, sent_at))
            if alive:
                report_stuck(run, alive)
                if not job.force:
                    ph.status = "failed"
                    ph.detail = f"{proc.pid} did not exit"
                    return alive
                kill(run, alive)
            handle.close()
            known = _replaced_one(job, proc.pid, known, done, total)
        final = reader(run, target)()
        out.new_pids = [pid for pid in final.pids if pid not in old_pids]
        ph.detail = f"{len(out.new_pids)}/{target.expected} processes replaced one at a time"
    return []


def _least_busy(target: Target, candidates: list[DaemonProcess]) -> DaemonProcess:
    """The candidate with the fewest requests in flight (the first one when unreadable)."""
    sock = target.procs.socket
    if sock is None:
        return candidates[0]
    counts = inflight.by_process([c.pid for c in candidates], sock.path)
    if counts is None:
        return candidates[0]
    return min(candidates, key=lambda c: len(counts.get(c.pid, ())))


def _requests_of(target: Target, pid: int) -> set[int] | None:
    """Inodes of the requests `pid` holds now; None when they cannot be read."""
    sock = target.procs.socket
    if sock is None:
        return None
    found = inflight.by_process([pid], sock.path)
    return None if found is None else found.get(pid, set())


def _stop_one(
    job: Job,
    handle: Handle,
    own: set[int] | None,
    deadline: Deadline,
    exited: Callable[[Handle, float], None],
) -> list[Handle]:
    """After the signal: wait for the process to leave, SIGTERM it once busy only with newer work.

    Returns [handle] if it is still alive when every allowance is spent.
    """
    run, target = job.run, job.target
    group = target.procs.group
    grace = Deadline(group.shutdown_window + RESPAWN_MARGIN)
    if job.sig != signal.SIGUSR1:
        return wait_exits([handle], grace, run.interrupts, exited)
    if own is None:
        # Cannot see its requests: give it IDLE_WAIT to prove it idle.
        alive = wait_exits([handle], deadline.within(IDLE_WAIT), run.interrupts, exited)
        why = f"still busy after {IDLE_WAIT:g} s"
    else:
        alive = wait_exits([handle], deadline.within(IDLE_EXIT), run.interrupts, exited)
        if alive:
            # Its requests of the moment keep up to the drain window (mod_wsgi
            # aborts them at its end itself, then exits).
            window = Deadline(group.drain_window + group.shutdown_window + RESPAWN_MARGIN)
            alive = _wait_requests_done(run, target, handle, own, window, exited)
        now = _requests_of(target, handle.pid)
        why = (
            f"its {len(own)} request(s) of the moment are done, "
            f"{'?' if now is None else len(now)} newer"
        )
    if not alive:
        return []
    run.progress(
        "signal",
        f"{handle.pid}: {why}: SIGTERM so it stops accepting; its requests in flight get "
        f"shutdown-timeout {group.shutdown_window:g} s",
    )
    if handle.send(signal.SIGTERM):
        run.outcome.record(handle.pid).signals.append("SIGTERM")
    return wait_exits([handle], grace, run.interrupts, exited)


def _wait_requests_done(
    run: Run,
    target: Target,
    handle: Handle,
    own: set[int],
    limit: Deadline,
    exited: Callable[[Handle, float], None],
) -> list[Handle]:
    """Wait until the process exits, or until none of the requests in `own` is left."""
    left = set(own)
    while True:
        alive = wait_exits([handle], limit.within(HOST_POLL), run.interrupts, exited)
        if not alive or limit.expired():
            return alive
        now = _requests_of(target, handle.pid)
        if now is None:
            return alive
        left &= now
        if not left:
            return alive


def _replaced_one(job: Job, pid: int, known: set[int], done: int, total: int) -> set[int]:
    """Wait for `pid`'s replacement, then check it lives and the app answers; the pids now known."""
    run, target, watched, verdict = job.run, job.target, job.watched, job.verdict
    group = target.procs.group
    seen: set[int] = set()
    note_new = on_new(run)

    def started(new_pid: int, when: float) -> None:
        seen.add(new_pid)
        note_new(new_pid, when)

    def crash_loop() -> bool:
        # Replacements that keep dying will never fill the group: say so now,
        # not at the end of RESPAWN_MARGIN.
        return is_crash_loop(new_deaths(watched.log, known))

    current = wait_replacements(
        guarded(reader(run, target), run, target, watched, verdict),
        {pid},
        known,
        target.expected,
        Deadline(RESPAWN_MARGIN),
        run.interrupts,
        started,
        crash_loop,
    )
    new = set(current.pids) - known
    if pid in current.pids or len(current.pids) < target.expected:
        verdict.healthy = False  # the new code never came up: known bad
        # A replacement that crashes at start makes Apache start another, which
        # crashes too: the group never fills up.  Name the real cause when a
        # replacement is known to have died.
        died = new_deaths(watched.log, known, {p for p in seen if procfs.gone(p)})
        if died:
            hows = sorted({how for how in died.values() if how})
            pids = sorted(died)
            named = " ".join(map(str, pids[:5])) + (
                f" and {len(pids) - 5} more" if len(pids) > 5 else ""
            )
            raise NotReplacedError(
                f"replacement {named} of pid {pid} exited right after it started; stopped "
                f"after {done} of {total} processes so the rest keep serving"
                + (f" ({', '.join(hows)})" if hows else "")
                + ". See Apache's error log"
                + (f" {group.error_log}" if group.error_log else "")
            )
        raise NotReplacedError(
            f"pid {pid} was not replaced within {RESPAWN_MARGIN:g} s ("
            f"{len(current.pids)}/{target.expected} processes up); stopped after {done} of "
            f"{total} so the rest keep serving. See Apache's error log"
            + (f" {group.error_log}" if group.error_log else "")
        )
    try:
        settled_step(new, pid, done + 1, total, run.interrupts)
    except NotReplacedError:
        verdict.healthy = False  # its replacement died as it started: known bad
        raise
    _healthy_between_steps(run, target, watched, verdict, pid, done + 1, total)
    return known | set(current.pids)


def settled_step(
    new: Iterable[int], old: int, done: int, total: int, interrupts: Interrupts
) -> None:
    """The settle rule: step `done` of `total` replaced `old` with `new`, which must live SETTLE s.

    The health probe reaches whichever process accepts it, so it proves the
    group answers, not that the new process does: the replacement's own life
    is checked too.  Raises NotReplacedError, naming how far the run got.
    """
    died = died_within(new, SETTLE, interrupts)
    if died:
        raise NotReplacedError(
            f"replacement {' '.join(map(str, sorted(died)))} of pid {old} exited right after "
            f"it started; stopped after {done - 1} of {total} processes so the rest keep serving"
        )


def _healthy_between_steps(
    run: Run, target: Target, watched: Watched, verdict: Verdict, old: int, done: int, total: int
) -> None:
    """After one rolling step (but the last: verify probes then): the app answers; else stop."""
    if done == total:
        return  # the verify phase probes after the last one
    # The probe reaches whichever process accepts it (often an old one): the
    # replacement's own words in the log are what prove its code loads.
    log = watched.log
    if log is not None:
        log.poll()
        failure = log.load_failure(new_pids(run, target, watched))
        if failure is not None:
            verdict.healthy = False
            raise UnhealthyError(
                f"the new code fails to load: {failure} (in the error log after pid {old} was "
                f"replaced); stopped after {done} of {total} processes so the rest keep serving "
                "the old code"
            )
    url = run.settings.health_url
    if not url:
        return
    result = probe_until_ok(run, target, watched, verdict, HEALTH_WAIT)
    if not result.ok:
        verdict.healthy = False
        raise UnhealthyError(
            f"after pid {old} was replaced, {url} {result.said()}; stopped after "
            f"{done} of {total} processes so the rest keep serving the old code"
        )
