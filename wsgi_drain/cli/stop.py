"""`wsgi-drain stop`: a graceful stop of the whole Apache, for host maintenance."""

from __future__ import annotations

from typing import Any

import click

from wsgi_drain import report
from wsgi_drain.cli.host_options import host_options, host_settings, report_and_exit
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
    report_and_exit(out, as_json=as_json)
