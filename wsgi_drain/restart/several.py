"""Several groups of one host in one run (`restart --group A --group B`, `--all-groups`).

The same phases as sequence.py, driven over several Targets that share one
Routing: every group discovered and proven first; one lock per group plus
the routers'; one divert for the host and one wait for its requests in
flight (the routers', then each group's own on the host); every group's
processes signalled together, then watched, each against its own deadline
taken before the first signal (absolute, so watching one group after the
other costs none of them time); each group verified on its own health URL;
one restore.  Rolling mode restarts the groups one after another, each one
process at a time, and stops at the first group that fails.

The failure policy (policy.py) is applied once, for the host: any group
that fails decides it, so the host goes back into rotation only when every
group that was signalled is proven healthy.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from wsgi_drain import procfs
from wsgi_drain.applog import RunLog
from wsgi_drain.config import Settings
from wsgi_drain.deadline import Deadline
from wsgi_drain.discovery import find_apache
from wsgi_drain.errors import ConfigError, DrainError, Interrupted, RouterError
from wsgi_drain.groups_outcome import GroupsOutcome
from wsgi_drain.interrupts import Interrupts
from wsgi_drain.outcome import Outcome, Progress
from wsgi_drain.restart.discover import discover
from wsgi_drain.restart.divert import divert, wait_host_requests
from wsgi_drain.restart.endings import app_words, endings_from_log, error_log_tail, hang_notes
from wsgi_drain.restart.plan_groups import plan_groups
from wsgi_drain.restart.policy import Verdict, host_verdict, restores
from wsgi_drain.restart.records import Job, Routing, Run, Target, Watched
from wsgi_drain.restart.restore import begin_journal, healthy_now, settle
from wsgi_drain.restart.rolling import rolling
from wsgi_drain.restart.signalling import signal_all
from wsgi_drain.restart.timing import watch_deadline
from wsgi_drain.restart.verify import verify, warm
from wsgi_drain.restart.watch import force_stuck, stuck_error, watch_all
from wsgi_drain.signals import Handle, parse_signal
from wsgi_drain.state import group_lock, router_lock


@dataclass
class Part:
    """One group of the run: its own Run (settings, report), what was found, what it learnt."""

    run: Run
    sig: signal.Signals
    target: Target | None = None
    routing: Routing | None = None
    watched: Watched = field(default_factory=Watched)
    verdict: Verdict = field(default_factory=Verdict)
    deadline: Deadline | None = None
    handles: list[Handle] = field(default_factory=list)

    @property
    def group(self) -> str:
        return self.run.settings.group

    @property
    def found(self) -> Target:
        assert self.target is not None
        return self.target

    def job(self, routing: Routing, force: bool) -> Job:
        """This group's job on the run's one Routing (the host's, shared by every group)."""
        return Job(self.run, self.found, routing, self.watched, self.verdict, self.sig, force)


def instance_groups(pidfile: Path | None, config_path: Path | None) -> list[str]:
    """`--all-groups`: every WSGIDaemonProcess group of the Apache instance, in its order."""
    instance = find_apache(pidfile=pidfile, config_path=config_path)
    return [g.name for g in instance.config.groups]


def restart_groups(
    each: Sequence[Settings],
    *,
    dry_run: bool = False,
    force: bool = False,
    progress: Progress,
    py_spy: Path | None = None,
) -> GroupsOutcome:
    """Restart every group of `each` (config.one_host's settings) as one run; never raises.

    The returned GroupsOutcome carries each group's error and the host's;
    routers have been restored or deliberately left diverted by then.
    """
    host_settings = each[0]
    mode = "drain" if all(s.mode == "drain" for s in each) else "rolling"
    host = Outcome(
        group=", ".join(s.group for s in each),
        mode=mode,
        requested_mode=mode,
        signal=parse_signal(host_settings.signal).name,
        dry_run=dry_run,
    )
    result = GroupsOutcome(host)
    with Interrupts() as interrupts:
        host_run = Run(host_settings, progress, interrupts, host, py_spy)
        parts = [_part(s, mode, dry_run, progress, interrupts, py_spy) for s in each]
        result.groups = [p.run.outcome for p in parts]
        if mode == "rolling" and any(s.mode == "drain" for s in each):
            host_run.warn(
                "a group's mode is rolling: every group of the run is restarted in place, one "
                "after the other"
            )
        try:
            routing = _discover(host_run, parts)
            if routing is None:
                pass  # a group's own error says why
            elif dry_run:
                plan_groups(host_run, [(p.run, p.found, p.sig) for p in parts], routing)
            else:
                with _locked(host_run, parts, routing):
                    try:
                        _execute(host_run, parts, routing, force)
                    finally:
                        _settle(host_run, parts, routing)
        except DrainError as err:
            host.error = err
            if isinstance(err, Interrupted):
                _interrupted(parts, err)
        except Exception as err:  # a bug: still reported, routers still settled above
            host.unexpected = err
        for part in parts:
            if part.verdict.signalled and part.target is not None and part.run.outcome.error:
                endings_from_log(part.run, part.target, part.watched)
                app_words(part.run, part.target, part.watched)
    now = time.monotonic()
    for out in (host, *result.groups):
        out.duration = now - out.started
    return result


def _interrupted(parts: list[Part], err: Interrupted) -> None:
    """A group signalled but not yet verified when the run was interrupted: its section says so."""
    for part in parts:
        out = part.run.outcome
        verified = any(ph.name == "verify" and ph.status == "ok" for ph in out.phases)
        if part.verdict.signalled and not verified and out.error is None:
            out.error = err


def _part(
    s: Settings,
    mode: str,
    dry_run: bool,
    progress: Progress,
    interrupts: Interrupts,
    py_spy: Path | None,
) -> Part:
    sig = parse_signal(s.signal)
    out = Outcome(group=s.group, mode=mode, requested_mode=s.mode, signal=sig.name, dry_run=dry_run)

    def said(phase: str, message: str) -> None:
        progress(phase, f"{s.group}: {message}")

    return Part(Run(s, said, interrupts, out, py_spy), sig)


def _discover(host_run: Run, parts: list[Part]) -> Routing | None:
    """Find and prove every group; one Routing (None: a group cannot be, nothing changed).

    Each group's discovery reads the same routers (config.one_host gave each
    all of them); the first group's are the run's, and a router an earlier
    run of ours left out, as any group's journal says, is taken over.
    """
    for part in parts:
        try:
            part.target, part.routing = discover(part.run)
        except Interrupted:
            raise
        except DrainError as err:
            # Its own error decides the run's status (exit 3 for a group not found).
            part.run.outcome.error = err
            # The routers read so far are the host's (said once, untouched).
            found = [q.routing.records for q in parts if q.routing is not None]
            host_run.outcome.routers = found[0] if found else []
            for q in parts:
                q.run.outcome.routers = []
            host_run.progress(
                "discover", f"stopped: group {part.group!r} cannot be restarted; nothing changed"
            )
            return None
        host_run.interrupts.check()
    pids = {p.found.parent_pid for p in parts}
    if len(pids) > 1:
        where = ", ".join(f"{p.group}: Apache pid {p.found.parent_pid}" for p in parts)
        raise ConfigError(
            f"the groups are not of one Apache instance ({where}): one run restarts the "
            "groups of one instance; run one restart per instance"
        )
    first = parts[0].routing
    assert first is not None
    host_run.outcome.routers = first.records
    for part in parts:
        routing = part.routing
        assert routing is not None
        part.run.outcome.routers = []
        if routing is first:
            continue
        for rec, other in zip(first.records, routing.records):
            rec.adopted = rec.adopted or other.adopted
        if first.previous is None:
            first.previous = routing.previous
    # The mode: drain only if every group's discovery kept it (the routers
    # and peers are the same for all; a group's own table may say rolling).
    modes = {p.run.outcome.mode for p in parts}
    mode = "drain" if modes == {"drain"} and host_run.outcome.mode == "drain" else "rolling"
    _set_mode(host_run, parts, mode)
    _count_host_requests(parts, first)
    return first


def _set_mode(host_run: Run, parts: list[Part], mode: str) -> None:
    host_run.outcome.mode = mode
    for part in parts:
        part.run.outcome.mode = mode


def _count_host_requests(parts: list[Part], routing: Routing) -> None:
    """A router that counts requests on the host (health-file) counts every group's."""
    paths = [str(p.found.procs.socket.path) for p in parts if p.found.procs.socket is not None]

    def in_flight() -> int | None:
        counts = [procfs.unix_connections(path) for path in paths]
        return None if any(c is None for c in counts) else sum(c or 0 for c in counts)

    for _spec, router in routing.routers:
        if hasattr(router, "in_flight") and paths:
            router.in_flight = in_flight


@contextlib.contextmanager
def _locked(host_run: Run, parts: list[Part], routing: Routing) -> Iterator[None]:
    """Every group's lock and every router's (a second caller on any of them: exit 7)."""
    s = host_run.settings
    with contextlib.ExitStack() as locks:
        for part in parts:
            locks.enter_context(group_lock(s.state_dir, part.group))
        for spec, _router in routing.routers:
            locks.enter_context(router_lock(s.state_dir, spec, host_run.outcome.group))
        yield


def _execute(host_run: Run, parts: list[Part], routing: Routing, force: bool) -> None:
    """Divert once, then each group's phases; a failure is the group's, an interrupt stops all."""
    journal = begin_journal(host_run, routing)
    journal.groups = [p.group for p in parts]
    journal.save(host_run.settings.state_dir)
    for part in parts:
        part.watched.log = RunLog(error_log_tail(part.run, part.found), part.group)
    if host_run.outcome.mode == "drain":
        budget = Deadline(host_run.settings.drain_timeout)
        if divert(host_run, parts[0].found, routing):
            _wait_other_groups(host_run, parts, routing, budget)
        else:
            _set_mode(host_run, parts, "rolling")  # the peers could not carry this host
    if host_run.outcome.mode == "drain":
        _drain_mode(host_run, parts, routing, force)
    else:
        _rolling_mode(parts, routing, force)


def _wait_other_groups(
    host_run: Run, parts: list[Part], routing: Routing, budget: Deadline
) -> None:
    """The requests that reached the other groups directly, then the routers checked again.

    divert() waited for the first group's; each other group's are waited for
    within what is left of the drain timeout.  A router found back in
    rotation meanwhile stops the run before any signal (as divert's check).
    """
    host = host_run.outcome
    first = host.host_in_flight_at_signal
    parts[0].run.outcome.host_in_flight_at_signal = first
    for part in parts[1:]:
        wait_host_requests(part.run, part.found, budget)
    counts = [p.run.outcome.host_in_flight_at_signal for p in parts]
    known = [c for c in counts if c is not None]
    host.host_in_flight_at_signal = sum(known) if known else None
    for _spec, router in routing.routers:
        if router.state().admin == "ready":
            raise RouterError(
                router.name,
                "the server is back in rotation (was HAProxy reloaded, or the state changed "
                "by hand?); nothing was signalled",
            )


def _drain_mode(host_run: Run, parts: list[Part], routing: Routing, force: bool) -> None:
    """Every group's deadline, then every group signalled, then each watched and verified."""
    journal = routing.journal
    assert journal is not None
    for part in parts:
        out, procs, s = part.run.outcome, part.found.procs, part.run.settings
        out.deadline = watch_deadline(procs.group, out.mode, s.timeout, len(procs.processes))
        part.deadline = Deadline(out.deadline)
    signalled: list[int] = []
    for part in parts:
        part.handles = signal_all(part.job(routing, force))
        # signal_all journals its own group's pids: the journal names every group's.
        signalled += [h.pid for h in part.handles]
        journal.signalled = list(signalled)
        journal.save(host_run.settings.state_dir)
    for part in parts:
        _own_failure(part, functools.partial(_watch, part, routing, force))
    for part in parts:
        if part.run.outcome.error is None:
            _own_failure(part, functools.partial(_verify, part))


def _watch(part: Part, routing: Routing, force: bool) -> None:
    assert part.deadline is not None
    job = part.job(routing, force)
    run, target = job.run, job.target
    began = time.monotonic()
    stuck = watch_all(job, part.handles, part.deadline)
    # watch_all times exits from when it starts watching; this group was
    # signalled earlier (with the others): count from its own signal.  A
    # process gone before its group's turn is timed when it was seen gone
    # (an upper bound), never earlier than it really left.
    if part.watched.signalled_at is not None:
        late = began - part.watched.signalled_at
        for rec in run.outcome.processes:
            if rec.exited_after is not None:
                rec.exited_after += late
    stuck = force_stuck(job, stuck)
    endings_from_log(run, target, part.watched)
    hang_notes(run)
    if stuck:
        raise stuck_error(run, stuck)


def _verify(part: Part) -> None:
    verify(part.run, part.found, part.watched, part.verdict)
    warm(part.run, part.found)


def _rolling_mode(parts: list[Part], routing: Routing, force: bool) -> None:
    """One group after the other, each one process at a time; stop at the first that fails."""
    for part in parts:
        if not _own_failure(part, functools.partial(_rolling_one, part, routing, force)):
            later = [p.group for p in parts[parts.index(part) + 1 :]]
            if later:
                part.run.warn(
                    f"the run stopped at group {part.group!r}: {', '.join(later)} not restarted "
                    "(their old code serves on)"
                )
            return


def _rolling_one(part: Part, routing: Routing, force: bool) -> None:
    job = part.job(routing, force)
    run, target = job.run, job.target
    out, procs, s = run.outcome, target.procs, run.settings
    out.deadline = watch_deadline(procs.group, out.mode, s.timeout, len(procs.processes))
    deadline = Deadline(out.deadline)
    stuck = rolling(job, deadline)
    endings_from_log(run, target, part.watched)
    hang_notes(run)
    if stuck:
        raise stuck_error(run, stuck)
    _verify(part)


def _own_failure(part: Part, step: Callable[[], None]) -> bool:
    """Run `step`; a DrainError is the group's own (its report), except an interrupt: it stops all.

    Returns whether the step succeeded.
    """
    try:
        step()
    except Interrupted:
        raise
    except DrainError as err:
        part.run.outcome.error = err
        return False
    return True


def _settle(host_run: Run, parts: list[Part], routing: Routing) -> None:
    """The one failure policy, for the host: back in rotation only if every group may go back."""
    for part in parts:
        v = part.verdict
        if v.signalled and v.healthy is None and part.target is not None:
            # Stopped between its signal and its verdict: proven now, or not.
            v.healthy = healthy_now(part.run, part.target)
    settle(host_run, parts[0].found, routing, host_verdict(p.verdict for p in parts))
    out = host_run.outcome
    unproven = [p.group for p in parts if not restores(p.verdict.signalled, p.verdict.healthy)]
    if out.left_diverted and unproven and routing.journal is not None:
        routing.journal.note = (
            f"group(s) {', '.join(unproven)} not proven healthy after the restart"
        )
        routing.journal.save(host_run.settings.state_dir)
    if out.left_diverted and unproven:
        host_run.warn(
            f"the host stays out of rotation: group(s) {', '.join(unproven)} not proven "
            "healthy (any group that fails keeps the whole host out)"
        )
