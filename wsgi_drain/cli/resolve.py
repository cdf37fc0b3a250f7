"""The settings a per-group command resolves from its options' values (no click here).

`check` runs every minute from cron and is dispatched without click when its
arguments are plain (`cli/check_args.py`, issue 22): what it calls to resolve
its settings must not import click either.  `cli/options.py` declares the
options and re-exports these.
"""

from __future__ import annotations

from typing import Any

from wsgi_drain import config, privilege
from wsgi_drain.errors import DrainError


def instance_settings(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Pop what group and host commands both take: the instance, its routers, --lb-detect, state."""
    return {
        "apache_config": kwargs.pop("apache_config"),
        "apache_pidfile": kwargs.pop("apache_pidfile"),
        "haproxy": tuple(kwargs.pop("haproxy")),
        "routers": tuple(kwargs.pop("routers")),
        "lb_detect": kwargs.pop("lb_detect"),
        "state_dir": kwargs.pop("state_dir"),
    }


def settings(
    kwargs: dict[str, Any],
    extra: dict[str, Any],
    guarded: dict[str, Any] | None = None,
    *,
    typed: bool = True,
) -> config.Settings:
    """Resolve `group_options`' values (popped from `kwargs`) and `extra` into Settings.

    `typed=False`: the group's name came from Apache (config.resolve).
    """
    # Before any file is opened: under sudo the caller may not choose paths or programs.
    privilege.refuse_under_sudo({**kwargs, **(guarded or {})})
    path = config.config_path(kwargs.pop("config_file"))
    data = config.read_file(path)
    given = {
        **instance_settings(kwargs),
        "ack_traps": tuple(kwargs.pop("ack_traps")),
        "health_url": kwargs.pop("health_url"),
        "health_timeout": kwargs.pop("health_timeout"),
        "health_host": kwargs.pop("health_host"),
        "health_ca": kwargs.pop("health_ca"),
        "health_insecure": kwargs.pop("health_insecure"),
        **extra,
    }
    resolved = config.resolve(
        kwargs.pop("group"),
        given,
        data,
        str(path or "defaults"),
        # Names read from Apache (--all-groups) are no typo of a table's.
        _apache_defines if typed else lambda _settings: True,
    )
    if resolved.haproxy or resolved.routers:
        # Every router spec parsed now, before Apache is looked for: a typo is a
        # usage error (exit 2), not found after discovery and its warnings.
        from wsgi_drain import routers

        for spec in routers.specs(resolved.haproxy, resolved.routers):
            routers.from_spec(spec, resolved.group, resolved.lb_detect, resolved.state_dir)
    if resolved.health_url:
        from wsgi_drain.health import validate_ca, validate_url

        validate_url(resolved.health_url)
        validate_ca(resolved.health_ca)
    if resolved.ack_traps:
        from wsgi_drain.traps import check_keys

        check_keys(resolved.ack_traps)
    return resolved


def _apache_defines(resolved: config.Settings) -> bool:
    """Whether the Apache instance these settings name defines their group (typo rule)."""
    from wsgi_drain.discovery import find_group_apache

    try:
        instance = find_group_apache(resolved)
        instance.config.group(resolved.group)
    except DrainError:
        return False
    return True
