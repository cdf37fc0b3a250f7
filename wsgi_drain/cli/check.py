"""`wsgi-drain check`: the Nagios-style health check."""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from wsgi_drain import privilege, report, report_check
from wsgi_drain._compat import print_bug
from wsgi_drain.cli.options import CONTEXT, group_options, seconds_option, settings
from wsgi_drain.errors import DrainError
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
    from wsgi_drain.check import CheckResult, Thresholds, run_check
    from wsgi_drain.status import NagiosStatus

    as_json = kwargs.pop("as_json")
    textfile = kwargs.pop("textfile")
    limit = kwargs.pop("check_timeout")
    rss_warn = kwargs.pop("rss_warn")
    thresholds = Thresholds(
        health_warn=kwargs.pop("health_warn"),
        rss_warn=rss_warn * 2**20 if rss_warn else None,
        age_warn=kwargs.pop("age_warn"),
        log_window=kwargs.pop("log_window"),
    )
    group = kwargs["group"]
    try:
        with _alarm(limit):
            result = run_check(settings(kwargs, {}, {"textfile": textfile}), thresholds)
    except Exception as err:  # a DrainError, a timeout, or a bug: monitoring must see UNKNOWN
        if isinstance(err, privilege.SudoRefused):
            textfile = None  # the refused file is not written, not even with UNKNOWN
        if not isinstance(err, (DrainError, _CheckTimeout)):
            print_bug(err)
        result = CheckResult(group)
        result.add(NagiosStatus.UNKNOWN, str(err))
    problem = _write_textfile(textfile, result)
    if problem:
        # An UNKNOWN finding of its own: the worst-of rule keeps a CRITICAL found
        # above (an UNKNOWN never hides a CRITICAL, README "check").
        result.add(NagiosStatus.UNKNOWN, problem)
    if as_json:
        report.print_json(report_check.check_dict(result, thresholds))
    else:
        report_check.print_check(result, thresholds)
    sys.exit(int(result.status))


class _CheckTimeout(Exception):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"check timed out after {seconds:g} s (-t/--timeout)")


@contextlib.contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    """Raise _CheckTimeout if the block runs past `seconds` (a SIGALRM backstop)."""

    def expired(signum: int, frame: object) -> None:
        raise _CheckTimeout(seconds)

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _write_textfile(path: Path | None, result: Any) -> str | None:
    """Rewrite the metrics file; a failure is returned (the check's UNKNOWN), never raised."""
    if path is None:
        return None
    from wsgi_drain.state import write_atomic

    try:
        write_atomic(path, report_check.prometheus_text(result))
    except OSError as err:
        return (
            f"cannot write --textfile {path}: {err.strerror or err} "
            "(does the directory exist, and may this user write it?)"
        )
    return None
