"""Options of the host's commands (`reload`, `stop`), declared once, and their settings.

No --group: these act on the whole Apache instance.  The routers, the
instance and each group's health URL come from the same places as for a
restart (options, WSGI_DRAIN_* variables, the TOML file's top level and
every [groups.NAME] table).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from wsgi_drain import config, privilege, report, report_host
from wsgi_drain._compat import print_bug
from wsgi_drain.cli.options import (
    APACHE_CONFIG_OPTION,
    APACHE_PIDFILE_OPTION,
    HAPROXY_OPTION,
    JSON_OPTION,
    LB_DETECT_OPTION,
    QUIET_OPTION,
    config_option,
    divert_options,
    divert_settings,
    instance_settings,
    router_option,
    seconds_option,
    state_dir_option,
)

if TYPE_CHECKING:
    from wsgi_drain.host.records import HostOutcome

F = TypeVar("F", bound=Callable[..., Any])


def host_options(f: F) -> F:
    """The instance, its routers, the divert's options, state, --json, --timeout, --quiet."""
    options: list[Callable[[F], F]] = [
        config_option(
            "wsgi-drain TOML file: its top level and every [groups.NAME] table (routers, "
            "each group's health_url) [default: $WSGI_DRAIN_CONFIG or /etc/wsgi-drain.toml].",
        ),
        APACHE_CONFIG_OPTION,
        APACHE_PIDFILE_OPTION,
        HAPROXY_OPTION,
        router_option(
            "A front-end router of this host, as for `restart` (repeat; replaces the "
            "configuration file's routers of every group).",
        ),
        LB_DETECT_OPTION,
        seconds_option(
            "--timeout",
            above=True,
            help="Seconds Apache may take once signalled [default: 60].",
        ),
        QUIET_OPTION,
        state_dir_option(readable=False),
        JSON_OPTION,
    ]
    for option in reversed(options):
        f = option(f)
    return divert_options(f)


def host_settings(kwargs: dict[str, Any], extra: dict[str, Any]) -> Any:
    """Resolve the host's settings (HostSettings) from `host_options`' values in `kwargs`."""
    from wsgi_drain.host.settings import resolve_host

    privilege.refuse_under_sudo(kwargs)
    path = config.config_path(kwargs.pop("config_file"))
    data = config.read_file(path)
    given = {**instance_settings(kwargs), **divert_settings(kwargs), **extra}
    return resolve_host(given, data, str(path or "defaults"), timeout=kwargs.pop("timeout"))


def report_and_exit(out: HostOutcome, *, as_json: bool) -> NoReturn:
    """Print a host command's outcome (text or JSON), its error or bug, and exit with its status."""
    if as_json:
        report.print_json(report_host.as_dict(out))
    else:
        report_host.print_text(out)
    if out.base.unexpected is not None:
        print_bug(out.base.unexpected)
    elif out.base.error is not None and not as_json:
        click.echo(f"wsgi-drain: error: {out.base.error}", err=True)
    sys.exit(int(out.status))
