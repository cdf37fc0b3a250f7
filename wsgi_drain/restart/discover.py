"""Discover: the Apache instance, the group and its processes, the routers, the mode.

Pre-flight refuses with a clear reason when the group is unknown or its
processes cannot be identified, and warns about traps.  What it finds is the
run's Target and Routing; nothing is changed yet.
"""

from __future__ import annotations

from wsgi_drain import peers, procfs
from wsgi_drain import routers as routers_mod
from wsgi_drain.discovery import find_group_apache, group_processes
from wsgi_drain.errors import NotFoundError, RouterError
from wsgi_drain.outcome import Phase, RouterRecord
from wsgi_drain.procfs import fds_readable
from wsgi_drain.restart.divert import too_few_peers
from wsgi_drain.restart.records import Routing, Run, Target
from wsgi_drain.signals import check_support
from wsgi_drain.state import Journal, lock_holder, refuse_if_locked
from wsgi_drain.traps import find_traps
from wsgi_drain.traps import split as split_traps


def discover(run: Run) -> tuple[Target, Routing]:
    """Find and prove the group, read each router's state, choose the mode (may change it)."""
    s, out = run.settings, run.outcome
    with out.phase(Phase.DISCOVER, run.progress) as ph:
        check_support()
        instance = find_group_apache(s)
        group = instance.group(s.group)
        # Traps first: on express, script reloading may have restarted every daemon already.
        found = find_traps(group, fds_readable=fds_readable(instance.pid), express=instance.express)
        for trap in split_traps(found, s.ack_traps)[0]:
            run.warn(trap.advice)
        procs = group_processes(instance, group)
        if not procs.processes:
            raise NotFoundError(
                f"group {group.name!r} has no live processes under {instance.describe()}"
            )
        target = Target(instance, procs, expected=group.processes, parent_pid=instance.pid)
        out.apache_pid, out.apache_config = instance.pid, str(instance.config_path)
        identity = procs.identity
        if identity is not None:
            for warning in identity.warnings:
                run.warn(warning)
            if not identity.config_current and len(procs.processes) != group.processes:
                target.expected = len(procs.processes)
                # An express user sets --processes, not a directive in a generated file.
                on_disk = (
                    f"setup-server's --processes {group.processes} in the generated files"
                    if instance.express is not None
                    else f"the processes={group.processes} on disk"
                )
                run.warn(
                    f"expecting {target.expected} replacement(s), as many processes as run now: "
                    f"{on_disk} is not proven to be what runs"
                )
        out.processes_expected = target.expected
        if len(procs.processes) < target.expected:
            run.warn(
                f"only {len(procs.processes)} of {target.expected} processes are up before "
                "the restart (one may be respawning)"
            )
        if s.health_url and s.health_insecure:
            run.warn(f"{s.health_url}: the certificate is not verified (--health-insecure)")
        if not s.health_url:
            run.warn(
                "no --health-url: the app's answer after the restart is not verified; the "
                "routers are put back once every process is replaced"
            )
        routing = _read_routers(run)
        _measure_in_flight(target, routing)
        _choose_mode(run)
        proof = f"{identity.proof}" if identity is not None else f"by {procs.method}"
        ph.detail = (
            f"{instance.describe()}: group {group.name!r} ({proof}), "
            f"{len(procs.processes)}/{target.expected} processes "
            f"[{' '.join(map(str, procs.pids))}]; "
            f"drain window {group.drain_window:g} s + shutdown {group.shutdown_window:g} s"
        )
    return target, routing


def _read_routers(run: Run) -> Routing:
    """Each router's state before the run; a left-behind journal of ours is taken over.

    A server that is not READY was taken out by someone (an operator's MAINT,
    a drain for other work): this run neither diverts nor restores it.  The
    exception is a server a previous wsgi-drain run diverted and left (its
    journal says so, and that run is gone): this run takes it over and puts
    it back when the app is healthy.
    """
    s, out = run.settings, run.outcome
    routing = Routing(
        routers=tuple(
            (spec, routers_mod.from_spec(spec, s.group, s.lb_detect, s.state_dir))
            for spec in routers_mod.specs(s.haproxy, s.routers)
        ),
        records=out.routers,
    )
    if not out.dry_run:  # a server the running run diverted is not an operator's
        refuse_if_locked(s.state_dir, s.group, [spec for spec, _router in routing.routers])
    previous = Journal.load(s.state_dir, s.group)
    if previous is not None and lock_holder(s.state_dir, s.group) is None:
        routing.previous = previous
    left = set(routing.previous.still_diverted) if routing.previous is not None else set()
    for spec, router in routing.routers:
        check_admin = getattr(router, "check_admin", None)
        if check_admin is not None:
            check_admin()
        state = router.state()
        rec = RouterRecord(name=router.name, before=state.admin, state=state)
        out.routers.append(rec)
        if state.admin != "ready" and spec in left:
            assert routing.previous is not None
            rec.adopted = True
            run.warn(
                f"{router.name} was left in {state.admin} by an earlier run (pid "
                f"{routing.previous.pid}, phase {routing.previous.phase}); this run takes it "
                "over and puts it back when the app is healthy"
            )
        elif state.admin != "ready":
            run.warn(
                f"{router.name} is in {state.admin} before the restart, and not by "
                "wsgi-drain: it is left exactly so (not diverted, not put back)"
            )
    return routing


def _measure_in_flight(target: Target, routing: Routing) -> None:
    """Give routers that measure in-flight requests on the host (health-file) the means.

    Each request between Apache and the daemons is one accepted connection on
    the group's socket (docs/mod_wsgi.md).
    """
    sock = target.procs.socket
    for _spec, router in routing.routers:
        if hasattr(router, "in_flight") and sock is not None:
            path = str(sock.path)
            router.in_flight = lambda path=path: procfs.unix_connections(path)


def _choose_mode(run: Run) -> None:
    """Drain mode needs a router with enough peers; otherwise restart in place.

    Draining the only UP server of a backend makes HAProxy answer 503 to every
    request until it is back (measured: ~400 failures), so it is never done.
    A server already out of rotation needs no divert and no peers.
    """
    out = run.outcome
    if out.mode != "drain":
        return
    if not out.routers:
        out.mode = "rolling"
        run.warn("no router given (--router/--haproxy): restarting in place, one process at a time")
        return
    s = run.settings
    for rec in out.routers:
        if rec.before != "ready":
            continue
        if rec.peers_up is None and s.min_peers not in (0, peers.ALL):
            run.warn(
                f"{rec.name} cannot tell how many other servers are UP: "
                f"{peers.describe(s.min_peers)} is taken on trust for it"
            )
        elif rec.state is not None and peers.short(rec.state, s.min_peers):
            if s.peer_wait > 0 and not out.dry_run:
                continue  # waited for in divert, under the group's lock
            if s.few_peers == "refuse":
                raise RouterError(rec.name, too_few_peers(run, rec.state))
            out.mode = "rolling"
            run.warn(
                f"{rec.name}: {peers.shortfall(rec.state, s.min_peers, 0)}: draining it would "
                "fail every request, so restarting in place, one process at a time, without "
                "diverting"
            )
            return


# For the host's runs (wsgi_drain/host/): the routers read as a restart reads them.
read_routers = _read_routers
