"""`status`: what Apache instances, groups, processes and router states exist.

Read-only; every part that cannot be read is reported as such instead of
failing the whole listing, because an operator runs this when things are odd.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from wsgi_drain import config as config_mod
from wsgi_drain import leftovers_record
from wsgi_drain import routers as routers_mod
from wsgi_drain.apacheconf import DaemonGroup
from wsgi_drain.discovery import (
    ApacheInstance,
    GroupProcesses,
    find_apache,
    group_processes,
    instance_by_pid,
    running_parents,
)
from wsgi_drain.errors import DrainError
from wsgi_drain.express import express_warnings
from wsgi_drain.procfacts import ProcessInfo as ProcessInfo  # status and check report the same
from wsgi_drain.procfacts import process_info
from wsgi_drain.routers import RouterState
from wsgi_drain.state import HOST, Journal, all_journals, lock_holder


@dataclass
class GroupStatus:
    """One group as `status` shows it, in the order it shows it.

    Its configuration; warnings said before anything else (mod_wsgi-express's
    reloading); how its processes were proven to be the group's (discovery's
    own record) or why they could not be; the processes; each router's state,
    or why it could not be read.
    """

    group: DaemonGroup
    warnings: list[str] = field(default_factory=list)
    proof: GroupProcesses | None = None
    error: str | None = None
    processes: list[ProcessInfo] = field(default_factory=list)
    routers: list[RouterState] = field(default_factory=list)
    router_errors: list[str] = field(default_factory=list)


@dataclass
class InstanceStatus:
    instance: ApacheInstance
    groups: list[GroupStatus] = field(default_factory=list)


@dataclass
class Inventory:
    instances: list[InstanceStatus] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    journals: list[Journal] = field(default_factory=list)
    # Groups whose journal belongs to a run that is still going (it holds the lock).
    running: set[str] = field(default_factory=set)
    # Group -> processes its replaced daemons left behind that still run.
    leftovers: dict[str, list[leftovers_record.Entry]] = field(default_factory=dict)


def gather(
    *,
    group: str | None,
    apache_pidfile: Path | None,
    apache_config: Path | None,
    state_dir: Path,
    file_data: dict[str, object],
    source: str,
    routers_given: Mapping[str, tuple[str, ...]] | None = None,
) -> Inventory:
    """Everything `status` shows; `group` narrows it to one group.

    `routers_given` (`haproxy`, `routers`: the command line's) replace the
    file's routers of every group shown, as they do for `restart`.
    """
    inv = Inventory()
    instances: list[ApacheInstance] = []
    try:
        if apache_pidfile or apache_config:
            instances.append(find_apache(pidfile=apache_pidfile, config_path=apache_config))
        else:
            for parent in running_parents():
                try:
                    instances.append(instance_by_pid(parent.pid, None, source="running Apache"))
                except DrainError as err:
                    inv.errors.append(str(err))
    except DrainError as err:
        inv.errors.append(str(err))
    for instance in instances:
        ist = InstanceStatus(instance)
        for g in instance.config.groups:
            if group is not None and g.name != group:
                continue
            ist.groups.append(_group_status(instance, g, file_data, source, routers_given))
        inv.instances.append(ist)
    if group is not None and not any(ist.groups for ist in inv.instances) and instances:
        known = sorted({g.name for i in instances for g in i.config.groups})
        inv.errors.append(f"group {group!r} is not configured; groups: {', '.join(known)}")
    try:
        journals, broken = all_journals(state_dir)
        inv.journals = [j for j in journals if group is None or j.group in (group, HOST)]
        inv.errors.extend(str(e) for e in broken if group is None or e.group in (None, group))
        inv.running = {j.group for j in inv.journals if lock_holder(state_dir, j.group)}
    except DrainError as err:
        inv.errors.append(str(err))
    left, problems = leftovers_record.all_left(state_dir)
    inv.leftovers = {g: e for g, e in left.items() if group is None or g == group}
    inv.errors.extend(problems)
    return inv


def _group_status(
    instance: ApacheInstance,
    g: DaemonGroup,
    file_data: dict[str, object],
    source: str,
    routers_given: Mapping[str, tuple[str, ...]] | None = None,
) -> GroupStatus:
    gs = GroupStatus(g)
    if instance.express is not None:
        gs.warnings = express_warnings(g, instance.express)
    try:
        gs.proof = group_processes(instance, g)
        gs.processes = [info for p in gs.proof.processes if (info := process_info(p.pid))]
    except DrainError as err:
        gs.error = str(err)
    try:
        # The group is Apache's own: a table with a near name is no typo of it.
        settings = config_mod.resolve(
            g.name, dict(routers_given or {}), file_data, source, lambda _s: True
        )
    except DrainError as err:
        gs.router_errors.append(str(err))
        return gs
    for spec in routers_mod.specs(settings.haproxy, settings.routers):
        try:
            gs.routers.append(routers_mod.from_spec(spec).state())
        except DrainError as err:
            gs.router_errors.append(str(err))
    return gs
