"""`wsgi-drain stop`: stop the whole Apache for host maintenance, after its last request.

Apache's own `graceful-stop` lets MPM workers finish, but ends mod_wsgi's
daemons with SIGTERM and SIGKILL 3 s later (docs/apache.md), and nothing
says when they are done.  So: find the instance, lock every group, divert
the host and wait for every request in flight (router and host), record
every process of the instance (the parent and all it started, by pid and
start time), send the parent SIGWINCH (graceful-stop), and confirm each of
them gone.  The host is then left out of rotation on purpose: the journal
(kind "stop") says why, `check` says "stopped for maintenance", and once
Apache runs again `undrain --wait-ready` puts it back.  Failing before the
signal puts the routers back (nothing was stopped).
"""

from __future__ import annotations

import signal

import psutil

from wsgi_drain import procfs
from wsgi_drain.deadline import Deadline
from wsgi_drain.errors import NotReplacedError
from wsgi_drain.host.apachectl import signal_parent
from wsgi_drain.host.frame import HostCommand, run_host_command
from wsgi_drain.host.quiet import Host, wait_quiet
from wsgi_drain.host.records import HostOutcome
from wsgi_drain.host.settings import HostSettings
from wsgi_drain.maintenance import STOPPED
from wsgi_drain.outcome import Phase, Progress
from wsgi_drain.restart.policy import Verdict
from wsgi_drain.restart.records import Run
from wsgi_drain.restart.restore import begin_journal, settle
from wsgi_drain.state import HOST

# Without --timeout: how long the instance may take to be gone once told.
# Requests were awaited first; Apache's own allowance for daemons is 3 s.
STOP_TIMEOUT = 60.0
POLL = 0.05


def stop(hs: HostSettings, *, dry_run: bool = False, progress: Progress) -> HostOutcome:
    """Stop Apache gracefully for maintenance; never raises for a DrainError."""
    return run_host_command(STOP, hs, dry_run=dry_run, progress=progress)


def _finish(run: Run, host: Host, out: HostOutcome, verdict: Verdict, completed: bool) -> None:
    if verdict.signalled:
        _leave_out(run, host, out, completed)
    else:
        settle(run, host.targets[0], host.routing, verdict)


def _execute(run: Run, host: Host, out: HostOutcome, verdict: Verdict) -> None:
    """Divert, wait, graceful-stop, confirm every process gone (it returns once confirmed)."""
    journal = begin_journal(run, host.routing, kind="stop", name=HOST)
    wait_quiet(run, host, out)
    run.interrupts.check()
    instance = host.hs.instance
    processes = _instance_processes(instance.pid)
    out.processes = sorted(processes)
    with out.base.phase(Phase.STOP, run.progress) as ph:
        journal.phase = "stop"
        journal.signalled = [instance.pid]
        journal.save(run.settings.state_dir)
        verdict.signalled = True
        signal_parent(instance, signal.SIGWINCH)
        limit = host.hs.timeout or STOP_TIMEOUT
        deadline = Deadline(limit)
        alive = _alive(processes)
        while alive and not deadline.expired():
            run.interrupts.sleep(min(POLL, max(deadline.remaining(), 0.0)))
            alive = _alive(processes)
        out.still_running = sorted(alive)
        if alive:
            raise NotReplacedError(
                f"{len(alive)} process(es) of Apache pid {instance.pid} still running {limit:g} s "
                f"after the graceful stop: {' '.join(map(str, sorted(alive)))}; the host stays "
                "out of rotation. See Apache's error log; end them by hand if they must go"
            )
        ph.detail = (
            f"SIGWINCH to the Apache parent pid {instance.pid}; all {len(processes)} processes "
            "of the instance gone"
        )


def _instance_processes(parent: int) -> dict[int, float]:
    """The parent and every process it started (children of children too): pid -> start time."""
    found: dict[int, float] = {}
    todo = [parent]
    while todo:
        pid = todo.pop()
        try:
            found[pid] = psutil.Process(pid).create_time()
        except psutil.NoSuchProcess:
            continue
        todo += [child for child in procfs.children(pid) if child not in found]
    return found


def _alive(processes: dict[int, float]) -> set[int]:
    """Those of `processes` still running: same pid, same start (a reused pid is another's)."""
    alive = set()
    for pid, started in processes.items():
        if procfs.gone(pid):
            continue
        try:
            if psutil.Process(pid).create_time() != started:
                continue
        except psutil.NoSuchProcess:
            continue
        alive.add(pid)
    return alive


def _leave_out(run: Run, host: Host, out: HostOutcome, confirmed: bool) -> None:
    """Apache was told to stop: the host stays out, and the journal says why."""
    journal = host.routing.journal
    assert journal is not None
    diverted = [rec.name for rec in out.base.routers if rec.diverted]
    out.base.left_diverted = bool(diverted)
    journal.phase = STOPPED if confirmed else "stop"
    journal.note = (
        "Apache stopped for maintenance by `wsgi-drain stop`; once it runs again, "
        f"`wsgi-drain undrain --group {run.settings.group} --wait-ready 60` puts the host back"
    )
    journal.save(run.settings.state_dir)
    if diverted:
        run.progress("stop", "left out of rotation for maintenance: " + ", ".join(diverted))


def _plan(run: Run, host: Host, out: HostOutcome) -> None:
    """--dry-run: the plan after the divert (frame.py), nothing changed."""
    s, plan = run.settings, out.base.plan
    instance = host.hs.instance
    plan.append(f"wait up to {s.drain_timeout:g} s for the requests every group's daemons hold")
    count = len(_instance_processes(instance.pid))
    plan.append(
        f"send SIGWINCH (graceful-stop) to the Apache parent pid {instance.pid}; wait up to "
        f"{host.hs.timeout or STOP_TIMEOUT:g} s for all {count} processes of the instance to go"
    )
    plan.append(
        "leave the host out of rotation, the journal saying why; once Apache runs again: "
        f"wsgi-drain undrain --group {s.group} --wait-ready 60"
    )


# Said by the dry run for a host with no router.
_WITHOUT_ROUTER = (
    "no router: new requests keep arriving until Apache stops listening; "
    "wait for the requests the daemons hold now"
)
STOP = HostCommand("stop", "SIGWINCH", _WITHOUT_ROUTER, _plan, _execute, _finish)
