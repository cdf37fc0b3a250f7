"""`wsgi-drain status`: Apache instances, groups, processes, routers."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from wsgi_drain import config, privilege, report
from wsgi_drain.cli.history import show_history
from wsgi_drain.cli.options import CONTEXT, JSON_OPTION, handles_errors, state_dir_option
from wsgi_drain.status import ExitStatus


@click.command(context_settings=CONTEXT)
@click.option("--group", "-g", help="Show only this group.")
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="wsgi-drain TOML file (names each group's routers) [default: /etc/wsgi-drain.toml].",
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
    read for groups whose routers /etc/wsgi-drain.toml names. Exit 0, or 3
    when no Apache instance could be read.
    """
    from wsgi_drain.inventory import gather

    privilege.refuse_under_sudo(kwargs)
    path = config.config_path(kwargs["config_file"])
    data = config.read_file(path)
    state_dir = kwargs["state_dir"] or config.resolve("-", {}, data, str(path)).state_dir
    if kwargs["history"]:
        show_history(state_dir, kwargs["group"], kwargs["as_json"])
        return
    inv = gather(
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
