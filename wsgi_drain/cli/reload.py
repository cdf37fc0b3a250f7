"""`wsgi-drain reload`: the safe `apachectl graceful`, for configuration changes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from typing import Any

import click

from wsgi_drain import config, report
from wsgi_drain.cli.host_options import host_options, host_settings, report_and_exit
from wsgi_drain.cli.options import CONTEXT, handles_errors, seconds_option

# --or-graceful without a configuration: the distribution's own reload.
PLAIN_RELOAD = ("apachectl", "graceful")


@click.command(context_settings=CONTEXT)
@host_options
@seconds_option(
    "--lb-up-timeout",
    help="After putting the host back, wait this long for the router to see it UP [default: 30].",
)
@click.option("--dry-run", is_flag=True, help="Discover and print the whole plan; change nothing.")
@click.option(
    "--or-graceful",
    is_flag=True,
    help="When wsgi-drain is not configured (no --config, no WSGI_DRAIN_CONFIG, no "
    "/etc/wsgi-drain.toml, no router given), run the plain `apachectl graceful` instead "
    "(the systemd drop-in's ExecReload).",
)
@handles_errors
def reload(**kwargs: Any) -> None:
    """Reload Apache's configuration gracefully, losing no request (the safe apachectl graceful).

    \b
    1. find Apache and every daemon group it runs; lock them all (exit 7 if taken)
    2. divert: take this host out of every router that has it in rotation; wait
       for its requests in flight, at the router and on the host
    3. configtest: Apache's own test, with the instance's own command line and
       environment; a failure changes nothing, puts the routers back and exits 3
       with Apache's own error text
    4. graceful: SIGUSR1 to the Apache parent (its pid does not change)
    5. watch: every group of the new generation up (groups added or removed by
       the change are said), every old daemon gone
    6. verify: each group on its own health_url ([groups.NAME] tables); warm
       lazily loaded groups
    7. restore: put back what this run took out

    Without a router, requests in flight get only Apache's own shutdown
    allowance (SIGTERM, SIGKILL 3 s later): the run says so and waits for the
    requests the daemons hold first. An interrupted reload leaves its journal;
    `wsgi-drain undrain --group G --wait-ready 60` repairs it.

    \b
    Exit statuses: 0 reloaded, 1 unexpected error, 2 usage, 3 Apache not found
    or its configuration test failed (nothing reloaded), 4 router error,
    5 the new generation not complete in time, 6 a group unhealthy after the
    reload (the host stays out), 7 another run holds a lock, 130 interrupted.
    """
    from wsgi_drain.host.reload import reload as run_reload

    as_json, quiet = kwargs.pop("as_json"), kwargs.pop("quiet")
    dry_run = kwargs.pop("dry_run")
    if kwargs.pop("or_graceful") and _unconfigured(kwargs):
        _plain_reload(quiet)
    hs = host_settings(kwargs, {"lb_up_timeout": kwargs.pop("lb_up_timeout")})
    out = run_reload(hs, dry_run=dry_run, progress=report.ProgressPrinter(quiet=quiet))
    report_and_exit(out, as_json=as_json)


def _unconfigured(kwargs: dict[str, Any]) -> bool:
    if kwargs.get("haproxy") or kwargs.get("routers"):
        return False
    return config.config_path(kwargs.get("config_file")) is None


def _plain_reload(quiet: bool) -> None:
    """Run the distribution's own `apachectl graceful` and exit with its status."""
    found = shutil.which(PLAIN_RELOAD[0], path="/usr/sbin:/usr/bin:/sbin:/bin")
    if found is None:
        click.echo("wsgi-drain: error: no apachectl for the plain reload", err=True)
        sys.exit(1)
    if not quiet:
        click.echo(
            "wsgi-drain: not configured (no /etc/wsgi-drain.toml): the plain `apachectl "
            "graceful`, which gives requests in flight only Apache's shutdown allowance",
            err=True,
        )
    sys.exit(subprocess.run([found, *PLAIN_RELOAD[1:]], check=False).returncode)
