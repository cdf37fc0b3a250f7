"""Command line: parse, call the core, hand the result to report.py, exit with its status.

Every user mistake or environment problem arrives here as a DrainError and
leaves as one line on stderr plus the documented exit status, never as a
traceback.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click

from wsgi_drain import __version__, config, peers, privilege, report
from wsgi_drain.errors import ConfigError, DrainError
from wsgi_drain.status import ExitStatus, NagiosStatus

F = TypeVar("F", bound=Callable[..., Any])

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class NagiosCommand(click.Command):
    """A command whose usage errors are one UNKNOWN line on stdout, exit 3 (plugin rules).

    Monitoring shows a plugin's first stdout line; click's usage text on
    stderr with exit 2 would read as CRITICAL with no message.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as err:
            click.echo(
                f"WSGI-DRAIN UNKNOWN - usage: {err.format_message()} (see wsgi-drain check --help)"
            )
            sys.exit(int(NagiosStatus.UNKNOWN))


def _fail(err: DrainError, as_json: bool) -> None:
    if as_json:
        report.print_json(
            {
                "verdict": err.status.name.lower(),
                "exit_status": int(err.status),
                "message": str(err),
            }
        )
    click.echo(f"wsgi-drain: error: {err}", err=True)
    sys.exit(int(err.status))


class _MinPeers(click.ParamType):  # type: ignore[type-arg]
    """--min-peers: a whole number 0 or more, or "all"."""

    name = "N|all"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int):
            return value
        try:
            return peers.parse(value)
        except ConfigError:
            self.fail(f"{value!r} is not a whole number (0 or more) or 'all'", param, ctx)


MIN_PEERS = _MinPeers()


def _signal_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    from wsgi_drain.signals import parse_signal

    try:
        return parse_signal(value).name
    except DrainError as err:
        raise click.BadParameter(str(err)) from None


def group_options(f: F) -> F:
    """Options every per-group command shares: the group, its Apache, routers, state."""
    options = [
        click.option(
            "--group",
            "-g",
            required=True,
            envvar="WSGI_DRAIN_GROUP",
            help="Name of the WSGIDaemonProcess group (as in the Apache configuration).",
        ),
        click.option(
            "--config",
            "config_file",
            type=click.Path(dir_okay=False, path_type=Path),
            help="wsgi-drain TOML file [default: $WSGI_DRAIN_CONFIG or /etc/wsgi-drain.toml].",
        ),
        click.option(
            "--apache-config",
            type=click.Path(dir_okay=False, path_type=Path),
            envvar="WSGI_DRAIN_APACHE_CONFIG",
            help="Apache's main configuration file; its PidFile names the instance.",
        ),
        click.option(
            "--apache-pidfile",
            type=click.Path(dir_okay=False, path_type=Path),
            envvar="WSGI_DRAIN_APACHE_PIDFILE",
            help="Pid file of the Apache parent [default: the one Apache parent running].",
        ),
        click.option(
            "--haproxy",
            multiple=True,
            metavar="SOCKET:BACKEND/SERVER",
            envvar="WSGI_DRAIN_HAPROXY",
            help="HAProxy admin socket and this host's server in it, e.g. "
            "/run/haproxy/admin.sock:be_app/web1 (repeat for several HAProxy instances).",
        ),
        click.option(
            "--router",
            "routers",
            multiple=True,
            metavar="KIND:SPEC",
            help="A front-end router of this host (repeat; kinds mix): "
            "haproxy:SOCKET:BACKEND/SERVER (SOCKET a path or ipv4@HOST:PORT), "
            "nginx:[pid=PIDFILE:]UPSTREAM_FILE:HOST:PORT (marks that server line down, "
            "nginx -t, reload), health-file:PATH (its presence fails the health URL; "
            "with --lb-detect), "
            "command:'PROGRAM ARGS' (runs PROGRAM ARGS divert|restore|state, no shell). "
            "--haproxy S is short for --router haproxy:S.",
        ),
        click.option(
            "--health-url",
            envvar="WSGI_DRAIN_HEALTH_URL",
            help="URL on Apache itself (not the router) that answers 2xx when the app is healthy.",
        ),
        click.option(
            "--health-timeout",
            type=click.FloatRange(min=0.1),
            envvar="WSGI_DRAIN_HEALTH_TIMEOUT",
            help="Seconds one health probe may take [default: 5].",
        ),
        click.option(
            "--lb-detect",
            type=click.FloatRange(min=0),
            metavar="SECONDS",
            help="For a health-file router: how long the load balancer takes to stop sending "
            "once the health URL fails (check interval x unhealthy threshold + deregistration "
            "delay).",
        ),
        click.option(
            "--ack-trap",
            "ack_traps",
            multiple=True,
            metavar="KEY",
            help="Acknowledge a configuration trap chosen on purpose (its key is in the "
            "warning, e.g. script-reloading): a note instead of a WARNING; repeat for several.",
        ),
        click.option(
            "--health-host",
            metavar="NAME",
            envvar="WSGI_DRAIN_HEALTH_HOST",
            help="Host header for the health probe (and TLS server name for https), for an app "
            "on a name-based virtual host; the probe still connects to --health-url's address.",
        ),
        click.option(
            "--health-ca",
            type=click.Path(dir_okay=False, path_type=Path),
            envvar="WSGI_DRAIN_HEALTH_CA",
            help="CA bundle (PEM) to verify an https health URL with [default: the system's].",
        ),
        click.option(
            "--health-insecure",
            is_flag=True,
            default=None,
            help="Do not verify the https health URL's certificate (said in the report).",
        ),
        click.option(
            "--state-dir",
            # Not checked for readability here: `check` as the monitoring user
            # reports an unreadable state directory as UNKNOWN, by name.
            type=click.Path(file_okay=False, readable=False, path_type=Path),
            envvar="WSGI_DRAIN_STATE_DIR",
            help="Where locks and run journals live [default: /run/wsgi-drain].",
        ),
        click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _settings(
    kwargs: dict[str, Any], extra: dict[str, Any], guarded: dict[str, Any] | None = None
) -> config.Settings:
    # Before any file is opened: under sudo the caller may not choose paths or programs.
    privilege.refuse_under_sudo({**kwargs, **(guarded or {})})
    path = config.config_path(kwargs.pop("config_file"))
    data = config.read_file(path)
    given = {
        "apache_config": kwargs.pop("apache_config"),
        "apache_pidfile": kwargs.pop("apache_pidfile"),
        "haproxy": tuple(kwargs.pop("haproxy")),
        "routers": tuple(kwargs.pop("routers")),
        "ack_traps": tuple(kwargs.pop("ack_traps")),
        "lb_detect": kwargs.pop("lb_detect"),
        "health_url": kwargs.pop("health_url"),
        "health_timeout": kwargs.pop("health_timeout"),
        "health_host": kwargs.pop("health_host"),
        "health_ca": kwargs.pop("health_ca"),
        "health_insecure": kwargs.pop("health_insecure"),
        "state_dir": kwargs.pop("state_dir"),
        **extra,
    }
    settings = config.resolve(kwargs.pop("group"), given, data, str(path or "defaults"))
    if settings.health_url:
        from wsgi_drain.health import validate_ca, validate_url

        validate_url(settings.health_url)
        validate_ca(settings.health_ca)
    if settings.ack_traps:
        from wsgi_drain.traps import check_keys

        check_keys(settings.ack_traps)
    return settings


def handles_errors(f: F) -> F:
    """Turn DrainError into one stderr line and its exit status (JSON too with --json)."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        as_json = bool(kwargs.get("as_json"))
        try:
            return f(*args, **kwargs)
        except DrainError as err:
            _fail(err, as_json)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, prog_name="wsgi-drain")
def cli() -> None:
    """Restart Apache mod_wsgi daemon process groups without losing a request.

    \b
      wsgi-drain restart --group myapp    divert, restart gracefully, verify, restore
      wsgi-drain drain   --group myapp    take the backend out of the router only
      wsgi-drain undrain --group myapp    put it back (also repairs an interrupted run)
      wsgi-drain check   --group myapp    health check for cron/monitoring (Nagios codes)
      wsgi-drain status                   Apache instances, groups, processes, routers

    Settings come from options, WSGI_DRAIN_* variables, or /etc/wsgi-drain.toml
    (see README). Run any command with --help for its options and exit statuses.
    """


@cli.command(context_settings=CONTEXT)
@group_options
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
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    help="Seconds to wait for every old process to be replaced [default: the group's "
    "drain window + shutdown-timeout + 10].",
)
@click.option(
    "--drain-timeout",
    type=click.FloatRange(min=0),
    help="Seconds to wait for the router's in-flight requests to finish [default: 30].",
)
@click.option(
    "--min-peers",
    type=MIN_PEERS,
    help="Divert only if at least this many other servers are UP ('all': every other server "
    "the router sees, so never two hosts out); else restart in place [default: 1].",
)
@click.option(
    "--peer-wait",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="When too few other servers are UP, or another host went out at the same moment, "
    "wait this long for them before deciding (a rollout in parallel: hosts take turns) "
    "[default: 0, decide at once].",
)
@click.option(
    "--if-few-peers",
    "few_peers",
    type=click.Choice(["rolling", "refuse"]),
    help="When fewer than --min-peers other servers are UP: restart in place, one process at "
    "a time (rolling, default), or refuse, exit 4, naming the servers that are out (refuse: a "
    "fleet rollout must never take a second host out).",
)
@click.option(
    "--lb-up-timeout",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="After putting the server back, wait this long for the router to see it UP (its "
    "health checks pass); not UP by then is exit 6 [default: 30; 0: do not wait].",
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

    With no router, or when this server is the only one UP, it restarts in place,
    one process at a time, stopping at the first step that fails. If the new
    code is broken (import error, crash loop) the run says so in the app's own
    words and the backend stays diverted; `wsgi-drain undrain` puts it back.

    \b
    Exit statuses: 0 success, 1 unexpected error, 2 usage, 3 Apache or group not
    found or not provable, 4 router error, 5 processes not replaced in time,
    6 unhealthy after restart (crash loop, import error), 7 another run holds
    the lock, 130 interrupted (SIGINT, SIGTERM, SIGHUP).
    """
    from wsgi_drain.restart import restart as run_restart

    as_json = kwargs.pop("as_json")
    quiet = kwargs.pop("quiet")
    dry_run, force = kwargs.pop("dry_run"), kwargs.pop("force")
    py_spy = kwargs.pop("py_spy")
    extra = {
        "mode": kwargs.pop("mode"),
        "signal": kwargs.pop("signal_name"),
        "timeout": kwargs.pop("timeout"),
        "drain_timeout": kwargs.pop("drain_timeout"),
        "min_peers": kwargs.pop("min_peers"),
        "peer_wait": kwargs.pop("peer_wait"),
        "few_peers": kwargs.pop("few_peers"),
        "lb_up_timeout": kwargs.pop("lb_up_timeout"),
    }
    settings = _settings(kwargs, extra, {"py_spy": py_spy})
    progress = report.ProgressPrinter(quiet=quiet)
    outcome = run_restart(settings, dry_run=dry_run, force=force, progress=progress, py_spy=py_spy)
    if as_json:
        report.print_json(report.restart_dict(outcome))
    else:
        report.print_restart(outcome)
    if outcome.unexpected is not None:
        traceback.print_exception(outcome.unexpected, file=sys.stderr)
    elif outcome.error is not None and not as_json:
        click.echo(f"wsgi-drain: error: {outcome.error}", err=True)
    sys.exit(int(outcome.status))


@cli.command(context_settings=CONTEXT)
@group_options
@click.option(
    "--drain-timeout",
    type=click.FloatRange(min=0),
    help="Seconds to wait for in-flight requests to finish [default: 30].",
)
@click.option(
    "--min-peers",
    type=MIN_PEERS,
    help="Refuse unless at least this many other servers are UP ('all': every other one; "
    "refused with a router that cannot name the servers out) [default: 1].",
)
@click.option(
    "--peer-wait",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Wait this long for enough other servers to be UP, taking turns with another host "
    "going out at the same moment, before refusing [default: 0].",
)
@handles_errors
def drain(**kwargs: Any) -> None:
    """Take this host's backend out of every router, and wait for in-flight requests.

    Only the router step: Apache is not touched. Refuses when too few other
    servers are UP. Undo with `wsgi-drain undrain`. Exit 0, or 4 on a router error.
    """
    from wsgi_drain.divert import drain as run_drain

    as_json = kwargs.pop("as_json")
    extra = {
        "drain_timeout": kwargs.pop("drain_timeout"),
        "min_peers": kwargs.pop("min_peers"),
        "peer_wait": kwargs.pop("peer_wait"),
    }
    result = run_drain(_settings(kwargs, extra), report.ProgressPrinter())
    _print_divert(result, as_json)


@cli.command(context_settings=CONTEXT)
@group_options
@click.option(
    "--wait-ready",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="First wait up to SECONDS until the group has all its processes and the health URL "
    "answers 2xx; if not, restore nothing and exit 6. For after an Apache reload "
    "(scripts/certbot-deploy-hook).",
)
@handles_errors
def undrain(**kwargs: Any) -> None:
    """Put this host's backend back in rotation; repairs an interrupted restart.

    Restores exactly the routers given (or configured); with none, every
    router a left-behind run journal names. The journal forgets what was put
    back and is removed once it names nothing else. Exit 0, 4 on a router error,
    6 when --wait-ready ran out before the group was ready.

    \b
    After an Apache reload (which restarts every daemon group abruptly):
      wsgi-drain drain --group myapp
      apache2ctl graceful
      wsgi-drain undrain --group myapp --wait-ready 60
    """
    from wsgi_drain.divert import undrain as run_undrain

    as_json = kwargs.pop("as_json")
    wait_ready = kwargs.pop("wait_ready")
    result = run_undrain(_settings(kwargs, {}), report.ProgressPrinter(), wait_ready)
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


@cli.command(context_settings=CONTEXT, cls=NagiosCommand)
@group_options
@click.option(
    "-t",
    "--timeout",
    "check_timeout",
    type=click.FloatRange(min=1),
    default=30.0,
    show_default=True,
    help="Seconds the whole check may take; past them it says UNKNOWN and exits 3 "
    "(Nagios plugin guidelines).",
)
@click.option(
    "--health-warn",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="WARNING when the health URL takes longer than this many seconds.",
)
@click.option("--rss-warn", type=click.IntRange(min=1), help="WARNING above this RSS (MiB).")
@click.option(
    "--age-warn", type=click.FloatRange(min=0), help="WARNING for a process older than this (s)."
)
@click.option(
    "--log-window",
    type=click.FloatRange(min=0),
    default=600.0,
    show_default=True,
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
              timeout recently, configuration traps, --rss-warn/--age-warn.

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
            result = run_check(_settings(kwargs, {}, {"textfile": textfile}), thresholds)
    except Exception as err:  # a DrainError, a timeout, or a bug: monitoring must see UNKNOWN
        if isinstance(err, privilege.SudoRefused):
            textfile = None  # the refused file is not written, not even with UNKNOWN
        if not isinstance(err, (DrainError, _CheckTimeout)):
            traceback.print_exception(err, file=sys.stderr)
        unknown = CheckResult(group)
        unknown.add(NagiosStatus.UNKNOWN, str(err))
        _write_textfile(textfile, unknown)
        line = f"WSGI-DRAIN UNKNOWN - {group}: {err}"
        if as_json:
            report.print_json(
                {"schema": report.CHECK_SCHEMA, "group": group, "status": "UNKNOWN",
                 "exit_status": 3, "summary": line}
            )  # fmt: skip
        else:
            click.echo(line)
        sys.exit(int(NagiosStatus.UNKNOWN))
    _write_textfile(textfile, result)
    if as_json:
        report.print_json(report.check_dict(result, thresholds))
    else:
        report.print_check(result, thresholds)
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


def _write_textfile(path: Path | None, result: Any) -> None:
    """Rewrite the metrics file; a failure is the check's UNKNOWN, never a traceback."""
    if path is None:
        return
    from wsgi_drain.state import write_atomic
    from wsgi_drain.status import NagiosStatus

    try:
        write_atomic(path, report.prometheus_text(result))
    except OSError as err:
        click.echo(
            f"WSGI-DRAIN UNKNOWN - {result.group}: cannot write --textfile {path}: "
            f"{err.strerror or err} (does the directory exist, and may this user write it?)"
        )
        sys.exit(int(NagiosStatus.UNKNOWN))


@cli.command(context_settings=CONTEXT)
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
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="WSGI_DRAIN_STATE_DIR",
    help="Where locks and run journals live [default: /run/wsgi-drain].",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
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


def main() -> None:
    """Entry point. `check` reports bad usage as UNKNOWN (3), as Nagios expects."""
    try:
        cli.main(prog_name="wsgi-drain", standalone_mode=False)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.ClickException as err:
        err.show()
        is_check = len(sys.argv) > 1 and sys.argv[1] == "check"
        sys.exit(int(NagiosStatus.UNKNOWN) if is_check else err.exit_code)
    except (click.Abort, KeyboardInterrupt):
        click.echo("Aborted!", err=True)
        sys.exit(int(ExitStatus.INTERRUPTED))


# Keep ExitStatus importable from here for scripts that map codes.
__all__ = ["ExitStatus", "cli", "main"]
