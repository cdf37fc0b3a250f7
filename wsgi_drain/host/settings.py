"""The host's settings: the instance, the routers of the host, each group's own table.

A host run concerns every group of one Apache instance, so it reads the
TOML file as a restart of each group would, and joins them: the instance
(the top level's, else the one all group tables agree on, else the one
Apache running), the routers (every table's, each once: a router server is
the host, whichever group names it; routers on the command line replace
them all, as for a restart), and per group its own settings (the health
URL and its Host/CA, checked like a restart's).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wsgi_drain import config
from wsgi_drain import routers as routers_mod
from wsgi_drain.config import Settings
from wsgi_drain.discovery import ApacheInstance, find_apache
from wsgi_drain.errors import ConfigError, GroupNotFoundError
from wsgi_drain.state import HOST

_ROUTERS = ("haproxy", "routers")


@dataclass(frozen=True)
class HostSettings:
    """`run` drives the run (routers, drain, state; its group names the primary one)."""

    run: Settings
    instance: ApacheInstance
    # Each group of the instance (files' order) -> its settings.
    groups: dict[str, Settings]
    timeout: float | None = None


def resolve_host(
    given: Mapping[str, Any],
    data: Mapping[str, Any],
    source: str,
    *,
    timeout: float | None = None,
) -> HostSettings:
    """Resolve the host's settings and find its Apache (NotFoundError when none or several)."""
    top = {k: v for k, v in data.items() if k != "groups"}
    base = config.resolve(HOST, given, top, source)
    tables = config.groups_in(data)
    if base.apache_pidfile is None and base.apache_config is None:
        base = _instance_from_tables(base, given, data, source, tables)
    instance = find_apache(pidfile=base.apache_pidfile, config_path=base.apache_config)
    names = [g.name for g in instance.config.groups]
    for name in tables:
        if name not in names:
            raise GroupNotFoundError(name, tuple(names), str(instance.config_path))
    groups = {
        name: config.resolve(name, given, data, source)
        if name in tables
        else dataclasses.replace(base, group=name)
        for name in names
    }
    specs = host_routers(base, list(groups.values()), any(given.get(k) for k in _ROUTERS))
    run = dataclasses.replace(
        base, group=names[0] if names else HOST, haproxy=(), routers=tuple(specs)
    )
    return HostSettings(run=run, instance=instance, groups=groups, timeout=timeout)


def host_routers(base: Settings, groups: list[Settings], given: bool) -> list[str]:
    """The host's router specs: those given (they replace every table's), else every table's once.

    A router server stands for the host, whichever group's table names it:
    two tables naming the same server divert it once.
    """
    if given:
        return routers_mod.specs(base.haproxy, base.routers)
    specs: list[str] = []
    for s in (base, *groups):
        specs += [spec for spec in routers_mod.specs(s.haproxy, s.routers) if spec not in specs]
    return specs


def _instance_from_tables(
    base: Settings,
    given: Mapping[str, Any],
    data: Mapping[str, Any],
    source: str,
    tables: list[str],
) -> Settings:
    """The Apache all group tables name, when the top level names none."""
    found = {
        (s.apache_pidfile, s.apache_config)
        for s in (config.resolve(name, given, data, source) for name in tables)
    } - {(None, None)}
    if len(found) > 1:
        raise ConfigError(
            f"{source}: the group tables name different Apache instances; name the one to act "
            "on with --apache-pidfile (or apache_pidfile at the top level)"
        )
    if not found:
        return base
    ((pidfile, conf),) = found
    return dataclasses.replace(base, apache_pidfile=pidfile, apache_config=conf)
