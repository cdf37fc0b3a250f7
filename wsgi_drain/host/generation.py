"""The instance's daemon groups as one generation: seen before the signal, awaited after.

Before Apache's own restart wsgi-drain signals no daemon, so it needs no
proof of which group a socket is (identity.py) to wait on them: every child
of the parent that holds a group socket is a daemon of the running
generation, and its requests in flight are the accepted connections on that
socket.  Names are still given where they are proven (or told by a
`(wsgi:NAME)` title) for the report.

After SIGUSR1 the parent keeps its pid, re-reads the configuration and
opens new group sockets, whose names carry the next generation number
(`<prefix>.<pid>.<generation>.<id>.sock`); the old daemons are ended by
Apache (SIGTERM, then SIGKILL after 3 s: docs/apache.md).  The new
generation is complete when every old daemon is gone and every group of the
configuration now loaded has its processes= of new members.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from wsgi_drain import procfs
from wsgi_drain.apacheconf import DaemonGroup
from wsgi_drain.discovery import ApacheInstance, GroupProcesses, group_processes, instance_by_pid
from wsgi_drain.errors import DrainError
from wsgi_drain.identity import GroupSocket, observe

_TITLE = re.compile(r"^\(wsgi:(?P<name>[^)]*)\)?$")


@dataclass(frozen=True)
class Generation:
    """The running generation: each group socket with its daemons' pids and a name."""

    sockets: dict[int, GroupSocket]
    members: dict[int, tuple[int, ...]]
    names: dict[int, str]
    # The proven ones, to wait on their requests (and the report's names).
    proven: dict[str, GroupProcesses] = field(default_factory=dict)

    @property
    def numbers(self) -> set[str]:
        return {s.generation for s in self.sockets.values()}

    @property
    def pids(self) -> set[int]:
        return {pid for pids in self.members.values() for pid in pids}

    def by_name(self) -> dict[str, tuple[int, ...]]:
        return {self.names[gid]: self.members[gid] for gid in sorted(self.sockets)}


def current(instance: ApacheInstance) -> Generation:
    """The running generation of `instance` (needs root: the daemons' fds)."""
    obs = observe(instance.config, instance.pid, instance.create_time)
    members = {gid: tuple(c.pid for c in obs.members(gid)) for gid in obs.sockets}
    names = {gid: f"socket {gid}" for gid in obs.sockets}
    proven: dict[str, GroupProcesses] = {}
    for group in instance.config.groups:
        try:
            procs = group_processes(instance, group)
        except DrainError:
            continue  # on disk but not running (added since), or not provable: unnamed
        if procs.socket is not None and procs.socket.id in names:
            names[procs.socket.id] = group.name
            proven[group.name] = procs
    for gid, pids in members.items():
        if names[gid].startswith("socket "):
            titles = {_TITLE.match(procfs.title(pid)) for pid in pids}
            if len(titles) == 1 and None not in titles:
                (match,) = titles
                assert match is not None
                names[gid] = match["name"] + ("" if match[0].endswith(")") else "…")
    return Generation(dict(obs.sockets), members, names, proven)


@dataclass
class NewGeneration:
    """What the wait for the new generation saw (read by the report)."""

    instance: ApacheInstance | None = None
    groups: dict[str, GroupProcesses] = field(default_factory=dict)
    # Group name -> why it is not complete yet (the last look).
    waiting: dict[str, str] = field(default_factory=dict)
    old_left: set[int] = field(default_factory=set)


def look(instance: ApacheInstance, old: Generation, seen: NewGeneration) -> bool:
    """One look at the instance after SIGUSR1: is the new generation complete? Updates `seen`.

    The configuration is read again once the parent holds sockets of a new
    generation (it is then the one Apache loaded).
    """
    seen.old_left = {pid for pid in old.pids if not procfs.gone(pid)}
    if procfs.gone(instance.pid):
        seen.waiting = {"Apache": f"the parent pid {instance.pid} exited"}
        return False
    if seen.instance is None:
        sockets = observe(instance.config, instance.pid, instance.create_time).sockets
        if not sockets or {s.generation for s in sockets.values()} & old.numbers:
            seen.waiting = {"Apache": "the parent has not opened the new generation's sockets"}
            return False
        try:
            seen.instance = instance_by_pid(instance.pid, instance.config_path, source="reload")
        except DrainError as err:
            seen.waiting = {"Apache": str(err)}
            return False
    waiting: dict[str, str] = {}
    for group in seen.instance.config.groups:
        why = _incomplete(seen, group, old)
        if why:
            waiting[group.name] = why
    if seen.old_left:
        waiting["old generation"] = (
            f"{len(seen.old_left)} old daemon(s) still running: "
            + " ".join(map(str, sorted(seen.old_left)))
        )
    seen.waiting = waiting
    return not waiting


def _incomplete(seen: NewGeneration, group: DaemonGroup, old: Generation) -> str:
    assert seen.instance is not None
    try:
        procs = group_processes(seen.instance, group)
    except DrainError as err:
        return str(err)
    seen.groups[group.name] = procs
    new = [pid for pid in procs.pids if pid not in old.pids]
    if len(new) < group.processes:
        return f"{len(new)}/{group.processes} new processes"
    return ""
