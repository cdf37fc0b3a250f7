"""`wsgi-drain drain` and `undrain`: the router step alone."""

from __future__ import annotations

from typing import Any

import click

from wsgi_drain import report
from wsgi_drain.cli.options import (
    CONTEXT,
    QUIET_OPTION,
    divert_options,
    divert_run_settings,
    group_options,
    handles_errors,
    seconds_option,
    settings,
)


@click.command(context_settings=CONTEXT)
@group_options
@divert_options
@QUIET_OPTION
@handles_errors
def drain(**kwargs: Any) -> None:
    """Take this host's backend out of every router, and wait for in-flight requests.

    Only the router step: Apache is not touched. Refuses when too few other
    servers are UP. Undo with `wsgi-drain undrain`.

    \b
    Exit statuses: 0 success, 1 unexpected error, 2 usage, 4 router error (or
    too few other servers UP), 7 a restart or another drain of the group
    holds its lock, 130 interrupted.
    """
    from wsgi_drain.divert import drain as run_drain

    as_json = kwargs.pop("as_json")
    progress = report.ProgressPrinter(quiet=kwargs.pop("quiet"))
    resolved = divert_run_settings(kwargs, {})
    result = run_drain(resolved, progress)
    _print_divert(result, as_json)


@click.command(context_settings=CONTEXT)
@group_options
@seconds_option(
    "--wait-ready",
    help="First wait up to SECONDS until the group has all its processes and the health URL "
    "answers 2xx; if not, restore nothing and exit 6. For after an Apache reload "
    "(scripts/certbot-deploy-hook).",
)
@QUIET_OPTION
@handles_errors
def undrain(**kwargs: Any) -> None:
    """Put this host's backend back in rotation; repairs an interrupted restart.

    Restores exactly the routers given (or configured); with none, every
    router a left-behind run journal names. The journal forgets what was put
    back and is removed once it names nothing else.

    \b
    Exit statuses: 0 success, 1 unexpected error, 2 usage, 3 Apache or group
    not found (--wait-ready), 4 router error, 6 --wait-ready ran out before
    the group was ready, 7 a restart of the group holds its lock, 130
    interrupted.

    \b
    After an Apache reload (which restarts every daemon group abruptly):
      wsgi-drain drain --group myapp
      apache2ctl graceful
      wsgi-drain undrain --group myapp --wait-ready 60
    """
    from wsgi_drain.divert import undrain as run_undrain

    as_json = kwargs.pop("as_json")
    wait_ready = kwargs.pop("wait_ready")
    progress = report.ProgressPrinter(quiet=kwargs.pop("quiet"))
    result = run_undrain(settings(kwargs, {}), progress, wait_ready)
    _print_divert(result, as_json)


def _print_divert(result: Any, as_json: bool) -> None:
    states = [
        {"router": s.name, "admin": s.admin, "status": s.status, "sessions": s.sessions}
        for s in result.states
    ]
    if as_json:
        report.print_json(
            {
                "verdict": "success",
                "exit_status": 0,
                "group": result.group,
                "action": result.action,
                "routers": states,
                "notes": result.notes,
                "journal_removed": result.journal_removed,
            }
        )
    else:
        click.echo(f"wsgi-drain: OK - {result.action} {result.group}")
        for s in states:
            click.echo(f"  {s['router']}: {s['admin']} ({s['status']}, {s['sessions']} sessions)")
        for note in result.notes:
            click.echo(f"  {note}")
