"""`wsgi-drain stop`: a graceful stop of the whole Apache, for host maintenance."""

from __future__ import annotations

import sys
from typing import Any

import click

from wsgi_drain import report, report_host
from wsgi_drain._compat import print_bug
from wsgi_drain.cli.host_options import host_options, host_settings
from wsgi_drain.cli.options import CONTEXT, handles_errors


@click.command(context_settings=CONTEXT)
@host_options
@click.option("--dry-run", is_flag=True, help="Discover and print the whole plan; change nothing.")
@handles_errors
def stop(**kwargs: Any) -> None:
    """Stop Apache for host maintenance after its last request; leave the host out of rotation.

    \b
    1. find Apache and every daemon group it runs; lock them all (exit 7 if taken)
    2. divert: take this host out of every router that has it in rotation; wait
       for every request in flight, at the router and on the host
    3. stop: SIGWINCH (graceful-stop) to the Apache parent, then confirm that
       every process of the instance (recorded by pid and start time) is gone
    4. leave the host out of rotation; the journal says why, and `wsgi-drain
       check` says "stopped for maintenance"

    Once Apache runs again (the reboot, the upgrade done):
      wsgi-drain undrain --group G --wait-ready 60
    puts the host back when every process is up and the health URL answers.

    \b
    Exit statuses: 0 stopped, 1 unexpected error, 2 usage, 3 Apache not found,
    4 router error (nothing stopped, routers put back), 5 processes of the
    instance still running after --timeout, 7 another run holds a lock,
    130 interrupted.
    """
    from wsgi_drain.host.stop import stop as run_stop

    as_json, quiet = kwargs.pop("as_json"), kwargs.pop("quiet")
    dry_run = kwargs.pop("dry_run")
    hs = host_settings(kwargs, {})
    out = run_stop(hs, dry_run=dry_run, progress=report.ProgressPrinter(quiet=quiet))
    if as_json:
        report.print_json(report_host.as_dict(out))
    else:
        report_host.print_text(out)
    if out.base.unexpected is not None:
        print_bug(out.base.unexpected)
    elif out.base.error is not None and not as_json:
        click.echo(f"wsgi-drain: error: {out.base.error}", err=True)
    sys.exit(int(out.status))
