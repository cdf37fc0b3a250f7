"""`wsgi-drain status`: Apache instances, groups, processes, routers."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from wsgi_drain import config, privilege, report
from wsgi_drain.cli.options import (
    CONTEXT,
    JSON_OPTION,
    config_option,
    handles_errors,
    state_dir_option,
)
from wsgi_drain.status import ExitStatus


@click.command(context_settings=CONTEXT)
@click.option("--group", "-g", help="Show only this group.")
@config_option(
    "wsgi-drain TOML file (names each group's routers) [default: $WSGI_DRAIN_CONFIG or "
    "/etc/wsgi-drain.toml]."
)
@click.option(
    "--apache-config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Show only the Apache instance this configuration's PidFile names.",
)
@click.option(
    "--apache-pidfile",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Show only the Apache instance in this pid file [default: every running one].",
)
@click.option(
    "--haproxy",
    multiple=True,
    metavar="SOCKET:BACKEND/SERVER",
    help="Read this HAProxy server's state for the group(s) shown (as restart's --haproxy; "
    "replaces the file's routers; repeat for several).",
)
@click.option(
    "--router",
    "routers",
    multiple=True,
    metavar="KIND:SPEC",
    help="Read this router's state for the group(s) shown (as restart's --router; repeat).",
)
@click.option(
    "--history",
    is_flag=True,
    help="Show the last runs of each group from the state directory (verdict, duration, "
    "impact, end time) instead of the live state.",
)
@state_dir_option()
@JSON_OPTION
@handles_errors
def status(**kwargs: Any) -> None:
    """Show Apache instances, their daemon groups, live processes, routers, journals.

    Without --apache-* it lists every running Apache parent. Router state is
    read for groups whose routers /etc/wsgi-drain.toml names, or from
    --haproxy/--router (for --group's group, or every group shown).

    \b
    Exit statuses: 0 success, 1 unexpected error, 2 usage (a bad option or
    configuration file), 3 no Apache instance could be read.
    """
    from wsgi_drain.inventory import gather

    privilege.refuse_under_sudo(kwargs)
    path = config.config_path(kwargs["config_file"])
    data = config.read_file(path)
    state_dir = kwargs["state_dir"] or config.resolve("-", {}, data, str(path)).state_dir
    if kwargs["history"]:
        from wsgi_drain.cli.history import show_history  # the restart's records: not for check

        show_history(state_dir, kwargs["group"], kwargs["as_json"])
        return
    given = {"haproxy": tuple(kwargs["haproxy"]), "routers": tuple(kwargs["routers"])}
    if given["haproxy"] or given["routers"]:
        from wsgi_drain import routers

        for spec in routers.specs(given["haproxy"], given["routers"]):
            routers.from_spec(spec)  # a typo is a usage error, before anything is read
    inv = gather(
        routers_given=given,
        group=kwargs["group"],
        apache_pidfile=kwargs["apache_pidfile"],
        apache_config=kwargs["apache_config"],
        state_dir=state_dir,
        file_data=data,
        source=str(path or "defaults"),
    )
    if kwargs["as_json"]:
        report.print_json(report.status_dict(inv))
    else:
        report.print_status(inv)
    if not inv.instances:
        sys.exit(int(ExitStatus.NOT_FOUND))
