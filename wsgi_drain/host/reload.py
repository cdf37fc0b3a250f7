"""`wsgi-drain reload`: Apache's own graceful restart, for configuration changes, losing nothing.

`apachectl graceful` (SIGUSR1 to the parent) ends every daemon of every
group with SIGTERM and 3 s before SIGKILL, whatever they are serving
(docs/apache.md).  So: find the instance, lock every group, divert the host
and wait for its requests in flight (router and host), test the
configuration with the instance's own command line (a failure changes
nothing: the routers go back, exit 3 with Apache's own words), send the
parent SIGUSR1, wait for the new generation of every group (groups added or
removed by the change said in the report), verify each group on its own
health URL, warm the lazily loaded ones, restore.  The one failure policy
of the restart (restart/policy.py) decides the end: after the signal, the
routers go back only to a host whose every group is proven to serve.
"""

from __future__ import annotations

import signal

from wsgi_drain import procfs
from wsgi_drain.deadline import Deadline
from wsgi_drain.errors import ConfigTestError, NotReplacedError, UnhealthyError
from wsgi_drain.health import probe_for
from wsgi_drain.host.apachectl import configtest, configtest_argv, signal_parent
from wsgi_drain.host.frame import HostCommand, run_host_command
from wsgi_drain.host.generation import NewGeneration, look
from wsgi_drain.host.quiet import Host, wait_quiet
from wsgi_drain.host.records import HostOutcome, ParentSeen
from wsgi_drain.host.settings import HostSettings
from wsgi_drain.outcome import Phase, Progress
from wsgi_drain.restart.policy import Verdict
from wsgi_drain.restart.records import Run
from wsgi_drain.restart.restore import begin_journal, settle
from wsgi_drain.restart.verify import HEALTH_WAIT
from wsgi_drain.state import HOST
from wsgi_drain.warm import warm as warm_processes

# Without --timeout: how long the new generation may take to be complete.
# Apache ends the old daemons within 3 s; the new start at once, but a
# preloaded app imports before it counts as up.
GENERATION_TIMEOUT = 60.0
POLL = 0.1


def reload(hs: HostSettings, *, dry_run: bool = False, progress: Progress) -> HostOutcome:
    """Reload Apache gracefully; never raises for a DrainError (it is in the outcome)."""
    return run_host_command(RELOAD, hs, dry_run=dry_run, progress=progress)


def _finish(run: Run, host: Host, out: HostOutcome, verdict: Verdict, completed: bool) -> None:
    if verdict.signalled and verdict.healthy is None:
        verdict.healthy = False  # stopped before every group was proven
    settle(run, host.targets[0], host.routing, verdict)


def _execute(run: Run, host: Host, out: HostOutcome, verdict: Verdict) -> None:
    journal = begin_journal(run, host.routing, kind="reload", name=HOST)
    wait_quiet(run, host, out)
    run.interrupts.check()
    with out.base.phase(Phase.CONFIGTEST, run.progress) as ph:
        journal.phase = "configtest"
        journal.save(run.settings.state_dir)
        test = configtest(host.hs.instance)
        out.configtest = {"command": test.command, "ok": test.ok, "output": test.output}
        if not test.ok:
            raise ConfigTestError(test.command, test.output)
        ph.detail = f"{test.command}: {test.output or 'passed'}"
    run.interrupts.check()
    with out.base.phase(Phase.GRACEFUL, run.progress) as ph:
        journal.phase = "graceful"
        journal.signalled = [host.hs.instance.pid]
        journal.save(run.settings.state_dir)
        verdict.signalled = True
        signal_parent(host.hs.instance, signal.SIGUSR1)
        ph.detail = f"SIGUSR1 to the Apache parent pid {host.hs.instance.pid}"
    seen = _watch(run, host, out)
    journal.phase = "verify"
    journal.save(run.settings.state_dir)
    _verify(run, host, out, seen, verdict)


def _watch(run: Run, host: Host, out: HostOutcome) -> NewGeneration:
    """Wait for every group of the new generation and the old one gone; NotReplacedError if not."""
    instance = host.hs.instance
    seen = NewGeneration()
    limit = host.hs.timeout or GENERATION_TIMEOUT
    deadline = Deadline(limit)
    with out.base.phase(Phase.WATCH, run.progress) as ph:
        while not look(instance, host.old, seen):
            if procfs.gone(instance.pid):
                # A parent that cannot load the configuration exits: waiting is useless.
                raise NotReplacedError(
                    f"the Apache parent pid {instance.pid} exited during its graceful restart; "
                    "the host stays out of rotation. See Apache's error log, start Apache, then "
                    f"`wsgi-drain undrain --group {run.settings.group} --wait-ready 60`"
                )
            if deadline.expired():
                waiting = "; ".join(f"{k}: {v}" for k, v in seen.waiting.items())
                raise NotReplacedError(
                    f"the new generation is not complete {limit:g} s after the graceful restart "
                    f"({waiting}); the host stays out of rotation. See Apache's error log, then "
                    f"`wsgi-drain undrain --group {run.settings.group} --wait-ready 60`"
                )
            run.interrupts.sleep(POLL)
        assert seen.instance is not None
        numbers = {p.socket.generation for p in seen.groups.values() if p.socket is not None}
        out.after = ParentSeen(seen.instance.pid, tuple(sorted(numbers)))
        before = set(out.groups)
        for name, procs in seen.groups.items():
            rec = out.group(name)
            rec.change = "kept" if name in before else "added"
            rec.new_pids = list(procs.pids)
            rec.expected = procs.group.processes
        for rec in out.groups.values():
            if rec.name not in seen.groups:
                rec.change = "removed"
        changed = [f"{r.name} {r.change}" for r in out.groups.values() if r.change != "kept"]
        if changed:
            run.progress("watch", "groups changed by the new configuration: " + ", ".join(changed))
        ph.detail = f"generation {out.after.describe()}, parent pid {out.after.pid}: " + "; ".join(
            f"{n} [{' '.join(map(str, p.pids))}]" for n, p in sorted(seen.groups.items())
        )
    return seen


def _verify(run: Run, host: Host, out: HostOutcome, seen: NewGeneration, verdict: Verdict) -> None:
    """Each group on its own health URL (within HEALTH_WAIT); then warm the lazily loaded ones."""
    failed: list[str] = []
    with out.base.phase(Phase.VERIFY, run.progress) as ph:
        for name in seen.groups:
            gs = host.hs.groups.get(name)
            if gs is None or not gs.health_url:
                run.warn(f"group {name!r} has no health_url ([groups.{name}]): not verified")
                continue
            wait = Deadline(HEALTH_WAIT)
            result = probe_for(gs)
            while not result.ok and not wait.expired():
                run.interrupts.sleep(0.2)
                result = probe_for(gs)
            out.group(name).health = {
                "url": gs.health_url,
                "status": result.status,
                "ok": result.ok,
                "error": result.error,
            }
            if not result.ok:
                failed.append(f"{name}: {gs.health_url} {result.said()}")
        ph.detail = ", ".join(
            f"{name}: HTTP {r.health['status']}"
            for name, r in out.groups.items()
            if r.health is not None
        )
        if failed:
            verdict.healthy = False
            raise UnhealthyError(
                "after the reload, " + "; ".join(failed) + "; the host stays out of rotation. "
                f"Fix it, then `wsgi-drain undrain --group {run.settings.group} --wait-ready 60`"
            )
    verdict.healthy = True
    _warm(run, host, out, seen)


def _warm(run: Run, host: Host, out: HostOutcome, seen: NewGeneration) -> None:
    lazy = [
        (name, procs)
        for name, procs in seen.groups.items()
        if not procs.group.preloaded
        and procs.socket is not None
        and (gs := host.hs.groups.get(name)) is not None
        and gs.health_url
    ]
    if not lazy:
        return
    with out.base.phase(Phase.WARM, run.progress) as ph:
        said = []
        for name, procs in lazy:
            assert procs.socket is not None
            result = warm_processes(
                host.hs.groups[name],
                list(procs.pids),
                procs.socket.path,
                procs.group.threads,
                HEALTH_WAIT,
                run.interrupts,
            )
            out.group(name).warm = result.as_dict()
            said.append(f"{name}: {result.describe()}")
        ph.detail = "; ".join(said)


def _plan(run: Run, host: Host, out: HostOutcome) -> None:
    """--dry-run: the plan after the divert (frame.py), nothing changed."""
    s, plan = run.settings, out.base.plan
    instance = host.hs.instance
    plan.append(
        f"wait up to {s.drain_timeout:g} s for the requests every group's daemons hold "
        f"({', '.join(out.groups)})"
    )
    argv = procfs.cmdline(instance.pid)
    plan.append(
        f"test the configuration: {' '.join([instance.exe or argv[0], *configtest_argv(argv)])}; "
        "if it fails, put the routers back and exit 3 with Apache's words"
    )
    plan.append(f"send SIGUSR1 (graceful restart) to the Apache parent pid {instance.pid}")
    plan.append(
        f"wait up to {host.hs.timeout or GENERATION_TIMEOUT:g} s for every group of the new "
        "generation (and every old daemon gone)"
    )
    lazy = {g.name for g in instance.config.groups if not g.preloaded}
    for name, gs in host.hs.groups.items():
        if gs.health_url:
            warm = "; warm its new processes (it loads lazily)" if name in lazy else ""
            plan.append(f"probe group {name} at {gs.health_url}{warm}")
        else:
            plan.append(f"group {name}: no health_url, not verified")
    put_back = [rec.name for rec in out.base.routers if rec.ours]
    if put_back:
        plan.append("restore " + ", ".join(put_back))


# Said by the dry run for a host with no router.
_WITHOUT_ROUTER = (
    "no router: requests in flight get only Apache's own shutdown allowance "
    "(SIGTERM, SIGKILL 3 s later); wait for the requests the daemons hold now"
)
RELOAD = HostCommand("reload", "SIGUSR1", _WITHOUT_ROUTER, _plan, _execute, _finish)
