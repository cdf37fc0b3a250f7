"""`wsgi-drain check`: the Nagios-style health check."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from wsgi_drain import report, report_check
from wsgi_drain.cli.options import CONTEXT, group_options, seconds_option
from wsgi_drain.status import NagiosStatus


class NagiosCommand(click.Command):
    """A command whose usage errors are one UNKNOWN line on stdout, exit 3 (plugin rules).

    Monitoring shows a plugin's first stdout line; click's usage text on
    stderr with exit 2 would read as CRITICAL with no message.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        as_json = "--json" in args  # before click consumes the list
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as err:
            message = f"usage: {err.format_message()} (see wsgi-drain check --help)"
            if as_json:
                report.print_json(
                    {"schema": report_check.CHECK_SCHEMA, "group": None, "status": "UNKNOWN",
                     "exit_status": int(NagiosStatus.UNKNOWN), "summary": message,
                     "findings": [{"level": "UNKNOWN", "message": message}]}
                )  # fmt: skip
            else:
                from wsgi_drain import nagios

                click.echo(nagios.shorten(f"WSGI-DRAIN UNKNOWN - {message}", nagios.FIRST_LINE_MAX))
            sys.exit(int(NagiosStatus.UNKNOWN))


@click.command(context_settings=CONTEXT, cls=NagiosCommand)
@group_options
@seconds_option(
    "-t",
    "--timeout",
    "check_timeout",
    minimum=1,
    default=30.0,
    help="Seconds the whole check may take; past them it says UNKNOWN and exits 3 "
    "(Nagios plugin guidelines).",
)
@seconds_option(
    "--health-warn",
    default=1.0,
    help="WARNING when the health URL takes longer than this many seconds.",
)
@click.option("--rss-warn", type=click.IntRange(min=1), help="WARNING above this RSS (MiB).")
@seconds_option("--age-warn", help="WARNING for a process older than this (s).")
@seconds_option(
    "--log-window",
    default=600.0,
    help="Seconds of the error log to scan for processes forced out by a timeout.",
)
@click.option(
    "--textfile",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write Prometheus metrics here (node_exporter textfile collector; atomic), "
    "rewritten on every run, UNKNOWN included.",
)
def check(**kwargs: Any) -> None:
    """Health check for cron and monitoring (Nagios plugin conventions).

    Prints one line `WSGI-DRAIN OK|WARNING|CRITICAL|UNKNOWN - ...` with
    performance data after `|`, then one line per problem.

    \b
    CRITICAL: Apache down, group socket gone, no process, a stopped process, a
              process alive long after it was told to shut down, health URL
              failing, a journal left by an interrupted restart.
    WARNING:  fewer processes than processes= (after a short grace), slow
              health URL, router left drained, processes forced out by a
              timeout recently, configuration traps, --rss-warn/--age-warn,
              processes left behind by replaced daemons still running
              (leftovers: see wsgi-drain restart --help).

    UNKNOWN:  what this user may not read (the check works as the monitoring
              user; what needs root is named), bad options, unknown group,
              timeout, internal error.

    Run it as the monitoring user, without sudo. Under sudo, options that run
    a program, write a file or open a path (--router, --haproxy, --textfile,
    --config, --apache-*, --state-dir, --health-ca) are refused: put them in
    root's /etc/wsgi-drain.toml and give sudoers fixed arguments (README).

    \b
    Exit statuses: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN. The worst finding
    wins: CRITICAL > WARNING > UNKNOWN > OK.
    """
    from wsgi_drain.cli.check_run import run

    run(kwargs)
