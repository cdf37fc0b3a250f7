"""The restart sequence, phase by phase (DESIGN.md "Restart, phase by phase").

Read top to bottom: discover, lock, divert, signal, watch, verify, restore.
One failure policy, in `_settle`: nothing signalled -> put back every router
this run diverted; signalled and healthy -> put them back; signalled and not
healthy (or not known to be) -> leave the backend diverted so no user
reaches a broken app, keep the journal, say so.  A router the operator had
taken out of rotation before the run is never touched.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from wsgi_drain import inflight, peers, procfs, pyspy
from wsgi_drain import routers as routers_mod
from wsgi_drain.applog import RunLog
from wsgi_drain.config import Settings
from wsgi_drain.deadline import Deadline
from wsgi_drain.discovery import (
    ApacheInstance,
    DaemonProcess,
    GroupProcesses,
    find_apache,
    group_processes,
    reread,
)
from wsgi_drain.errorlog import Ending, ErrorLogTail, ending_of
from wsgi_drain.errors import (
    CrashLoopError,
    DrainError,
    Interrupted,
    NotFoundError,
    NotReplacedError,
    RouterError,
    UnhealthyError,
)
from wsgi_drain.health import Probe, probe_for
from wsgi_drain.interrupts import Interrupts
from wsgi_drain.outcome import Outcome, Phase, Progress, RouterRecord
from wsgi_drain.procfs import fds_readable
from wsgi_drain.restart import policy
from wsgi_drain.routers import Router, RouterState
from wsgi_drain.signals import Handle, check_support, open_handle, parse_signal
from wsgi_drain.state import Journal, group_lock, lock_holder, router_lock
from wsgi_drain.traps import find_traps
from wsgi_drain.traps import split as split_traps
from wsgi_drain.warm import warm
from wsgi_drain.watch import died_within, wait_exits, wait_replacements

# The Apache parent respawns a daemon 0.2-1 s after it exits (DESIGN.md); allow
# generously for a loaded host and the app's import time.
RESPAWN_MARGIN = 10.0
# How long an idle process takes to leave after SIGUSR1 in rolling mode before
# we conclude load keeps it busy.  mod_wsgi checks for "no active requests"
# when a request ends and from its monitor thread about once a second.
IDLE_WAIT = 2.0
# With its requests visible on the host, an idle process is known idle at
# once: it leaves within ~0.01 s of SIGUSR1; this is the margin for that.
IDLE_EXIT = 0.25
# After the replacements are up, how long the app may take to answer its first
# health probe (a lazily loaded app imports on its first request).
HEALTH_WAIT = 15.0
# In rolling mode a replacement must live this long before the next process is
# signalled: code that kills the interpreter as it loads (a preloaded app)
# dies within it, and the rolling restart stops instead of spreading it.
SETTLE = 0.5
# Also how often the peers are read while draining (a peer failing its checks
# under the extra load ends the drain at once, see _peers_lost).
DRAIN_SLICE = 0.1
# How often requests in flight are read on the host (/proc) while waiting for them.
HOST_POLL = 0.02
# How often the router is asked whether it sees the restored server UP.
LB_UP_POLL = 0.1
# New processes of the group that die after the signal before the verdict:
# this many make a crash loop (the parent respawns a dead daemon within about
# a second, so two deaths come within ~1-2 s of the first replacement).
CRASH_EXITS = 2
# A process still alive this long after SIGUSR1 with no request in flight is
# hanging in interpreter shutdown (an idle daemon leaves within ~0.01 s): it
# is inspected then, while it hangs, not at the deadline when it may be gone.
HANG_INSPECT = 1.0
# How long Apache may take to bring the group back after restarting itself.
APACHE_RESTART_WAIT = 15.0
# How long to wait for the parent's log lines on those deaths (exit status).
CRASH_WORDS_WAIT = 1.5


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
    previous: Journal | None = None
    signalled: bool = False
    healthy: bool | None = None
    # processes= of the group as it runs (the files' value unless the running
    # configuration could not be proven to be the one on disk).
    expected: int = 0
    py_spy: Path | None = None
    log: RunLog | None = None
    apache_restarted: str | None = None
    group_procs_pid_parent: int | None = None
    signalled_at: float | None = None
    # New members seen after the signal, and those of them seen gone again.
    seen_new: set[int] = field(default_factory=set)
    vanished: set[int] = field(default_factory=set)


def restart(
    settings: Settings,
    *,
    dry_run: bool = False,
    force: bool = False,
    progress: Progress,
    py_spy: Path | None = None,
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
        run = _Run(settings, progress, interrupts, outcome, py_spy=py_spy)
        try:
            _discover(run)
            interrupts.check()
            if dry_run:
                _plan(run, sig)
            else:
                with contextlib.ExitStack() as locks:
                    locks.enter_context(group_lock(settings.state_dir, settings.group))
                    for spec, _router in run.routers:
                        locks.enter_context(router_lock(settings.state_dir, spec, settings.group))
                    try:
                        _execute(run, sig, force)
                    finally:
                        _settle(run)
        except DrainError as err:
            outcome.error = err
            if run.signalled:
                _endings_from_log(run)
                _app_words(run)
        except Exception as err:  # a bug: still reported, routers still settled above
            outcome.unexpected = err
    outcome.duration = time.monotonic() - outcome.started
    return outcome


# -- discover ---------------------------------------------------------------------------------


def _discover(run: _Run) -> None:
    s, out = run.settings, run.outcome
    with out.phase(Phase.DISCOVER, run.progress) as ph:
        check_support()
        instance = find_apache(pidfile=s.apache_pidfile, config_path=s.apache_config)
        group = instance.config.group(s.group)
        procs = group_processes(instance, group)
        if not procs.processes:
            raise NotFoundError(
                f"group {group.name!r} has no live processes under {instance.describe()}"
            )
        run.instance, run.group_procs = instance, procs
        run.group_procs_pid_parent = instance.pid
        out.apache_pid, out.apache_config = instance.pid, str(instance.config_path)
        run.expected = group.processes
        identity = procs.identity
        if identity is not None:
            for warning in identity.warnings:
                _warn(run, warning)
            if not identity.config_current and len(procs.processes) != group.processes:
                run.expected = len(procs.processes)
                _warn(
                    run,
                    f"expecting {run.expected} replacement(s), as many processes as run now: "
                    f"the processes={group.processes} on disk is not proven to be what runs",
                )
        out.processes_expected = run.expected
        found = find_traps(group, fds_readable=fds_readable(instance.pid))
        for trap in split_traps(found, s.ack_traps)[0]:
            _warn(run, trap.advice)
        if len(procs.processes) < run.expected:
            _warn(
                run,
                f"only {len(procs.processes)} of {run.expected} processes are up before "
                "the restart (one may be respawning)",
            )
        if s.health_url and s.health_insecure:
            _warn(run, f"{s.health_url}: the certificate is not verified (--health-insecure)")
        if not s.health_url:
            _warn(
                run,
                "no --health-url: the app's answer after the restart is not verified; the "
                "routers are put back once every process is replaced",
            )
        _read_routers(run)
        _measure_in_flight(run)
        _choose_mode(run)
        proof = f"{identity.proof}" if identity is not None else f"by {procs.method}"
        ph.detail = (
            f"{instance.describe()}: group {group.name!r} ({proof}), "
            f"{len(procs.processes)}/{run.expected} processes "
            f"[{' '.join(map(str, procs.pids))}]; "
            f"drain window {group.drain_window:g} s + shutdown {group.shutdown_window:g} s"
        )


def _read_routers(run: _Run) -> None:
    """Each router's state before the run; a left-behind journal of ours is taken over.

    A server that is not READY was taken out by someone (an operator's MAINT,
    a drain for other work): this run neither diverts nor restores it.  The
    exception is a server a previous wsgi-drain run diverted and left (its
    journal says so, and that run is gone): this run takes it over and puts
    it back when the app is healthy.
    """
    s, out = run.settings, run.outcome
    run.routers = tuple(
        (spec, routers_mod.from_spec(spec, s.group, s.lb_detect))
        for spec in routers_mod.specs(s.haproxy, s.routers)
    )
    previous = Journal.load(s.state_dir, s.group)
    if previous is not None and lock_holder(s.state_dir, s.group) is None:
        run.previous = previous
    left = set(run.previous.still_diverted) if run.previous is not None else set()
    for spec, router in run.routers:
        check_admin = getattr(router, "check_admin", None)
        if check_admin is not None:
            check_admin()
        state = router.state()
        rec = RouterRecord(name=router.name, before=state.admin, state=state)
        out.routers.append(rec)
        if state.admin != "ready" and spec in left:
            assert run.previous is not None
            rec.adopted = True
            _warn(
                run,
                f"{router.name} was left in {state.admin} by an earlier run (pid "
                f"{run.previous.pid}, phase {run.previous.phase}); this run takes it over "
                "and puts it back when the app is healthy",
            )
        elif state.admin != "ready":
            _warn(
                run,
                f"{router.name} is in {state.admin} before the restart, and not by "
                "wsgi-drain: it is left exactly so (not diverted, not put back)",
            )


def _measure_in_flight(run: _Run) -> None:
    """Give routers that measure in-flight requests on the host (health-file) the means.

    Each request between Apache and the daemons is one accepted connection on
    the group's socket (docs/mod_wsgi.md).
    """
    sock = run.group_procs.socket if run.group_procs is not None else None
    for _spec, router in run.routers:
        if hasattr(router, "in_flight") and sock is not None:
            path = str(sock.path)
            router.in_flight = lambda path=path: procfs.unix_connections(path)


def _choose_mode(run: _Run) -> None:
    """Drain mode needs a router with enough peers; otherwise restart in place.

    Draining the only UP server of a backend makes HAProxy answer 503 to every
    request until it is back (measured: ~400 failures), so it is never done.
    A server already out of rotation needs no divert and no peers.
    """
    out = run.outcome
    if out.mode != "drain":
        return
    if not run.routers:
        out.mode = "rolling"
        _warn(
            run, "no router given (--router/--haproxy): restarting in place, one process at a time"
        )
        return
    s = run.settings
    for rec in out.routers:
        if rec.before != "ready":
            continue
        if rec.peers_up is None and s.min_peers != 0:
            _warn(
                run,
                f"{rec.name} cannot tell how many other servers are UP: "
                f"{peers.describe(s.min_peers)} is taken on trust for it",
            )
        elif rec.state is not None and peers.short(rec.state, s.min_peers):
            if s.peer_wait > 0 and not out.dry_run:
                continue  # waited for in _divert, under the group's lock
            if s.few_peers == "refuse":
                raise RouterError(rec.name, _too_few_peers(run, rec.state))
            out.mode = "rolling"
            _warn(
                run,
                f"{rec.name} has {rec.peers_up} other server(s) UP (need "
                f"{peers.needed(rec.state, s.min_peers)}): draining it would fail every "
                "request, so restarting in place, one process at a time, without diverting",
            )
            return


def _too_few_peers(run: _Run, state: RouterState) -> str:
    """Why a fleet-safe run (--if-few-peers refuse) will not take this host out."""
    s = run.settings
    return (
        f"{peers.shortfall(state, s.min_peers, s.peer_wait)}; refusing to take "
        "this host out too (--if-few-peers refuse). If a host was left out by an earlier "
        f"run, repair it there (`wsgi-drain undrain --group {s.group}`) or find why its "
        "checks fail, then rerun"
    )


def _plan(run: _Run, sig: signal.Signals) -> None:
    out, procs = run.outcome, run.group_procs
    assert procs is not None
    group = procs.group
    out.deadline = _deadline_seconds(run)
    if out.mode == "drain":
        for (_spec, router), rec in _paired(run):
            if rec.before == "ready":
                out.plan.append(
                    f"divert {router.name} and wait up to {run.settings.drain_timeout:g} s"
                )
            elif rec.adopted:
                out.plan.append(
                    f"keep {router.name} in {rec.before}, where an earlier run left it; wait up "
                    f"to {run.settings.drain_timeout:g} s for its requests in flight"
                )
            else:
                out.plan.append(
                    f"leave {router.name} in {rec.before}; wait up to "
                    f"{run.settings.drain_timeout:g} s for its requests in flight"
                )
        out.plan.append(f"send {sig.name} to {' '.join(map(str, procs.pids))} at once")
    else:
        counts = (
            inflight.by_process(procs.pids, procs.socket.path) if procs.socket is not None else None
        )
        if counts is None:
            order = f"{' '.join(map(str, procs.pids))}: {sig.name}, then SIGTERM after "
            order += f"{IDLE_WAIT:g} s if still busy"
        else:
            now = ", ".join(f"{pid}: {len(counts.get(pid, ()))}" for pid in procs.pids)
            order = (
                f"idle first, by requests in flight now ({now}): {sig.name}, then SIGTERM once "
                "the requests it had are done"
            )
        out.plan.append(
            f"one process at a time ({order}; requests it takes meanwhile get shutdown-timeout "
            f"{group.shutdown_window:g} s), wait for its replacement"
            + (" and a healthy answer" if run.settings.health_url else "")
            + ", stop at the first that fails"
        )
        out.plan.append(
            "no router: a request running when its process is signalled gets at most the drain "
            f"window + shutdown-timeout ({group.drain_window:g} + {group.shutdown_window:g} s), "
            f"one arriving later at least shutdown-timeout ({group.shutdown_window:g} s); a "
            "longer one is cut. Only a router (drain mode) lets it finish"
        )
    out.plan.append(f"wait up to {out.deadline:g} s for {run.expected} new processes")
    if run.settings.health_url:
        out.plan.append(f"probe {run.settings.health_url}")
    put_back = [rec.name for rec in out.routers if rec.ours]
    if out.mode == "drain" and put_back:
        out.plan.append("restore " + ", ".join(put_back))
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
    return _rolling_step(run) * max(1, len(run.group_procs.processes))


def _rolling_step(run: _Run) -> float:
    assert run.group_procs is not None
    group = run.group_procs.group
    return min(IDLE_WAIT, group.drain_window) + group.shutdown_window + RESPAWN_MARGIN


# -- execute ----------------------------------------------------------------------------------


def _execute(run: _Run, sig: signal.Signals, force: bool) -> None:
    s, out = run.settings, run.outcome
    assert run.instance is not None and run.group_procs is not None
    run.journal = Journal(
        group=s.group,
        pid=os.getpid(),
        started=time.time(),
        routers=[spec for spec, _r in run.routers],
        before={spec: rec.before or "" for (spec, _r), rec in _paired(run)},
        diverted=[spec for (spec, _r), rec in _paired(run) if rec.adopted],
    )
    for (spec, _r), rec in _paired(run):
        if rec.adopted:
            # Taken over from the earlier run: it was in rotation before that one.
            run.journal.before[spec] = "ready"
            rec.diverted = True
    run.journal.save(s.state_dir)
    run.log = RunLog(_error_log_tail(run), run.group_procs.group.name)
    out.deadline = _deadline_seconds(run)
    deadline = Deadline(out.deadline)

    if out.mode == "drain" and not _divert(run):
        out.mode = "rolling"
    if out.mode == "drain":
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
                    run.expected,
                    Deadline(RESPAWN_MARGIN),
                    run.interrupts,
                    _on_new(run),
                )
                out.new_pids = [pid for pid in current.pids if pid not in old]
                stuck = []
    else:
        stuck = _rolling(run, sig, deadline, force)
    _endings_from_log(run)
    _hang_notes(run)
    if stuck:
        raise _stuck_error(run, stuck)
    _verify(run)
    _warm(run)


def _warm(run: _Run) -> None:
    """Drain mode, lazily loaded app: every replacement loads it before traffic returns."""
    out, s = run.outcome, run.settings
    assert run.group_procs is not None
    group = run.group_procs.group
    if out.mode != "drain" or group.preloaded:
        return
    if not s.health_url:
        _warn(
            run,
            "the app loads lazily and no --health-url was given to warm the new processes "
            "with: the first user request on each waits for the import",
        )
        return
    current = _reader(run)()
    new = [pid for pid in current.pids if pid not in set(run.group_procs.pids)]
    if current.socket is None or not new:
        return
    with out.phase(Phase.WARM, run.progress) as ph:
        result = warm(s, new, current.socket.path, group.threads, HEALTH_WAIT, run.interrupts)
        out.warm = result.as_dict()
        ph.detail = result.describe()
    if result.missed and not result.blind:
        _warn(run, f"warm: {result.describe()}; their first user request may wait for the import")


def _error_log_tail(run: _Run) -> ErrorLogTail | None:
    """Follow the group's error log; None (and a warning) when it cannot be followed."""
    assert run.instance is not None and run.group_procs is not None
    path = run.instance.error_log_of(run.group_procs.group)
    if path is None:
        _warn(run, "Apache logs to a pipe or syslog: each old process's ending is only 'exited'")
        return None
    try:
        return ErrorLogTail(path)
    except OSError as err:
        _warn(
            run,
            f"cannot follow the error log {path} ({err.strerror or err}): each old process's "
            "ending is only 'exited'",
        )
        return None


def _divert(run: _Run) -> bool:
    """Take every router this run owns out of rotation; wait until nothing is in flight.

    The journal records each divert *before* the command is sent: an answer
    that never arrives may hide a command HAProxy carried out, and the
    failure policy must then still put the server back.  Returns False when
    the other servers dropped below --min-peers during the wait (they could
    not carry this one's traffic): everything was put back, nothing was
    signalled, and the caller restarts in place instead.
    """
    out = run.outcome
    with out.phase(Phase.DIVERT, run.progress) as ph:
        if not _divert_with_peers(run):
            ph.detail = "not diverted: too few other servers UP after --peer-wait"
            return False
        # A router the LB watches from afar (health-file) needs its detection
        # time on top of the drain timeout.
        settle = max((getattr(r, "settle_delay", 0.0) for _s, r in run.routers), default=0.0)
        drain_deadline = Deadline(run.settings.drain_timeout + settle)
        for (_spec, router), rec in _paired(run):
            # Short slices so SIGINT/SIGTERM is acted on promptly.
            while True:
                state = router.wait_drained(drain_deadline.within(DRAIN_SLICE))
                run.interrupts.check()
                if _peers_lost(run, rec, state):
                    ph.detail = "put back: the other servers went down during the drain"
                    return False
                if (state.sessions == 0 and state.queued == 0) or drain_deadline.expired():
                    break
            if not state.sessions_known:
                _warn(
                    run,
                    f"{router.name} cannot count requests in flight: not waited for at the "
                    "router; requests still running get the group's drain window",
                )
                continue
            rec.sessions_at_signal = state.sessions + state.queued
            if rec.sessions_at_signal:
                _warn(
                    run,
                    f"{router.name}: {rec.sessions_at_signal} request(s) still in flight after "
                    f"{run.settings.drain_timeout:g} s; they get the group's drain window",
                )
        _wait_host_requests(run, drain_deadline)
        for _spec, router in run.routers:
            # A HAProxy reload or an agent check can silently undo the drain;
            # signalling then would cut requests the router still sends.
            admin = router.state().admin
            if admin == "ready":
                raise RouterError(
                    router.name,
                    "the server is back in rotation (was HAProxy reloaded, or the state "
                    "changed by hand?); nothing was signalled",
                )
        ph.detail = "; ".join(f"{r.name}: {r.sessions_at_signal} in flight" for r in out.routers)
    return True


def _peers_lost(run: _Run, rec: RouterRecord, state: RouterState) -> bool:
    """During the drain: did the other servers drop below --min-peers? Then undo it.

    Diverting one of two saturated hosts doubles the other's load; its own
    health checks can then time out and the load balancer takes it out too,
    leaving no server at all (measured: thousands of 503s, bench/load_cases.py
    saturated-drain).  Before any signal that is still reversible: every
    diverted router is put back at once, and the run restarts in place (or,
    with --if-few-peers refuse, stops with exit 4).
    """
    s = run.settings
    if not rec.diverted or state.peers_up is None:
        return False
    # A peer failing its checks ("UP 1/2") is on its way out: act before it is.
    # Capacity, not order: with --min-peers all one healthy peer is enough
    # here (another run diverting for a moment must not undo ours).
    healthy = state.peers_up - len(state.peers_failing)
    need = 1 if s.min_peers == peers.ALL else s.min_peers
    assert isinstance(need, int)
    if healthy >= need:
        return False
    out = [*state.peers_out, *(f"{n} (failing its checks)" for n in state.peers_failing)]
    why = (
        f"{rec.name}: the other servers went out of rotation during the drain "
        f"({', '.join(out) or 'unnamed'}; {healthy} UP and healthy, need {need}): they "
        "cannot carry this server's traffic"
    )
    for (spec, router), other in _paired(run):
        if other.diverted:
            _put_back(run, router, other)
            other.diverted = False
            if run.journal is not None and spec in run.journal.diverted:
                run.journal.diverted.remove(spec)
    if run.journal is not None:
        run.journal.save(s.state_dir)
    if s.few_peers == "refuse":
        raise RouterError(rec.name, f"{why}; put back, nothing signalled (--if-few-peers refuse)")
    _warn(run, f"{why}; put back at once, restarting in place instead")
    return True


class _TooFewPeers(RouterError):
    """Still too few peers after --peer-wait, under --if-few-peers rolling."""


def _divert_with_peers(run: _Run) -> bool:
    """Divert every router this run owns, taking turns with parallel runs (peers.py).

    Peers are counted before each divert (waited for, up to --peer-wait) and
    again after it; a peer gone out in between is another run diverting at
    the same moment: this run puts back what it diverted and tries again
    after a random pause, until --peer-wait is used up (then exit 4, nothing
    signalled).  Returns False when the peers stayed too few and
    --if-few-peers rolling asks for a restart in place (nothing left diverted).
    """
    s = run.settings
    owned = {id(router): (spec, rec) for (spec, router), rec in _paired(run)}

    def divert(router: Router) -> None:
        spec, rec = owned[id(router)]
        _divert_one(run, spec, router, rec)

    def refuse(router: Router, state: RouterState, why: str) -> RouterError:
        if why:
            return RouterError(router.name, f"{why}, nothing signalled")
        if s.few_peers == "rolling":
            return _TooFewPeers(
                router.name,
                f"{peers.shortfall(state, s.min_peers, s.peer_wait)}: restarting in place, one "
                "process at a time, without diverting",
            )
        return RouterError(router.name, _too_few_peers(run, state))

    todo = [router for (_spec, router), rec in _paired(run) if rec.ours and not rec.diverted]
    turn = peers.Turn()
    try:
        peers.divert_in_turn(
            todo,
            s.min_peers,
            Deadline(s.peer_wait),
            run.interrupts,
            divert=divert,
            put_back=lambda: _back_off(run),
            progress=lambda message: run.progress("divert", message),
            refuse=refuse,
            turn=turn,
        )
    except _TooFewPeers as err:
        _back_off(run)
        _warn(run, str(err))
        return False
    finally:
        run.outcome.peer_wait, run.outcome.backoffs = turn.waited, turn.backoffs
    for (_spec, router), rec in _paired(run):
        rec.state = turn.last.get(router.name, rec.state)
        if rec.diverted and rec.out_at is None:
            rec.out_at = time.time()
    return True


def _divert_one(run: _Run, spec: str, router: Router, rec: RouterRecord) -> None:
    """Divert one router, journalled *before* the command (see _divert)."""
    journal = run.journal
    assert journal is not None
    journal.phase = "divert"
    journal.diverted.append(spec)
    journal.save(run.settings.state_dir)
    rec.diverted = True
    try:
        router.divert()
    except RouterError as err:
        if err.applied is False:
            rec.diverted = False
            journal.diverted.remove(spec)
            journal.save(run.settings.state_dir)
        else:
            rec.unconfirmed = True
        raise
    up = "?" if rec.peers_up is None else str(rec.peers_up)
    run.progress("divert", f"{router.name}: drain ({up} other server(s) UP)")


def _back_off(run: _Run) -> None:
    """Put back every router this run diverted (not those it took over), journal to match."""
    journal = run.journal
    assert journal is not None
    for (spec, router), rec in _paired(run):
        if rec.diverted and not rec.adopted:
            _put_back(run, router, rec)
            rec.diverted = rec.restored = rec.unconfirmed = False
            rec.back_at = None
            if spec in journal.diverted:
                journal.diverted.remove(spec)
    journal.save(run.settings.state_dir)


def _wait_host_requests(run: _Run, deadline: Deadline) -> None:
    """Wait for the requests the router cannot see: those that reached Apache directly.

    Once the routers show nothing in flight, what the daemons still hold came
    from elsewhere (an internal call straight to Apache).  Those requests,
    the ones in flight now, are waited for within the drain timeout; requests
    that arrive later are not (steady internal traffic would hold every
    restart to the timeout), and SIGUSR1 gives them the drain window.
    """
    sock = run.group_procs.socket if run.group_procs is not None else None
    if sock is None:
        return
    pending = _held(run)
    if pending is None:
        _warn(
            run,
            "cannot read the daemons' sockets: requests that bypassed the router are not awaited",
        )
        return
    if pending:
        run.progress(
            "divert",
            f"host: {len(pending)} request(s) in flight that did not come through the router; "
            f"waiting up to {max(deadline.remaining(), 0):.0f} s",
        )
    while pending and not deadline.expired():
        run.interrupts.check()
        time.sleep(min(HOST_POLL, max(deadline.remaining(), 0.0)))
        pending &= _held(run) or set()
    run.outcome.host_in_flight_at_signal = len(pending)
    if pending:
        _warn(
            run,
            f"host: {len(pending)} request(s) that did not come through the router still in "
            f"flight after {run.settings.drain_timeout:g} s; they get the group's drain window",
        )


def _held(run: _Run) -> set[int] | None:
    """The requests the group's processes hold now (not those queued in the socket's backlog).

    A connection still in the listen backlog is served by whichever process
    accepts it, a replacement included: only accepted ones can be cut.
    """
    assert run.group_procs is not None and run.group_procs.socket is not None
    held = inflight.by_process(run.group_procs.pids, run.group_procs.socket.path)
    return None if held is None else set().union(*held.values())


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
        run.signalled_at = time.monotonic()
        for handle in handles:
            run.signalled = True
            if handle.send(sig):
                out.record(handle.pid).signals.append(sig.name)
        ph.detail = f"{sig.name} -> {' '.join(str(h.pid) for h in handles)}"
    return handles


def _watch_all(run: _Run, handles: list[Handle], deadline: Deadline) -> list[Handle]:
    out = run.outcome
    assert run.group_procs is not None and run.journal is not None
    sent_at = time.monotonic()
    old = {h.pid for h in handles}
    with out.phase(Phase.WATCH, run.progress) as ph:
        run.journal.phase = "watch"
        run.journal.save(run.settings.state_dir)
        on_exit = _on_exit(run, sent_at)
        alive = wait_exits(handles, deadline.within(HANG_INSPECT), run.interrupts, on_exit)
        if alive and _nothing_in_flight(run):
            _inspect_hang(run, alive, time.monotonic() - sent_at)
        stuck = wait_exits(alive, deadline, run.interrupts, on_exit) if alive else []
        current = wait_replacements(
            _watching_reader(run), old, old, run.expected, deadline, run.interrupts, _on_new(run)
        )
        _close([h for h in handles if h not in stuck])  # stuck ones may still need a SIGKILL
        out.new_pids = [pid for pid in current.pids if pid not in old]
        ph.detail = (
            f"{len(old) - len(stuck)}/{len(old)} old processes exited, "
            f"{len(out.new_pids)}/{run.expected} replacements up"
        )
        if stuck:
            ph.status = "failed"
    return stuck


def _rolling(run: _Run, sig: signal.Signals, deadline: Deadline, force: bool) -> list[Handle]:
    """One process at a time, keeping the others serving; stop at the first that fails.

    Idle processes first, by the requests each holds on the host (inflight.py).
    SIGUSR1 first: an idle process leaves within milliseconds.  A busy one
    keeps accepting during its drain window, so it would leave only when the
    window ends; instead, once the requests it held when signalled are done
    (those keep up to the drain window, mod_wsgi's own timer), it gets
    SIGTERM, which makes it stop accepting while its siblings take new
    requests; the ones it took since get the full shutdown-timeout, even when
    the overall deadline is short (no request is ever given less).  Before the
    next process: its replacement must be up and, with a health URL, the app
    must answer, so a broken deploy stops after one process while the others
    keep serving the old code.
    """
    out = run.outcome
    assert run.instance is not None and run.group_procs is not None and run.journal is not None
    old_pids = set(run.group_procs.pids)
    known = set(old_pids)
    total = len(run.group_procs.processes)
    pending = list(run.group_procs.processes)
    with out.phase(Phase.WATCH, run.progress) as ph:
        for done in range(total):
            run.interrupts.check()
            if deadline.expired():
                ph.status = "failed"
                raise NotReplacedError(
                    f"the deadline ({out.deadline:g} s) ran out after {done} of {total} "
                    f"processes were replaced; the others were not signalled and keep serving"
                )
            proc = _least_busy(run, pending)
            pending.remove(proc)
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
            if run.signalled_at is None:
                run.signalled_at = sent_at
            handle.send(sig)
            rec.signals.append(sig.name)
            own = _requests_of(run, proc.pid)
            rec.in_flight_at_signal = None if own is None else len(own)
            held = "" if own is None else f" ({len(own)} in flight)"
            run.progress("signal", f"{sig.name} -> {proc.pid}{held}")
            alive = _stop_one(run, handle, sig, own, deadline, _on_exit(run, sent_at))
            if alive:
                _report_stuck(run, alive)
                if not force:
                    ph.status = "failed"
                    ph.detail = f"{proc.pid} did not exit"
                    return alive
                _kill(run, alive)
            handle.close()
            known = _replaced_one(run, proc.pid, known, done, total)
        final = _reader(run)()
        out.new_pids = [pid for pid in final.pids if pid not in old_pids]
        ph.detail = f"{len(out.new_pids)}/{run.expected} processes replaced one at a time"
    return []


def _least_busy(run: _Run, candidates: list[DaemonProcess]) -> DaemonProcess:
    """The candidate with the fewest requests in flight (the first one when unreadable)."""
    sock = run.group_procs.socket if run.group_procs is not None else None
    if sock is None:
        return candidates[0]
    counts = inflight.by_process([c.pid for c in candidates], sock.path)
    if counts is None:
        return candidates[0]
    return min(candidates, key=lambda c: len(counts.get(c.pid, ())))


def _requests_of(run: _Run, pid: int) -> set[int] | None:
    """Inodes of the requests `pid` holds now; None when they cannot be read."""
    sock = run.group_procs.socket if run.group_procs is not None else None
    if sock is None:
        return None
    found = inflight.by_process([pid], sock.path)
    return None if found is None else found.get(pid, set())


def _stop_one(
    run: _Run,
    handle: Handle,
    sig: signal.Signals,
    own: set[int] | None,
    deadline: Deadline,
    on_exit: Callable[[Handle, float], None],
) -> list[Handle]:
    """After `sig`: wait for the process to leave, SIGTERM it once busy only with newer work.

    Returns [handle] if it is still alive when every allowance is spent.
    """
    assert run.group_procs is not None
    group = run.group_procs.group
    grace = Deadline(group.shutdown_window + RESPAWN_MARGIN)
    if sig != signal.SIGUSR1:
        return wait_exits([handle], grace, run.interrupts, on_exit)
    if own is None:
        # Cannot see its requests: give it IDLE_WAIT to prove it idle.
        alive = wait_exits([handle], deadline.within(IDLE_WAIT), run.interrupts, on_exit)
        why = f"still busy after {IDLE_WAIT:g} s"
    else:
        alive = wait_exits([handle], deadline.within(IDLE_EXIT), run.interrupts, on_exit)
        if alive:
            # Its requests of the moment keep up to the drain window (mod_wsgi
            # aborts them at its end itself, then exits).
            window = Deadline(group.drain_window + group.shutdown_window + RESPAWN_MARGIN)
            alive = _wait_requests_done(run, handle, own, window, on_exit)
        now = _requests_of(run, handle.pid)
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
    return wait_exits([handle], grace, run.interrupts, on_exit)


def _wait_requests_done(
    run: _Run,
    handle: Handle,
    own: set[int],
    limit: Deadline,
    on_exit: Callable[[Handle, float], None],
) -> list[Handle]:
    """Wait until the process exits, or until none of the requests in `own` is left."""
    left = set(own)
    while True:
        alive = wait_exits([handle], limit.within(HOST_POLL), run.interrupts, on_exit)
        if not alive or limit.expired():
            return alive
        now = _requests_of(run, handle.pid)
        if now is None:
            return alive
        left &= now
        if not left:
            return alive


def _replaced_one(run: _Run, pid: int, known: set[int], done: int, total: int) -> set[int]:
    """Wait for `pid`'s replacement, then check it lives and the app answers; the pids now known."""
    assert run.group_procs is not None
    group = run.group_procs.group
    seen: set[int] = set()
    note_new = _on_new(run)

    def on_new(new_pid: int, when: float) -> None:
        seen.add(new_pid)
        note_new(new_pid, when)

    def crash_loop() -> bool:
        # Replacements that keep dying will never fill the group: say so now,
        # not at the end of RESPAWN_MARGIN.
        return len(_new_deaths(run, known)) >= CRASH_EXITS

    current = wait_replacements(
        _reader(run),
        {pid},
        known,
        run.expected,
        Deadline(RESPAWN_MARGIN),
        run.interrupts,
        on_new,
        crash_loop,
    )
    new = set(current.pids) - known
    if pid in current.pids or len(current.pids) < run.expected:
        # A replacement that crashes at start makes Apache start another, which
        # crashes too: the group never fills up.  Name the real cause when a
        # replacement is known to have died.
        died = _new_deaths(run, known, {p for p in seen if procfs.gone(p)})
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
            f"{len(current.pids)}/{run.expected} processes up); stopped after {done} of "
            f"{total} so the rest keep serving. See Apache's error log"
            + (f" {group.error_log}" if group.error_log else "")
        )
    _healthy_between_steps(run, pid, new, done + 1, total)
    return known | set(current.pids)


def _healthy_between_steps(run: _Run, old: int, new: set[int], done: int, total: int) -> None:
    """After one rolling step: the replacement lives and the app answers; else stop here.

    The replacement must survive its first SETTLE seconds.  The probe reaches
    whichever process accepts it, so it proves the group answers, not that the
    new process does; that is why the replacement's own life is checked too.
    """
    died = died_within(new, SETTLE, run.interrupts)
    if died:
        raise NotReplacedError(
            f"replacement {' '.join(map(str, sorted(died)))} of pid {old} exited right after "
            f"it started; stopped after {done - 1} of {total} processes so the rest keep serving"
        )
    if done == total:
        return  # the verify phase probes after the last one
    url = run.settings.health_url
    if not url:
        return
    result = _probe_until_ok(run, HEALTH_WAIT)
    if not result.ok:
        run.healthy = False
        raise UnhealthyError(
            f"after pid {old} was replaced, {url} answered {result.describe()}; stopped after "
            f"{done} of {total} processes so the rest keep serving the old code"
        )


def _reader(run: _Run) -> Callable[[], GroupProcesses]:
    """Re-read the group's members; follows Apache through a restart of its own."""
    assert run.instance is not None and run.group_procs is not None

    def read() -> GroupProcesses:
        assert run.instance is not None and run.group_procs is not None
        try:
            current = reread(run.instance, run.group_procs)
        except NotFoundError:
            if _same_generation(run):
                raise
            current = _after_apache_restart(run)
        if not run.apache_restarted and _generation_of(current) != _generation_of(run.group_procs):
            _note_apache_restart(run, current)
        return current

    return read


def _generation_of(procs: GroupProcesses) -> tuple[int | None, str | None]:
    sock = procs.socket
    return (sock.inode if sock else None, sock.generation if sock else None)


def _same_generation(run: _Run) -> bool:
    """Does the Apache parent still hold the socket the group was proven on?"""
    assert run.instance is not None and run.group_procs is not None
    sock = run.group_procs.socket
    if sock is None or not psutil.pid_exists(run.instance.pid):
        return False
    try:
        return sock.inode in procfs.socket_inodes(run.instance.pid)
    except OSError:
        return False


def _after_apache_restart(run: _Run) -> GroupProcesses:
    """The group once Apache, restarted under this run (`apachectl graceful`/`restart`,
    or stopped and started), has brought it up again; found and proven afresh.

    Apache re-reads its configuration when it restarts, so the instance and
    the group are discovered again from scratch: the old proof means nothing
    for the new generation.  Waits at most APACHE_RESTART_WAIT, then lets the
    last NotFoundError through.
    """
    s = run.settings
    wait = Deadline(APACHE_RESTART_WAIT)
    while True:
        try:
            instance = find_apache(pidfile=s.apache_pidfile, config_path=s.apache_config)
            current = group_processes(instance, instance.config.group(s.group))
            if current.processes:
                break
        except NotFoundError:
            if wait.expired():
                raise
        if wait.expired():
            break
        run.interrupts.sleep(0.2)
    if instance.pid != (run.instance.pid if run.instance else None):
        run.outcome.apache_pid = instance.pid
    run.instance = instance
    return current


def _note_apache_restart(run: _Run, current: GroupProcesses) -> None:
    """Say, once, that Apache restarted the group itself during the run."""
    assert run.group_procs is not None and run.instance is not None
    new_parent = run.instance.pid != run.group_procs_pid_parent
    run.apache_restarted = (
        "Apache was restarted during the run ("
        + (f"new parent pid {run.instance.pid}" if new_parent else "new generation")
        + "): the group was verified as it now stands"
    )
    # Later reads compare against the new generation.
    run.group_procs = GroupProcesses(
        current.group,
        current.socket,
        run.group_procs.processes,
        current.method,
        current.identity,
    )
    _warn(run, run.apache_restarted)
    run.outcome.apache_restarted = run.apache_restarted


def _watching_reader(run: _Run) -> Callable[[], GroupProcesses]:
    """`_reader`, which also stops the run as soon as the replacements crash-loop."""
    read = _reader(run)

    def read_and_check() -> GroupProcesses:
        current = read()
        _note_members(run, set(current.pids))
        _check_crash_loop(run)
        return current

    return read_and_check


def _note_members(run: _Run, pids: set[int]) -> None:
    assert run.group_procs is not None
    old = set(run.group_procs.pids)
    run.vanished |= run.seen_new - pids
    run.seen_new |= pids - old


def _new_deaths(run: _Run, old: set[int], gone: Iterable[int] = ()) -> dict[int, str]:
    """New processes of the group known dead: pid -> how, as logged ("" unknown).

    From the parent's "has died" lines (which see even a daemon that died
    before any re-read could) and `gone`, members seen once and gone since;
    the exits of `old` (the processes before the signal) never count.
    """
    dead: dict[int, str] = {}
    if run.log is not None:
        run.log.poll()
        dead = run.log.deaths(old)
    for pid in gone:
        dead.setdefault(pid, "")
    return dead


def _check_crash_loop(run: _Run) -> None:
    """Raise CrashLoopError when new processes of the group keep dying (_new_deaths)."""
    assert run.group_procs is not None
    old = set(run.group_procs.pids)
    dead = _new_deaths(run, old, run.vanished)
    if len(dead) < CRASH_EXITS:
        return
    run.healthy = False
    if run.log is not None and run.log.available:
        # The parent logs a death (with its exit status) in its maintenance
        # loop, up to about a second after we saw it: wait for those words.
        wait = Deadline(CRASH_WORDS_WAIT)
        while not all(dead.values()) and not wait.expired():
            run.interrupts.sleep(0.1)
            run.log.poll()
            for pid, how in run.log.deaths(old).items():
                if pid in dead or len(dead) < CRASH_EXITS:
                    dead[pid] = how or dead.get(pid, "")
    since = time.monotonic() - (run.signalled_at or run.outcome.started)
    hows = sorted({how for how in dead.values() if how})
    raise CrashLoopError(
        f"crash loop: replacements die at start: {len(dead)} exits in {since:.1f} s"
        + (f" ({', '.join(hows)})" if hows else "")
        + f"; the backend stays diverted. Fix the app (its words are in the report), then "
        f"run `wsgi-drain undrain --group {run.settings.group}`"
    )


def _settled_group(run: _Run) -> GroupProcesses:
    """The group once every new member has lived SETTLE seconds; a crash loop raises.

    Code that kills the interpreter as it loads (a preloaded app) lets the
    replacements appear and die again within milliseconds, so "N/N up" at
    one instant proves nothing.  A member that dies is waited for (its
    respawn) and its successor watched the same way, until the deaths make a
    crash loop or every member lives.
    """
    assert run.group_procs is not None
    read = _watching_reader(run)
    old = set(run.group_procs.pids)
    limit = Deadline(RESPAWN_MARGIN)
    current = read()
    while True:
        died = died_within(set(current.pids) - old, SETTLE, run.interrupts)
        run.vanished |= died
        _check_crash_loop(run)
        if not died and len(current.pids) >= run.expected:
            return current
        if limit.expired():
            return current
        current = wait_replacements(
            read, died, old | set(current.pids), run.expected, limit, run.interrupts, _on_new(run)
        )


def _new_pids(run: _Run) -> set[int]:
    """Every process of the group started since the signal that we know of."""
    pids = set(run.seen_new) | set(run.outcome.new_pids)
    if run.log is not None:
        pids |= run.log.started() | set(
            run.log.deaths(set(run.group_procs.pids) if run.group_procs else set())
        )
    return pids


def _app_words(run: _Run) -> None:
    """Put what the group's new processes wrote to the error log into the report."""
    if run.log is None or not run.log.available:
        return
    run.log.poll()
    run.outcome.app_log = run.log.words(_new_pids(run))


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


def _endings_from_log(run: _Run) -> None:
    """Tell drained / forced / aborted apart from mod_wsgi's own log lines."""
    if run.log is None or not run.log.available:
        return
    run.log.poll()
    events = run.log.events
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
        if rec.hung and ending in (Ending.FORCED, Ending.ABORTED):
            # "aborted" cuts requests only if there were any: say what showed there were none.
            mine = [e for e in events if e.pid == rec.old_pid]
            idle = any(e.kind == "completed" for e in mine)
            threads = f" (thread {', '.join(rec.hang_threads)})" if rec.hang_threads else ""
            _warn(
                run,
                f"{rec.old_pid} blocked interpreter shutdown for {rec.exited_after or 0:.1f} s"
                f"{threads} until its shutdown-timeout {ending.value} it; no request was in "
                "flight: the router had none at the signal"
                + (" and mod_wsgi logged the process idle" if idle else ""),
            )
            continue
        if ending in (Ending.FORCED, Ending.ABORTED) and run.apache_restarted:
            # Apache's own restart stopped it, not its drain window running out.
            _warn(
                run,
                f"{rec.old_pid} was stopped by Apache's own restart before it went idle: "
                + (
                    "requests still running were cut off"
                    if ending is Ending.ABORTED
                    else "its requests had shutdown-timeout to finish"
                ),
            )
            continue
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


def _nothing_in_flight(run: _Run) -> bool:
    """Did every diverted router show no request in flight at the signal?"""
    diverted = [rec for rec in run.outcome.routers if rec.diverted]
    return bool(diverted) and all(rec.sessions_at_signal == 0 for rec in diverted)


def _inspect_hang(run: _Run, alive: list[Handle], since: float) -> None:
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


def _hang_notes(run: _Run) -> None:
    """One line for processes that blocked interpreter shutdown and then exited."""
    hung = [r for r in run.outcome.processes if r.hung and r.exited_after is not None]
    if not hung:
        return
    longest = max(r.exited_after or 0.0 for r in hung)
    names = sorted({n for r in hung for n in r.hang_threads})
    run.outcome.notes.append(
        f"{len(hung)} process(es) blocked interpreter shutdown for {longest:.1f} s"
        + (f" (thread {', '.join(names)})" if names else "")
        + ": an application thread that is not a daemon thread keeps the interpreter "
        "from exiting until shutdown-timeout"
    )


def _report_stuck(run: _Run, stuck: list[Handle]) -> None:
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


def _verify(run: _Run) -> None:
    out, s = run.outcome, run.settings
    assert run.group_procs is not None
    group = run.group_procs.group
    with out.phase(Phase.VERIFY, run.progress) as ph:
        current = _settled_group(run)
        old = {p.pid for p in run.group_procs.processes}
        survivors = sorted(set(current.pids) & old)
        if survivors or len(current.pids) < run.expected:
            run.healthy = False
            raise NotReplacedError(
                f"group {group.name!r} has {len(current.pids)} of {run.expected} processes "
                f"after the restart ({len(survivors)} old); see Apache's error log"
                + (f" {group.error_log}" if group.error_log else "")
            )
        if not s.health_url:
            run.healthy = True
            ph.detail = f"{len(current.pids)}/{run.expected} processes up; no health URL"
            return
        result = _probe_until_ok(run, HEALTH_WAIT)
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
        ph.detail = f"{len(current.pids)}/{run.expected} processes up; {result.describe()}"


def _probe_until_ok(run: _Run, wait: float) -> Probe:
    """Probe the health URL until it answers 2xx or `wait` runs out (the app may be importing).

    Stops early, and says why, when the log shows the new code cannot load
    (an exception at import: retrying cannot help) or the replacements
    crash-loop.
    """
    s = run.settings
    assert s.health_url is not None
    result = probe_for(s)
    health_deadline = Deadline(wait)
    check = _watching_reader(run)
    while not result.ok:
        check()
        failure = run.log.load_failure(_new_pids(run)) if run.log is not None else None
        if failure is not None:
            run.healthy = False
            raise UnhealthyError(
                f"the new code fails to load: {failure} ({s.health_url} answered "
                f"{result.describe()}); the backend stays diverted. Fix the app (its traceback "
                f"is in the report), then run `wsgi-drain undrain --group {s.group}`"
            )
        if health_deadline.expired():
            break
        run.interrupts.sleep(0.2)
        result = probe_for(s, min(s.health_timeout, health_deadline.remaining() + 0.1))
    return result


# -- the one failure policy ---------------------------------------------------------------------


def _healthy_now(run: _Run) -> bool:
    """For a run that stopped after signalling: may traffic go back?

    With a health URL, the app must answer it.  Without one, every old process
    must be gone and the group complete: a group whose processes are stuck,
    or not yet replaced, stays out of rotation.
    """
    if run.settings.health_url:
        return probe_for(run.settings).ok
    if run.group_procs is None:
        return False
    try:
        current = _reader(run)()
    except DrainError:
        return False
    old = set(run.group_procs.pids)
    return len(current.pids) >= run.expected and not set(current.pids) & old


def _settle(run: _Run) -> None:
    """Restore the routers this run diverted, or deliberately leave them; end the journal."""
    out, s = run.outcome, run.settings
    acted_on = {id(rec) for rec in policy.ours_diverted(out.routers)}
    diverted = [(spec, router, rec) for (spec, router), rec in _paired(run) if id(rec) in acted_on]
    if run.signalled and run.healthy is None:
        # Interrupted or failed between the signal and the verdict: only put
        # traffic back on an app that is proven to serve.
        run.healthy = _healthy_now(run)
    restore = policy.restores(run.signalled, run.healthy)
    if diverted and restore:
        with out.phase(Phase.RESTORE, run.progress) as ph:
            failures = []
            for _spec, router, rec in diverted:
                try:
                    _put_back(run, router, rec)
                except DrainError as err:
                    rec.error = str(err)
                    failures.append(str(err))
            if not failures:
                _wait_lb_up(run, [(r, rec) for _s, r, rec in diverted if rec.restored])
            ph.detail = ", ".join(
                f"{rec.name}: ready"
                + (f", UP after {rec.up_after:.1f} s" if rec.up_after is not None else "")
                for _s, _r, rec in diverted
                if rec.restored
            )
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
            run.journal.note = policy.left_diverted_note(run.signalled, run.healthy)
            run.journal.save(s.state_dir)
        else:
            run.journal.remove(s.state_dir)


def _wait_lb_up(run: _Run, restored: list[tuple[Router, RouterRecord]]) -> None:
    """Wait (--lb-up-timeout) until each router that health-checks sees the server UP.

    READY is the operator's word; UP is the router's own checks passing, and
    only then does the server take its share again.  A fleet rollout must
    not move to the next host before that (the next would see one peer
    fewer).  Not UP in time is exit 6, with the router's last status.
    """
    limit = Deadline(run.settings.lb_up_timeout)
    started = time.monotonic()
    for router, rec in restored:
        while True:
            try:
                state = router.state()
            except RouterError:
                break  # unreadable now: the restore succeeded; nothing more to learn
            if state.lb_up is not False:
                if state.lb_up:
                    rec.up_after = time.monotonic() - started
                break
            if limit.expired():
                if run.settings.lb_up_timeout > 0 and run.outcome.error is None:
                    run.outcome.error = UnhealthyError(
                        f"{router.name} does not see this server UP "
                        f"{run.settings.lb_up_timeout:g} s after it was put back (status "
                        f"{state.status}): its health checks fail; it is in rotation but "
                        "takes no traffic. See the load balancer's check, then `wsgi-drain "
                        f"check --group {run.settings.group}`"
                    )
                break
            try:
                run.interrupts.sleep(min(LB_UP_POLL, max(limit.remaining(), 0.0)))
            except Interrupted as err:
                # Already restored: stop waiting, report the interruption.
                if run.outcome.error is None:
                    run.outcome.error = err
                return


def _put_back(run: _Run, router: Router, rec: RouterRecord) -> None:
    """Return a server this run diverted to rotation, unless someone else changed it since.

    Reads the state first: "drain" (ours) is put back; "ready" needs nothing
    (a divert whose answer was lost had not been applied); anything else was
    set by someone during the run and is left so.
    """
    try:
        admin: str | None = router.state().admin
    except RouterError:
        admin = None  # unreadable: try the restore; its own error says why
    if admin == "ready":
        rec.restored, rec.back_at = True, time.time()
        return
    if admin not in (None, "drain"):
        rec.error = f"found in {admin}, not the drain this run set: left so"
        _warn(run, f"{router.name} was set to {admin} by someone during the run: left so")
        return
    router.restore()
    rec.restored, rec.back_at = True, time.time()


def _paired(run: _Run) -> list[tuple[tuple[str, Router], RouterRecord]]:
    """Each router with its record (built together in _read_routers, so always as many)."""
    assert len(run.routers) == len(run.outcome.routers)
    return list(zip(run.routers, run.outcome.routers))


def _close(handles: list[Handle]) -> None:
    for handle in handles:
        handle.close()


def _warn(run: _Run, message: str) -> None:
    run.outcome.warnings.append(message)
    run.progress("warning", message)
