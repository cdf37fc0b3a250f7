"""`wsgi-drain restart`: parse its options, run the restart, report."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from wsgi_drain import report
from wsgi_drain._compat import print_bug
from wsgi_drain.cli.options import (
    CONTEXT,
    divert_options,
    divert_settings,
    handles_errors,
    require_lb_detect,
    seconds_option,
    settings,
    several_group_options,
)
from wsgi_drain.cli.textfile import write_textfile
from wsgi_drain.errors import DrainError


def _rollback_argv(value: str | None) -> tuple[str, ...] | None:
    if not value:
        return None
    # Imported here: wsgi_drain.cli loads this module for every command, and
    # `check` (every minute, everywhere) never runs a program.
    from wsgi_drain.program import parse_argv

    return parse_argv(value, "--rollback")


def _signal_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    from wsgi_drain.signals import parse_signal

    try:
        return parse_signal(value).name
    except DrainError as err:
        raise click.BadParameter(str(err)) from None


@click.command(context_settings=CONTEXT)
@several_group_options
@click.option(
    "--mode",
    type=click.Choice(["drain", "rolling"]),
    help="drain: divert at the router, restart all processes at once, restore (default). "
    "rolling: one process at a time, no router, N-1 keep serving.",
)
@click.option(
    "--signal",
    "signal_name",
    callback=_signal_option,
    help="Restart signal: SIGUSR1 (graceful, default) or SIGTERM. SIGUSR2 is refused: "
    "it is not a restart on any mod_wsgi version.",
)
@seconds_option(
    "--timeout",
    help="Seconds to wait for every old process to be replaced [default: the group's "
    "drain window + shutdown-timeout + 10].",
)
@divert_options
@click.option(
    "--if-few-peers",
    "few_peers",
    type=click.Choice(["rolling", "refuse"]),
    help="When fewer than --min-peers other servers are UP: restart in place, one process at "
    "a time (rolling, default), or refuse, exit 4, naming the servers that are out (refuse: a "
    "fleet rollout must never take a second host out).",
)
@seconds_option(
    "--lb-up-timeout",
    help="After putting the server back, wait this long for the router to see it UP (its "
    "health checks pass); not UP by then is exit 6 [default: 30; 0: do not wait].",
)
@click.option(
    "--rollback",
    "rollback",
    metavar="'PROGRAM ARGS'",
    help="The deploy's way back, run once when the new code is known bad after the signal "
    "(import error, crash loop, unhealthy --health-url, replacements that never come up); "
    "then the processes on the new code are replaced and health verified again: exit 8, "
    "rolled back. Split like a shell would, never run by one; PROGRAM is an absolute path. "
    "Refused under sudo (name it in root's TOML: rollback = [...]).",
)
@seconds_option(
    "--rollback-timeout",
    above=True,
    help="Kill the rollback program (its process group) after this long: exit 6, both "
    "failures named [default: 60].",
)
@click.option(
    "--leftovers",
    type=click.Choice(["report", "stop"]),
    help="Leftovers are the processes the old daemons started (the app's own children, any "
    "depth, detached ones too) still running once their daemon has gone. report: name each "
    "(pid, command line, its daemon, age) and count them on the verdict line (default). "
    "stop: also SIGTERM each, wait up to the group's shutdown-timeout, then SIGKILL. Only "
    "processes recorded as an old daemon's descendants before the signal are ever touched; "
    "the new daemons' children never. `check` warns while any still run.",
)
@click.option("--dry-run", is_flag=True, help="Discover and show the plan; change nothing.")
@click.option("--force", is_flag=True, help="SIGKILL a process still alive past the deadline.")
@click.option(
    "--py-spy",
    "py_spy",
    type=click.Path(dir_okay=False, path_type=Path),
    help="py-spy executable for the stacks of a stuck process [default: next to wsgi-drain's "
    "interpreter, else on PATH].",
)
@click.option(
    "--textfile",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the run's verdict, duration, processes replaced, impact and end time "
    "here as Prometheus metrics (node_exporter textfile collector; atomic). TOML: textfile.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress lines on stderr.")
@handles_errors
def restart(**kwargs: Any) -> None:
    """Restart one daemon group gracefully, losing no request.

    \b
    1. find Apache and the group's processes, proven by what they run as
       (never a guess: a group that cannot be proven is exit 3, with why)
    2. take a lock on the group and its routers (a second run exits 7 at once)
    3. divert: take this host out of every --router/--haproxy that has it in
       rotation (one an operator took out is left exactly so); wait for
       in-flight requests
    4. signal: SIGUSR1 to every old process, through a pidfd
    5. watch: each old process exits, the Apache parent spawns replacements
    6. verify: replacements up and alive, --health-url answers 2xx on Apache
    7. restore: put back what this run took out
    8. leftovers: name what the old daemons started that outlives them
       (--leftovers stop ends it)

    With no router, or when this server is the only one UP, it restarts in place,
    one process at a time, stopping at the first step that fails. If the new
    code is broken (import error, crash loop) the run says so in the app's own
    words and the backend stays diverted; `wsgi-drain undrain` puts it back.
    With no router, the run says which processes run the new code and what
    share of requests they take (nothing shields the users): roll back the
    code and restart again, or let --rollback do it.

    \b
    Several groups of this host in one run: repeat --group (or --all-groups
    for every group of the instance). The host is diverted once, every group
    signalled together and verified on its own health URL (--health-url
    GROUP=URL, repeat; or health_url in each [groups.NAME] table), then put
    back once, only if every group is healthy; --mode rolling restarts the
    groups one after another. One section per group in the report, one
    verdict for the run (--json: schema wsgi-drain/restart/v2).

    \b
    Exit statuses: 0 success, 1 unexpected error, 2 usage, 3 Apache or group not
    found or not provable, 4 router error, 5 processes not replaced in time,
    6 unhealthy after restart (crash loop, import error), 7 another run holds
    the lock, 8 rolled back (the new code failed; --rollback ran and the old
    code serves), 130 interrupted (SIGINT, SIGTERM, SIGHUP).
    """
    # Here, not at the top: wsgi_drain.cli loads this module for `check` too.
    from wsgi_drain.cli.several import choose_groups, restart_several
    from wsgi_drain.restart import restart as run_restart

    as_json = kwargs.pop("as_json")
    quiet = kwargs.pop("quiet")
    dry_run, force = kwargs.pop("dry_run"), kwargs.pop("force")
    py_spy = kwargs.pop("py_spy")
    rollback = kwargs.pop("rollback")
    textfile = kwargs.pop("textfile")
    extra = {
        "mode": kwargs.pop("mode"),
        "signal": kwargs.pop("signal_name"),
        "timeout": kwargs.pop("timeout"),
        **divert_settings(kwargs),
        "few_peers": kwargs.pop("few_peers"),
        "lb_up_timeout": kwargs.pop("lb_up_timeout"),
        "rollback": _rollback_argv(rollback),
        "rollback_timeout": kwargs.pop("rollback_timeout"),
        "textfile": textfile,
        "leftovers": kwargs.pop("leftovers"),
    }
    guarded = {"py_spy": py_spy, "rollback": rollback, "textfile": textfile}
    groups = choose_groups(kwargs, extra, guarded)
    if len(groups) > 1:  # several groups in one run: its own report, exits
        restart_several(groups, kwargs, extra, as_json, quiet, dry_run, force, guarded)
    resolved = settings(kwargs, extra, guarded)
    require_lb_detect(resolved)
    progress = report.ProgressPrinter(quiet=quiet)
    outcome = run_restart(resolved, dry_run=dry_run, force=force, progress=progress, py_spy=py_spy)
    write_textfile(resolved.textfile, outcome)
    if as_json:
        report.print_json(report.restart_dict(outcome))
    else:
        report.print_restart(outcome)
    if outcome.unexpected is not None:
        print_bug(outcome.unexpected)
    # An error is in the verdict line on stdout already: not again on stderr (issue 22).
    sys.exit(int(outcome.status))
