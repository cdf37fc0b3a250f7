"""The restart sequence, phase by phase (DESIGN.md "Restart, phase by phase").

Read top to bottom: discover, lock, divert, signal, watch, verify, restore.
One failure policy, in `_settle`: nothing signalled -> put every router back;
signalled and healthy -> put them back; signalled and not healthy -> leave the
backend diverted so no user reaches a broken app, keep the journal, say so.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil

from wsgi_drain import routers as routers_mod
from wsgi_drain.config import Settings
from wsgi_drain.deadline import Deadline
from wsgi_drain.discovery import (
    ApacheInstance,
    GroupProcesses,
    find_apache,
    group_processes,
)
from wsgi_drain.errorlog import Ending, ErrorLogTail, ending_of
from wsgi_drain.errors import (
    DrainError,
    NotFoundError,
    NotReplacedError,
    RouterError,
    UnhealthyError,
)
from wsgi_drain.health import probe
from wsgi_drain.interrupts import Interrupts
from wsgi_drain.outcome import Outcome, Phase, Progress, RouterRecord
from wsgi_drain.procfs import fds_readable
from wsgi_drain.routers import Router
from wsgi_drain.signals import Handle, open_handle, parse_signal
from wsgi_drain.state import Journal, group_lock
from wsgi_drain.traps import find_traps
from wsgi_drain.watch import wait_exits, wait_replacements

# The Apache parent respawns a daemon 0.2-1 s after it exits (DESIGN.md); allow
# generously for a loaded host and the app's import time.
RESPAWN_MARGIN = 10.0
# How long an idle process takes to leave after SIGUSR1 in rolling mode before
# we conclude load keeps it busy.  mod_wsgi checks for "no active requests"
# when a request ends and from its monitor thread about once a second.
IDLE_WAIT = 2.0
# After the replacements are up, how long the app may take to answer its first
# health probe (a lazily loaded app imports on its first request).
HEALTH_WAIT = 15.0
DRAIN_SLICE = 0.25


@dataclass
class _Run:
    settings: Settings
    progress: Progress
    interrupts: Interrupts
    outcome: Outcome
    instance: ApacheInstance | None = None
    group_procs: GroupProcesses | None = None
    routers: tuple[tuple[str, Router], ...] = ()
    journal: Journal | None = None
    signalled: bool = False
    healthy: bool | None = None


def restart(
    settings: Settings, *, dry_run: bool = False, force: bool = False, progress: Progress
) -> Outcome:
    """Restart `settings.group` gracefully; never raises for a DrainError.

    The returned Outcome carries the error (and its exit status) if the run
    failed; routers have been restored or deliberately left diverted by then.
    """
    sig = parse_signal(settings.signal)
    outcome = Outcome(
        group=settings.group,
        mode=settings.mode,
        requested_mode=settings.mode,
        signal=sig.name,
        dry_run=dry_run,
    )
    with Interrupts() as interrupts:
        run = _Run(settings, progress, interrupts, outcome)
        try:
            _discover(run)
            if dry_run:
                _plan(run, sig)
            else:
                with group_lock(settings.state_dir, settings.group):
                    try:
                        _execute(run, sig, force)
                    finally:
                        _settle(run)
        except DrainError as err:
            outcome.error = err
        except Exception as err:  # a bug: still reported, routers still settled above
            outcome.unexpected = err
    outcome.duration = time.monotonic() - outcome.started
    return outcome


# -- discover ---------------------------------------------------------------------------------


def _discover(run: _Run) -> None:
    s, out = run.settings, run.outcome
    with out.phase(Phase.DISCOVER, run.progress) as ph:
        instance = find_apache(pidfile=s.apache_pidfile, config_path=s.apache_config)
        group = instance.config.group(s.group)
        procs = group_processes(instance, group)
        if not procs.processes:
            raise NotFoundError(
                f"group {group.name!r} has no live processes under {instance.describe()}"
            )
        run.instance, run.group_procs = instance, procs
        out.apache_pid, out.apache_config = instance.pid, str(instance.config_path)
        out.processes_expected = group.processes
        for trap in find_traps(group, fds_readable=fds_readable(instance.pid)):
            _warn(run, trap.message)
        if len(procs.processes) < group.processes:
            _warn(
                run,
                f"only {len(procs.processes)} of {group.processes} processes are up before "
                "the restart (one may be respawning)",
            )
        if not s.health_url:
            _warn(run, "no --health-url: the app's answer after the restart is not verified")
        run.routers = tuple(
            (routers_mod.spec_of("haproxy", spec), routers_mod.build("haproxy", spec))
            for spec in s.haproxy
        )
        for _spec, router in run.routers:
            check_admin = getattr(router, "check_admin", None)
            if check_admin is not None:
                check_admin()
            state = router.state()
            out.routers.append(RouterRecord(name=router.name, peers_up=state.peers_up))
            if state.admin != "ready":
                _warn(run, f"{router.name} is already in state {state.admin!r} before the restart")
        _choose_mode(run)
        ph.detail = (
            f"{instance.describe()}: group {group.name!r} (id {group.id}), "
            f"{len(procs.processes)}/{group.processes} processes "
            f"[{' '.join(map(str, procs.pids))}] by {procs.method}; "
            f"drain window {group.drain_window:g} s + shutdown {group.shutdown_window:g} s"
        )


def _choose_mode(run: _Run) -> None:
    """Drain mode needs a router with enough peers; otherwise restart in place.

    Draining the only UP server of a backend makes HAProxy answer 503 to every
    request until it is back (measured: ~400 failures), so it is never done.
    """
    out = run.outcome
    if out.mode != "drain":
        return
    if not run.routers:
        out.mode = "rolling"
        _warn(run, "no router given (--haproxy): restarting in place, one process at a time")
        return
    for rec in out.routers:
        if rec.peers_up is not None and rec.peers_up < run.settings.min_peers:
            out.mode = "rolling"
            _warn(
                run,
                f"{rec.name} has {rec.peers_up} other server(s) UP (need "
                f"{run.settings.min_peers}): draining it would fail every request, so "
                "restarting in place, one process at a time, without diverting",
            )
            return


def _plan(run: _Run, sig: signal.Signals) -> None:
    out, procs = run.outcome, run.group_procs
    assert procs is not None
    group = procs.group
    out.deadline = _deadline_seconds(run)
    if out.mode == "drain":
        for _spec, router in run.routers:
            out.plan.append(f"divert {router.name} and wait up to {run.settings.drain_timeout:g} s")
        out.plan.append(f"send {sig.name} to {' '.join(map(str, procs.pids))} at once")
    else:
        out.plan.append(
            f"one process at a time ({' '.join(map(str, procs.pids))}): {sig.name}, then "
            f"SIGTERM after {IDLE_WAIT:g} s if still "
            f"busy (in-flight requests get shutdown-timeout {group.shutdown_window:g} s), wait "
            "for its replacement"
        )
    out.plan.append(f"wait up to {out.deadline:g} s for {group.processes} new processes")
    if run.settings.health_url:
        out.plan.append(f"probe {run.settings.health_url}")
    if out.mode == "drain":
        out.plan.append("restore " + ", ".join(router.name for _s, router in run.routers))
    for line in out.plan:
        run.progress("plan", line)


def _deadline_seconds(run: _Run) -> float:
    """The watch deadline: --timeout, else derived from the group's own timeouts."""
    if run.settings.timeout is not None:
        return run.settings.timeout
    assert run.group_procs is not None
    group = run.group_procs.group
    if run.outcome.mode == "drain":
        return group.drain_window + group.shutdown_window + RESPAWN_MARGIN
    per_process = min(IDLE_WAIT, group.drain_window) + group.shutdown_window + RESPAWN_MARGIN
    return per_process * max(1, len(run.group_procs.processes))


# -- execute ----------------------------------------------------------------------------------


def _execute(run: _Run, sig: signal.Signals, force: bool) -> None:
    s, out = run.settings, run.outcome
    assert run.instance is not None and run.group_procs is not None
    run.journal = Journal(
        group=s.group,
        pid=os.getpid(),
        started=time.time(),
        routers=[spec for spec, _r in run.routers],
    )
    run.journal.save(s.state_dir)
    log_path = run.instance.error_log_of(run.group_procs.group)
    tail = ErrorLogTail(log_path) if log_path else None
    out.deadline = _deadline_seconds(run)
    deadline = Deadline(out.deadline)

    if out.mode == "drain":
        _divert(run)
        handles = _signal_all(run, sig)
        stuck = _watch_all(run, handles, deadline)
        if stuck:
            _report_stuck(run, stuck)
            if force:
                _kill(run, stuck)
                old = set(run.group_procs.pids)
                current = wait_replacements(
                    _reader(run),
                    old,
                    old,
                    run.group_procs.group.processes,
                    Deadline(RESPAWN_MARGIN),
                    run.interrupts,
                    _on_new(run),
                )
                out.new_pids = [pid for pid in current.pids if pid not in old]
                stuck = []
    else:
        stuck = _rolling(run, sig, deadline, force)
    _endings_from_log(run, tail)
    if stuck:
        raise _stuck_error(run, stuck)
    _verify(run)


def _divert(run: _Run) -> None:
    out, journal = run.outcome, run.journal
    assert journal is not None
    with out.phase(Phase.DIVERT, run.progress) as ph:
        for (spec, router), rec in zip(run.routers, out.routers, strict=True):
            journal.phase = "divert"
            journal.diverted.append(spec)
            journal.save(run.settings.state_dir)
            router.divert()
            rec.diverted = True
            run.progress("divert", f"{router.name}: drain ({rec.peers_up} other server(s) UP)")
        drain_deadline = Deadline(run.settings.drain_timeout)
        for (_spec, router), rec in zip(run.routers, out.routers, strict=True):
            # Short slices so SIGINT/SIGTERM is acted on promptly.
            while True:
                state = router.wait_drained(drain_deadline.within(DRAIN_SLICE))
                run.interrupts.check()
                if (state.sessions == 0 and state.queued == 0) or drain_deadline.expired():
                    break
            rec.sessions_at_signal = state.sessions + state.queued
            if rec.sessions_at_signal:
                _warn(
                    run,
                    f"{router.name}: {rec.sessions_at_signal} request(s) still in flight after "
                    f"{run.settings.drain_timeout:g} s; they get the group's drain window",
                )
        for _spec, router in run.routers:
            # A HAProxy reload or an agent check can silently undo the drain;
            # signalling then would cut requests the router still sends.
            if router.state().admin != "drain":
                raise RouterError(
                    router.name,
                    "the server is no longer in drain state (was HAProxy reloaded, or the "
                    "state changed by hand?); nothing was signalled",
                )
        ph.detail = "; ".join(f"{r.name}: {r.sessions_at_signal} in flight" for r in out.routers)


def _signal_all(run: _Run, sig: signal.Signals) -> list[Handle]:
    out = run.outcome
    assert run.instance is not None and run.group_procs is not None and run.journal is not None
    handles: list[Handle] = []
    with out.phase(Phase.SIGNAL, run.progress) as ph:
        run.interrupts.check()
        for proc in run.group_procs.processes:
            handle = open_handle(run.instance, run.group_procs.socket, proc)
            rec = out.record(proc.pid)
            if handle is None:
                rec.ending = "gone"
                continue
            handles.append(handle)
        run.journal.phase = "signal"
        run.journal.signalled = [h.pid for h in handles]
        run.journal.save(run.settings.state_dir)
        for handle in handles:
            run.signalled = True
            if handle.send(sig):
                out.record(handle.pid).signals.append(sig.name)
        ph.detail = f"{sig.name} -> {' '.join(str(h.pid) for h in handles)}"
    return handles


def _watch_all(run: _Run, handles: list[Handle], deadline: Deadline) -> list[Handle]:
    out = run.outcome
    assert run.group_procs is not None and run.journal is not None
    group = run.group_procs.group
    sent_at = time.monotonic()
    old = {h.pid for h in handles}
    with out.phase(Phase.WATCH, run.progress) as ph:
        run.journal.phase = "watch"
        run.journal.save(run.settings.state_dir)
        stuck = wait_exits(handles, deadline, run.interrupts, _on_exit(run, sent_at))
        current = wait_replacements(
            _reader(run), old, old, group.processes, deadline, run.interrupts, _on_new(run)
        )
        _close([h for h in handles if h not in stuck])  # stuck ones may still need a SIGKILL
        out.new_pids = [pid for pid in current.pids if pid not in old]
        ph.detail = (
            f"{len(old) - len(stuck)}/{len(old)} old processes exited, "
            f"{len(out.new_pids)}/{group.processes} replacements up"
        )
        if stuck:
            ph.status = "failed"
    return stuck


def _rolling(run: _Run, sig: signal.Signals, deadline: Deadline, force: bool) -> list[Handle]:
    """One process at a time, keeping the others serving.

    SIGUSR1 first: an idle process leaves at once.  A process that load keeps
    busy would only leave at its drain window, so after IDLE_WAIT it gets
    SIGTERM, which makes it stop accepting at once while its siblings take new
    requests; its in-flight requests still get the full shutdown-timeout.
    """
    out = run.outcome
    assert run.instance is not None and run.group_procs is not None and run.journal is not None
    group = run.group_procs.group
    known = set(run.group_procs.pids)
    with out.phase(Phase.WATCH, run.progress) as ph:
        for proc in run.group_procs.processes:
            rec = out.record(proc.pid)
            handle = open_handle(run.instance, run.group_procs.socket, proc)
            if handle is None:
                rec.ending = "gone"
                run.progress("watch", f"{proc.pid} already gone")
                continue
            run.journal.phase = "rolling"
            run.journal.signalled.append(proc.pid)
            run.journal.save(run.settings.state_dir)
            run.signalled = True
            sent_at = time.monotonic()
            handle.send(sig)
            rec.signals.append(sig.name)
            run.progress("signal", f"{sig.name} -> {proc.pid}")
            on_exit = _on_exit(run, sent_at)
            alive = wait_exits([handle], deadline.within(IDLE_WAIT), run.interrupts, on_exit)
            if alive and sig == signal.SIGUSR1:
                run.progress(
                    "signal",
                    f"{proc.pid} still busy after {IDLE_WAIT:g} s: SIGTERM so it stops accepting; "
                    f"its in-flight requests get shutdown-timeout {group.shutdown_window:g} s",
                )
                if handle.send(signal.SIGTERM):
                    rec.signals.append("SIGTERM")
                budget = group.shutdown_window + RESPAWN_MARGIN
                alive = wait_exits([handle], deadline.within(budget), run.interrupts, on_exit)
            if alive:
                _report_stuck(run, alive)
                if not force:
                    ph.status = "failed"
                    ph.detail = f"{proc.pid} did not exit"
                    return alive
                _kill(run, alive)
            handle.close()
            current = wait_replacements(
                _reader(run),
                {proc.pid},
                known,
                group.processes,
                deadline.within(RESPAWN_MARGIN),
                run.interrupts,
                _on_new(run),
            )
            known |= set(current.pids)
        final = _reader(run)()
        out.new_pids = [pid for pid in final.pids if pid not in set(run.group_procs.pids)]
        ph.detail = f"{len(out.new_pids)}/{group.processes} processes replaced one at a time"
    return []


def _reader(run: _Run) -> Callable[[], GroupProcesses]:
    instance, group = run.instance, run.group_procs
    assert instance is not None and group is not None
    return lambda: group_processes(instance, group.group)


def _on_exit(run: _Run, sent_at: float) -> Callable[[Handle, float], None]:
    def on_exit(handle: Handle, when: float) -> None:
        rec = run.outcome.record(handle.pid)
        rec.exited_after = when - sent_at
        rec.ending = "exited"
        run.progress("watch", f"{handle.pid} exited after {rec.exited_after:.2f} s")

    return on_exit


def _on_new(run: _Run) -> Callable[[int, float], None]:
    def on_new(pid: int, when: float) -> None:
        out = run.outcome
        for rec in out.processes:
            if rec.ending != "alive" and rec.new_pid is None and rec.ending != "gone":
                rec.new_pid = pid
                break
        run.progress("watch", f"{pid} started ({when - out.started:.2f} s into the run)")

    return on_new


def _endings_from_log(run: _Run, tail: ErrorLogTail | None) -> None:
    """Tell drained / forced / aborted apart from mod_wsgi's own log lines."""
    if tail is None:
        return
    events = tail.read_new()
    for rec in run.outcome.processes:
        if rec.ending != "exited":
            continue
        ending = ending_of(e for e in events if e.pid == rec.old_pid)
        if ending is Ending.FORCED and "SIGTERM" in rec.signals:
            # Our own SIGTERM (rolling mode, or --signal SIGTERM): mod_wsgi logs
            # a shutdown with no "completed" line, but no timer ran out and the
            # in-flight requests had shutdown-timeout; only an abort cuts them.
            rec.ending = "stopped"
            continue
        rec.ending = ending.value
        if ending in (Ending.FORCED, Ending.ABORTED):
            _warn(
                run,
                f"{rec.old_pid} was {ending.value} by its timeout (mod_wsgi's log): "
                + (
                    "requests still running were cut off"
                    if ending is Ending.ABORTED
                    else "it was still busy when its drain window ran out"
                ),
            )


def _report_stuck(run: _Run, stuck: list[Handle]) -> None:
    """Record each stuck process's threads and Python stacks (py-spy, when installed)."""
    py_spy = shutil.which("py-spy")
    for handle in stuck:
        rec = run.outcome.record(handle.pid)
        rec.ending = "stuck"
        try:
            rec.threads = psutil.Process(handle.pid).num_threads()
        except psutil.Error:
            rec.threads = None
        if py_spy:
            rec.stack = _py_spy_dump(py_spy, handle.pid)
        run.progress(
            "watch",
            f"{handle.pid} is stuck: alive past the deadline with {rec.threads} threads"
            + ("" if py_spy else " (install py-spy to see its Python stacks)"),
        )


def _stuck_error(run: _Run, stuck: list[Handle]) -> NotReplacedError:
    _close(stuck)
    pids = " ".join(str(h.pid) for h in stuck)
    return NotReplacedError(
        f"process(es) {pids} of group {run.settings.group!r} did not exit by the deadline "
        f"({run.outcome.deadline:g} s); an application thread that never exits keeps a daemon "
        "alive: see its stack in the report, fix the app, or rerun with --force to kill it"
    )


def _kill(run: _Run, stuck: list[Handle]) -> None:
    """--force: SIGKILL through the pidfd, wait for the exits (bounded)."""
    for handle in stuck:
        if handle.send(signal.SIGKILL):
            run.outcome.record(handle.pid).signals.append("SIGKILL")
            run.progress("watch", f"{handle.pid} killed (--force)")
    wait_exits(stuck, Deadline(5.0), run.interrupts, lambda h, t: None)
    for handle in stuck:
        run.outcome.record(handle.pid).ending = "killed"
    _close(stuck)


def _py_spy_dump(py_spy: str, pid: int) -> str | None:
    try:
        done = subprocess.run(
            [py_spy, "dump", "--pid", str(pid)],
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"py-spy failed: {err}"
    return (done.stdout or done.stderr).strip() or None


def _verify(run: _Run) -> None:
    out, s = run.outcome, run.settings
    assert run.group_procs is not None
    group = run.group_procs.group
    with out.phase(Phase.VERIFY, run.progress) as ph:
        current = _reader(run)()
        old = {p.pid for p in run.group_procs.processes}
        survivors = sorted(set(current.pids) & old)
        if survivors or len(current.pids) < group.processes:
            run.healthy = False
            raise NotReplacedError(
                f"group {group.name!r} has {len(current.pids)} of {group.processes} processes "
                f"after the restart ({len(survivors)} old); see Apache's error log"
                + (f" {group.error_log}" if group.error_log else "")
            )
        if not s.health_url:
            run.healthy = True
            ph.detail = f"{len(current.pids)}/{group.processes} processes up; no health URL"
            return
        result = probe(s.health_url, s.health_timeout)
        health_deadline = Deadline(HEALTH_WAIT)
        while not result.ok and not health_deadline.expired():
            run.interrupts.sleep(0.2)
            result = probe(s.health_url, min(s.health_timeout, health_deadline.remaining() + 0.1))
        out.health = {
            "url": result.url,
            "ok": result.ok,
            "status": result.status,
            "latency": round(result.latency, 4),
            "error": result.error,
        }
        run.healthy = result.ok
        if not result.ok:
            raise UnhealthyError(
                f"{s.health_url} answered {result.describe()} after the restart; the backend "
                "stays diverted so users do not reach it. Fix the app, then run "
                f"`wsgi-drain undrain --group {s.group}`"
            )
        ph.detail = f"{len(current.pids)}/{group.processes} processes up; {result.describe()}"


# -- the one failure policy ---------------------------------------------------------------------


def _settle(run: _Run) -> None:
    """Restore routers or deliberately leave them diverted; write the journal's end."""
    out, s = run.outcome, run.settings
    diverted = [
        (spec, router, rec)
        for (spec, router), rec in zip(run.routers, out.routers, strict=True)
        if rec.diverted
    ]
    if run.signalled and run.healthy is None and s.health_url:
        # Interrupted or failed between the signal and the health check: only
        # put traffic back on an app that answers.
        run.healthy = probe(s.health_url, s.health_timeout).ok
    restore = not run.signalled or run.healthy is not False
    if diverted and restore:
        with out.phase(Phase.RESTORE, run.progress) as ph:
            failures = []
            for _spec, router, rec in diverted:
                try:
                    router.restore()
                    rec.restored = True
                except DrainError as err:
                    rec.error = str(err)
                    failures.append(str(err))
            ph.detail = ", ".join(f"{rec.name}: ready" for _s, _r, rec in diverted if rec.restored)
            if failures:
                ph.status = "failed"
                out.left_diverted = True
                if out.error is None:
                    out.error = RouterError("restore", "; ".join(failures))
    elif diverted:
        out.left_diverted = True
        run.progress(
            "restore",
            "left diverted: "
            + ", ".join(rec.name for _s, _r, rec in diverted)
            + f" (repair with `wsgi-drain undrain --group {s.group}`)",
        )
    if run.journal is not None:
        if out.left_diverted:
            run.journal.phase = "left-diverted"
            run.journal.note = (
                "the app was not healthy after the restart"
                if run.healthy is False
                else "restoring a router failed"
            )
            run.journal.save(s.state_dir)
        else:
            run.journal.remove(s.state_dir)


def _close(handles: list[Handle]) -> None:
    for handle in handles:
        handle.close()


def _warn(run: _Run, message: str) -> None:
    run.outcome.warnings.append(message)
    run.progress("warning", message)
