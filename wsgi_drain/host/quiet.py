"""What `reload` and `stop` share before Apache is signalled: find, lock, divert, wait.

Every step is the restart's own (restart/discover.py's routers, divert.py's
divert with its peers, restore.py's journal); what is the host's is that
the requests awaited are every group's, and that the locks are every
group's: no restart of one of them may run while the parent is signalled.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from wsgi_drain.deadline import Deadline
from wsgi_drain.discovery import DaemonProcess, GroupProcesses
from wsgi_drain.errors import NotFoundError, RouterError
from wsgi_drain.host.generation import Generation, current
from wsgi_drain.host.records import HostOutcome, ParentSeen
from wsgi_drain.host.settings import HostSettings
from wsgi_drain.outcome import Phase
from wsgi_drain.restart.discover import read_routers
from wsgi_drain.restart.divert import divert, wait_host_requests
from wsgi_drain.restart.records import Routing, Run, Target
from wsgi_drain.signals import check_support
from wsgi_drain.state import HOST, Journal, group_lock, lock_holder, router_lock


@dataclass
class Host:
    """The instance as discovered: its running generation, one Target per group socket."""

    hs: HostSettings
    old: Generation
    # One per group socket (for the requests in flight on it); the first goes to divert.
    targets: list[Target]
    routing: Routing


def discover_host(run: Run, hs: HostSettings, out: HostOutcome) -> Host:
    """Find the instance's daemons and read the routers; nothing is changed."""
    with out.base.phase(Phase.DISCOVER, run.progress) as ph:
        check_support()
        instance = hs.instance
        if not instance.config.groups:
            raise NotFoundError(
                f"{instance.describe()} defines no WSGIDaemonProcess group: wsgi-drain has "
                "nothing to protect there; use apachectl itself"
            )
        old = current(instance)
        out.before = ParentSeen(instance.pid, tuple(sorted(old.numbers)))
        out.base.apache_pid, out.base.apache_config = instance.pid, str(instance.config_path)
        for gid, name in sorted(old.names.items()):
            out.group(name).old_pids = list(old.members[gid])
        targets = [_target(hs, old, gid) for gid in sorted(old.sockets)]
        if not targets:
            raise NotFoundError(
                f"{instance.describe()} runs none of its daemon groups now (still starting, or "
                "mod_wsgi not loaded?); nothing changed. Use apachectl itself, or retry once "
                "its daemons run"
            )
        routing = read_routers(run)
        _adopt_host_journals(run, routing)
        ph.detail = (
            f"{instance.describe()}, generation {out.before.describe() or '-'}: "
            + "; ".join(f"{n} [{' '.join(map(str, pids))}]" for n, pids in old.by_name().items())
        )
    return Host(hs, old, targets, routing)


def _target(hs: HostSettings, old: Generation, gid: int) -> Target:
    """A Target for the socket `gid` (only its socket and pids are read: the requests on it)."""
    instance = hs.instance
    name = old.names[gid]
    procs = old.proven.get(name)
    if procs is None:
        group = instance.config.groups[0]
        members = tuple(DaemonProcess(pid, 0.0, "") for pid in old.members[gid])
        procs = GroupProcesses(group, old.sockets[gid], members, "socket")
    return Target(instance, procs, expected=len(procs.processes), parent_pid=instance.pid)


def _adopt_host_journals(run: Run, routing: Routing) -> None:
    """Routers an earlier reload or stop of ours left out (that run is gone) are ours again."""
    s = run.settings
    if lock_holder(s.state_dir, HOST) is not None:
        return
    left: set[str] = set()
    for kind in ("reload", "stop"):
        journal = Journal.load(s.state_dir, HOST, kind)
        if journal is not None:
            left |= set(journal.still_diverted)
    for (spec, router), rec in routing.paired():
        if spec in left and rec.before != "ready" and not rec.adopted:
            rec.adopted = True
            run.warn(
                f"{router.name} was left in {rec.before} by an earlier reload or stop of "
                "wsgi-drain; this run takes it over"
            )


@contextlib.contextmanager
def locked(run: Run, host: Host, what: str) -> Iterator[None]:
    """The host's lock, every group's, and every router server's (a second caller: exit 7)."""
    s = run.settings
    with contextlib.ExitStack() as locks:
        locks.enter_context(group_lock(s.state_dir, HOST, what=what))
        for name in host.hs.groups:
            locks.enter_context(group_lock(s.state_dir, name, what=what))
        for spec, _router in host.routing.routers:
            locks.enter_context(router_lock(s.state_dir, spec, HOST))
        yield


def wait_quiet(run: Run, host: Host, out: HostOutcome) -> None:
    """Divert the host (with its peers) and wait for every request in flight, router and host.

    Without a router, say plainly what that means, and wait for the requests
    the daemons hold now.  RouterError when the peers cannot take this host's
    traffic: everything was put back and Apache was not signalled.
    """
    s = run.settings
    rest = host.targets[1:]
    if host.routing.routers:
        if not divert(run, host.targets[0], host.routing):
            raise RouterError(
                "divert",
                "too few other servers can take this host's traffic; everything was put back "
                "and Apache was not signalled (see --min-peers, --peer-wait)",
            )
    else:
        out.unprotected = True
        run.warn(
            "no router in rotation for this host (--router/--haproxy, or the configuration "
            "file): new requests keep arriving, and requests in flight get only Apache's own "
            "shutdown allowance (SIGTERM, then SIGKILL 3 s later); the requests the daemons "
            "hold now are waited for first"
        )
        rest = host.targets
    deadline = Deadline(s.drain_timeout)
    for target in rest:
        wait_host_requests(run, target, deadline)
