"""The health check's rules: one verdict for cron and monitoring (Nagios conventions).

Every rule adds a Finding; the verdict is the worst one (CRITICAL > WARNING >
UNKNOWN > OK).  The check never changes anything and never raises for a
problem it is meant to report: a missing Apache is CRITICAL, not a crash.

Monitoring agents (NRPE, Icinga) run as an unprivileged user.  Every rule
that user can evaluate is evaluated; what it cannot read (the state
directory, the error log, a router's admin socket, the daemons' sockets when
the group sets no display-name) is UNKNOWN, naming what and why, never a
CRITICAL it did not see.  An unusable request (the group is not configured,
bad settings) is UNKNOWN too, by the caller.
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from wsgi_drain import leftovers_record, newcode, procfacts, procfs
from wsgi_drain.apacheconf import DaemonGroup
from wsgi_drain.config import Settings
from wsgi_drain.discovery import ApacheInstance, GroupProcesses, find_group_apache, group_processes
from wsgi_drain.errorlog import LifecycleEvent, recent_events
from wsgi_drain.errors import (
    AmbiguousApacheError,
    DrainError,
    GroupNotFoundError,
    IdentityError,
    RouterError,
)
from wsgi_drain.maintenance import stop_note
from wsgi_drain.procfacts import ProcessInfo, process_info
from wsgi_drain.state import Journal, lock_holder
from wsgi_drain.status import NagiosStatus
from wsgi_drain.traps import RESTART_ONLY, find_traps
from wsgi_drain.traps import split as split_traps

if TYPE_CHECKING:
    from wsgi_drain.health import Probe

# How long a process count below `processes=` may last before it counts: the
# parent respawns a dead daemon within about a second.
RESPAWN_GRACE = 3.0
# Beyond drain window + shutdown-timeout, how late a process told to shut
# down may still be before it is called stuck.
STUCK_MARGIN = 5.0
_SHUTDOWN_KINDS = {"graceful", "completed", "timer_expired", "limit", "shutdown", "aborting"}
_FORCED_KINDS = {"timer_expired", "aborting"}
# How far back the stuck rule looks for "told to shut down" lines.
STUCK_LOOKBACK = 24 * 3600.0


@dataclass(frozen=True)
class Thresholds:
    health_warn: float = 1.0  # seconds
    rss_warn: int | None = None  # bytes per process
    age_warn: float | None = None  # seconds
    log_window: float = 600.0  # seconds of error log to read
    grace: float = RESPAWN_GRACE


@dataclass(frozen=True)
class Finding:
    level: NagiosStatus
    message: str


@dataclass
class CheckResult:
    group: str
    findings: list[Finding] = field(default_factory=list)
    processes: list[ProcessInfo] = field(default_factory=list)
    expected: int | None = None
    # Whether the group's processes were counted: when they could not be read
    # (UNKNOWN), no count is reported, not a false 0.
    processes_known: bool = False
    health: Probe | None = None
    health_timeout: float | None = None
    forced: int | None = None
    routers_drained: dict[str, bool] = field(default_factory=dict)
    # Per router name: its kind, endpoint (socket, file, program), backend, server.
    router_labels: dict[str, dict[str, str]] = field(default_factory=dict)
    journal: bool = False
    # Processes the group's replaced daemons left behind that still run (None: unread).
    leftovers: int | None = None
    ok_notes: list[str] = field(default_factory=list)

    @property
    def status(self) -> NagiosStatus:
        return max(
            (f.level for f in self.findings), key=lambda s: s.severity, default=NagiosStatus.OK
        )

    def add(self, level: NagiosStatus, message: str) -> None:
        self.findings.append(Finding(level, message))


def run_check(settings: Settings, thresholds: Thresholds) -> CheckResult:
    """Apply every rule to `settings.group` and return the findings."""
    result = CheckResult(settings.group)
    running = _journal_rule(result, settings)
    _leftovers_rule(result, settings)
    # `wsgi-drain stop` took the host out on purpose: said, not a bare CRITICAL.
    maintenance = stop_note(settings.state_dir, settings.group)
    try:
        instance = find_group_apache(settings)
    except GroupNotFoundError:
        raise
    except AmbiguousApacheError as err:
        # Apache runs; which instance is meant is not known: not seen, so not CRITICAL.
        result.add(NagiosStatus.UNKNOWN, str(err))
        _router_rule(result, settings, running)
        return result
    except DrainError as err:
        if maintenance is not None:
            result.add(NagiosStatus.WARNING, maintenance)
        else:
            result.add(NagiosStatus.CRITICAL, f"Apache is not running: {err}")
        _router_rule(result, settings, running or maintenance is not None)
        return result
    maintenance = stop_note(settings.state_dir, settings.group, apache_running=True)
    if maintenance is not None:
        result.add(NagiosStatus.WARNING, maintenance)
    group = instance.group(settings.group)  # unknown group: UNKNOWN, by the caller
    result.expected = group.processes
    procs = _processes_rule(result, instance, group, thresholds, running)
    log = _readable_log(result, instance.error_log_of(group))
    if log is not None:
        # One read of the log's tail serves both log rules.
        since = time.time() - max(STUCK_LOOKBACK, thresholds.log_window)
        events = recent_events(log, since)
        if procs is not None:
            _stuck_rule(result, instance, group, events)
        _log_rule(result, group, log, events, thresholds)
    if settings.health_url:
        _health_rule(result, settings, thresholds)
    _router_rule(result, settings, running or maintenance is not None)
    found = [
        t
        for t in find_traps(
            group, fds_readable=procfs.fds_readable(instance.pid), express=instance.express
        )
        if t.key not in RESTART_ONLY
    ]
    warned, acknowledged = split_traps(found, settings.ack_traps)
    for trap in warned:
        result.add(NagiosStatus.WARNING, trap.advice)
    if acknowledged:
        result.ok_notes.append("acknowledged: " + ", ".join(t.key for t in acknowledged))
    return result


def _readable_log(result: CheckResult, log: Path | None) -> Path | None:
    """The error log if the log rules can read it; otherwise say why they are off."""
    if log is None:
        result.ok_notes.append("error log is a pipe or syslog: stuck and forced-exit rules off")
        return None
    try:
        info = os.stat(log)
    except FileNotFoundError:
        return None  # nothing logged yet
    except OSError as err:
        result.add(NagiosStatus.UNKNOWN, _unreadable(f"the error log {log}", err))
        return None
    if not stat.S_ISREG(info.st_mode):
        result.ok_notes.append(f"error log {log} is not a file: stuck and forced-exit rules off")
        return None
    if not os.access(log, os.R_OK):
        result.add(NagiosStatus.UNKNOWN, _unreadable(f"the error log {log}", PermissionError()))
        return None
    return log


def _unreadable(what: str, err: OSError) -> str:
    reason = err.strerror or "permission denied"
    return (
        f"cannot read {what} as uid {os.geteuid()} ({reason}): the rules that need it were "
        "not evaluated; run the check as root (sudoers example in the README) or grant read access"
    )


def _journal_rule(result: CheckResult, settings: Settings) -> bool:
    """A journal with no run holding the lock is a run killed outright. Returns: run active."""
    if settings.state_dir.exists() and not os.access(settings.state_dir, os.R_OK | os.X_OK):
        result.add(
            NagiosStatus.UNKNOWN,
            _unreadable(f"the state directory {settings.state_dir}", PermissionError()),
        )
        return False
    running = lock_holder(settings.state_dir, settings.group) is not None
    _drain_journal_rule(result, settings, running)
    try:
        journal = Journal.load(settings.state_dir, settings.group)
    except DrainError as err:
        result.add(NagiosStatus.CRITICAL, str(err))
        return False
    if journal is None:
        return running
    if running:
        result.ok_notes.append(f"a restart is running (pid {journal.pid}, phase {journal.phase})")
        return True
    result.journal = True
    if journal.phase == newcode.NEW_CODE_PHASE:
        serving = newcode.still_serving(journal, lambda pid: not procfs.gone(pid))
        if serving:
            result.add(
                NagiosStatus.CRITICAL, newcode.new_code_words(journal, settings.group, serving)
            )
        else:
            result.ok_notes.append("the processes a failed restart left on new code are gone")
        return False
    what = (
        "left the backend diverted because the app was unhealthy"
        if journal.phase == "left-diverted"
        else f"was interrupted in phase {journal.phase!r}"
    ) + newcode.rollback_words(journal)
    result.add(
        NagiosStatus.CRITICAL,
        f"a restart{_of_groups(journal)} (pid {journal.pid}, {_ago(journal.started)} ago) {what}; "
        f"repair with: {newcode.fix_for(journal, settings.group)}",
    )
    return False


def _leftovers_rule(result: CheckResult, settings: Settings) -> None:
    """Processes left behind by the group's replaced daemons still run (the restarts' record)."""
    if settings.state_dir.exists() and not os.access(settings.state_dir, os.R_OK | os.X_OK):
        return  # the journal rule reports the unreadable state directory
    try:
        left = leftovers_record.still_left(settings.state_dir, settings.group)
    except DrainError as err:
        result.add(NagiosStatus.UNKNOWN, str(err))
        return
    result.leftovers = len(left)
    if left:
        result.add(NagiosStatus.WARNING, leftovers_record.warning(left, settings.group))


def _of_groups(journal: Journal) -> str:
    """The words naming a run over several groups (one undrain of any of them repairs the host)."""
    return f" of groups {', '.join(journal.groups)}" if len(journal.groups) > 1 else ""


def _drain_journal_rule(result: CheckResult, settings: Settings, running: bool) -> None:
    """A host taken out by hand (`wsgi-drain drain`) and not put back."""
    try:
        journal = Journal.load(settings.state_dir, settings.group, "drain")
    except DrainError as err:
        result.add(NagiosStatus.CRITICAL, str(err))
        return
    if journal is None or running or not journal.still_diverted:
        return
    result.journal = True
    result.add(
        NagiosStatus.WARNING,
        f"the backend was taken out by hand (`wsgi-drain drain`, {_ago(journal.started)} ago) "
        f"and is still out; put it back with: wsgi-drain undrain --group {settings.group}",
    )


def _processes_rule(
    result: CheckResult,
    instance: ApacheInstance,
    group: DaemonGroup,
    thresholds: Thresholds,
    running: bool,
) -> GroupProcesses | None:
    deadline = time.monotonic() + thresholds.grace
    while True:
        try:
            procs = group_processes(instance, group)
        except IdentityError as err:
            # Cannot prove which processes are the group's: not seen, so not CRITICAL.
            result.add(NagiosStatus.UNKNOWN, str(err))
            return None
        except DrainError as err:
            level = (
                NagiosStatus.CRITICAL if procfs.fds_readable(instance.pid) else NagiosStatus.UNKNOWN
            )
            result.add(level, str(err))
            return None
        # A process being respawned must not make the check flap: look again.
        if len(procs.processes) >= group.processes or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    result.processes = [info for p in procs.processes if (info := process_info(p.pid))]
    result.processes_known = True
    count = len(result.processes)
    if count == 0:
        result.add(NagiosStatus.CRITICAL, f"no process of group {group.name!r} is running")
    elif count < group.processes:
        level = NagiosStatus.OK if running else NagiosStatus.WARNING
        result.add(level, f"{count} of {group.processes} processes running")
    for info in result.processes:
        if info.state == "stopped":
            result.add(
                NagiosStatus.CRITICAL,
                f"pid {info.pid} is stopped (SIGSTOP): it serves no request; "
                f"resume it with kill -CONT {info.pid} or kill it",
            )
        if thresholds.rss_warn is not None and info.rss and info.rss > thresholds.rss_warn:
            result.add(
                NagiosStatus.WARNING,
                f"pid {info.pid} uses {info.rss / 2**20:.0f} MiB RSS "
                f"(> {thresholds.rss_warn / 2**20:.0f} MiB)",
            )
        if thresholds.age_warn is not None and info.age > thresholds.age_warn:
            result.add(
                NagiosStatus.WARNING,
                f"pid {info.pid} is {info.age:.0f} s old (> {thresholds.age_warn:.0f} s)",
            )
    return procs


def _stuck_rule(
    result: CheckResult,
    instance: ApacheInstance,
    group: DaemonGroup,
    events: list[tuple[float, LifecycleEvent]],
) -> None:
    """A process told to shut down that outlived its drain window + shutdown-timeout."""
    limit = group.drain_window + group.shutdown_window + STUCK_MARGIN
    told: dict[int, float] = {}
    exited: set[int] = set()
    for when, event in events:
        if event.group not in (None, group.name):
            continue
        if event.kind in _SHUTDOWN_KINDS:
            told.setdefault(event.pid, when)
        elif event.kind in ("exiting", "died", "terminated"):
            exited.add(event.pid)
    now = time.time()
    for pid, when in sorted(told.items()):
        if pid in exited or procfs.parent_of(pid) != instance.pid:
            continue
        if procfs.gone(pid):
            continue
        try:
            if procfacts.create_time(pid) >= when:
                continue  # a newer process reusing the pid the log named
        except OSError:  # gone since, or not ours to read
            continue
        late = now - when
        if late > limit:
            result.add(
                NagiosStatus.CRITICAL,
                f"pid {pid} was told to shut down {late:.0f} s ago and is still alive (limit "
                f"{limit:g} s): an app thread that never exits? inspect with "
                f"`py-spy dump --pid {pid}`",
            )


def _log_rule(
    result: CheckResult,
    group: DaemonGroup,
    log: Path,
    events: list[tuple[float, LifecycleEvent]],
    thresholds: Thresholds,
) -> None:
    since = time.time() - thresholds.log_window
    forced = {
        e.pid
        for when, e in events
        if when >= since and e.kind in _FORCED_KINDS and e.group in (None, group.name)
    }
    result.forced = len(forced)
    if forced:
        result.add(
            NagiosStatus.WARNING,
            f"{len(forced)} process(es) forced out by a timeout in the last "
            f"{thresholds.log_window:g} s (pids {' '.join(map(str, sorted(forced)))}); requests "
            f"may have been cut off: see {log}",
        )


def _health_rule(result: CheckResult, settings: Settings, thresholds: Thresholds) -> None:
    assert settings.health_url is not None
    from wsgi_drain.health import probe_for  # http.client: only with a health URL

    result.health = probe_for(settings)
    result.health_timeout = settings.health_timeout
    if not result.health.ok:
        # What happened first, the URL last: the first line keeps only the start.
        result.add(NagiosStatus.CRITICAL, f"health {result.health.said()} ({settings.health_url})")
    elif result.health.latency > thresholds.health_warn:
        result.add(
            NagiosStatus.WARNING,
            f"health slow: {result.health.latency * 1000:.0f} ms "
            f"(> {thresholds.health_warn * 1000:.0f} ms) ({settings.health_url})",
        )


def _router_rule(result: CheckResult, settings: Settings, running: bool) -> None:
    if not settings.haproxy and not settings.routers:
        return
    from wsgi_drain import routers as routers_mod  # a check with no router never loads them

    for spec in routers_mod.specs(settings.haproxy, settings.routers):
        try:
            router = routers_mod.from_spec(spec)
            state = router.state()
        except DrainError as err:
            denied = isinstance(err, RouterError) and isinstance(err.__cause__, PermissionError)
            if denied:
                result.add(NagiosStatus.UNKNOWN, _unreadable(f"router {spec}", PermissionError()))
            else:
                result.add(NagiosStatus.WARNING, f"router unreadable: {err}")
            continue
        drained = state.admin != "ready"
        result.routers_drained[router.name] = drained
        result.router_labels[router.name] = router_labels(router)
        if drained and not running:
            since = f" for {state.since:.0f} s" if state.since is not None else ""
            result.add(
                NagiosStatus.WARNING,
                f"{router.name} is left in {state.admin}{since} while no restart runs; put it "
                f"back with: wsgi-drain undrain --group {settings.group}",
            )


def router_labels(router: object) -> dict[str, str]:
    """A router as metric labels: kind, endpoint (where it is reached), backend, server.

    One free-text name would make a label nobody can select on; two HAProxy
    instances with the same backend/server differ by their endpoint.
    """
    name = str(getattr(router, "name", router))
    kind, _, rest = name.partition(" ")
    labels = {"kind": kind, "endpoint": rest, "backend": "", "server": ""}
    target = getattr(router, "target", None)
    if kind == "haproxy" and target is not None:
        labels.update(endpoint=target.socket, backend=target.backend, server=target.server)
    elif kind == "nginx" and target is not None:
        labels.update(endpoint=str(target.upstream_file), server=target.server)
    return labels


def _ago(started: float) -> str:
    seconds = max(0.0, time.time() - started)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
