"""Verify and warm: the replacements are up and live, the app answers, and loads before traffic.

The health URL is probed directly on Apache, not through the router (the
backend is still out of rotation).  A lazily loaded app imports on its first
request, so drain mode warms each replacement before traffic returns.
"""

from __future__ import annotations

from wsgi_drain.deadline import Deadline
from wsgi_drain.discovery import GroupProcesses
from wsgi_drain.errors import NotReplacedError, UnhealthyError
from wsgi_drain.health import Probe, probe_for
from wsgi_drain.outcome import Phase
from wsgi_drain.restart.apache_restarted import reader
from wsgi_drain.restart.crashloop import SETTLE, check_crash_loop, new_pids, watching_reader
from wsgi_drain.restart.policy import Verdict, stays_out
from wsgi_drain.restart.records import Run, Target, Watched
from wsgi_drain.restart.timing import RESPAWN_MARGIN
from wsgi_drain.restart.watch import on_new
from wsgi_drain.warm import warm as warm_processes
from wsgi_drain.watch import died_within, wait_replacements

# After the replacements are up, how long the app may take to answer its first
# health probe (a lazily loaded app imports on its first request).
HEALTH_WAIT = 15.0


def verify(run: Run, target: Target, watched: Watched, verdict: Verdict) -> None:
    """Every old process replaced, the group complete and alive, the app answering; else raise."""
    out, s = run.outcome, run.settings
    group = target.procs.group
    with out.phase(Phase.VERIFY, run.progress) as ph:
        current = _settled_group(run, target, watched, verdict)
        old = {p.pid for p in target.procs.processes}
        survivors = sorted(set(current.pids) & old)
        if survivors or len(current.pids) < target.expected:
            verdict.healthy = False
            raise NotReplacedError(
                f"group {group.name!r} has {len(current.pids)} of {target.expected} processes "
                f"after the restart ({len(survivors)} old); see Apache's error log"
                + (f" {group.error_log}" if group.error_log else "")
            )
        if not s.health_url:
            verdict.healthy = True
            ph.detail = f"{len(current.pids)}/{target.expected} processes up; no health URL"
            return
        result = probe_until_ok(run, target, watched, verdict, HEALTH_WAIT)
        out.health = {
            "url": result.url,
            "ok": result.ok,
            "status": result.status,
            "latency": round(result.latency, 4),
            "error": result.error,
        }
        verdict.healthy = result.ok
        if not result.ok:
            raise UnhealthyError(
                f"{s.health_url} {result.said()} after the restart"
                + stays_out(out.routers, s.group)
            )
        ph.detail = f"{len(current.pids)}/{target.expected} processes up; {result.describe()}"


def _settled_group(run: Run, target: Target, watched: Watched, verdict: Verdict) -> GroupProcesses:
    """The group once every new member has lived SETTLE seconds; a crash loop raises.

    Code that kills the interpreter as it loads (a preloaded app) lets the
    replacements appear and die again within milliseconds, so "N/N up" at
    one instant proves nothing.  A member that dies is waited for (its
    respawn) and its successor watched the same way, until the deaths make a
    crash loop or every member lives.
    """
    read = watching_reader(run, target, watched, verdict)
    old = target.old_pids
    limit = Deadline(RESPAWN_MARGIN)
    current = read()
    while True:
        died = died_within(set(current.pids) - old, SETTLE, run.interrupts)
        watched.vanished |= died
        check_crash_loop(run, target, watched, verdict)
        if not died and len(current.pids) >= target.expected:
            return current
        if limit.expired():
            return current
        current = wait_replacements(
            read, died, old | set(current.pids), target.expected, limit, run.interrupts, on_new(run)
        )


def probe_until_ok(
    run: Run, target: Target, watched: Watched, verdict: Verdict, wait: float
) -> Probe:
    """Probe the health URL until it answers 2xx or `wait` runs out (the app may be importing).

    Stops early, and says why, when the log shows the new code cannot load
    (an exception at import: retrying cannot help) or the replacements
    crash-loop.
    """
    s = run.settings
    assert s.health_url is not None
    result = probe_for(s)
    health_deadline = Deadline(wait)
    check = watching_reader(run, target, watched, verdict)
    while not result.ok:
        check()
        log = watched.log
        failure = log.load_failure(new_pids(run, target, watched)) if log is not None else None
        if failure is not None:
            verdict.healthy = False
            raise UnhealthyError(
                f"the new code fails to load: {failure} ({s.health_url} "
                f"{result.said()})" + stays_out(run.outcome.routers, s.group)
            )
        if health_deadline.expired():
            break
        run.interrupts.sleep(0.2)
        result = probe_for(s, min(s.health_timeout, health_deadline.remaining() + 0.1))
    return result


def warm(run: Run, target: Target) -> None:
    """Drain mode, lazily loaded app: every replacement loads it before traffic returns."""
    out, s = run.outcome, run.settings
    group = target.procs.group
    if out.mode != "drain" or group.preloaded:
        return
    if not s.health_url:
        run.warn(
            "the app loads lazily and no --health-url was given to warm the new processes "
            "with: the first user request on each waits for the import"
        )
        return
    current = reader(run, target)()
    new = [pid for pid in current.pids if pid not in target.old_pids]
    if current.socket is None or not new:
        return
    with out.phase(Phase.WARM, run.progress) as ph:
        result = warm_processes(
            s, new, current.socket.path, group.threads, HEALTH_WAIT, run.interrupts
        )
        out.warm = result.as_dict()
        ph.detail = result.describe()
    if result.missed and not result.blind:
        run.warn(f"warm: {result.describe()}; their first user request may wait for the import")
