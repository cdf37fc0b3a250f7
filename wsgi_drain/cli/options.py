"""Options shared by several commands, each declared once with its help.

One decorator per family: the group and its Apache, routers, health probe and
state (`group_options`), the router-step options of `restart` and `drain`
(`divert_options`), and the output/state options `status` shares
(`JSON_OPTION`, `state_dir_option`). Also the settings every per-group command
resolves and the DrainError-to-exit-status wrapper.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from wsgi_drain import config, report
from wsgi_drain.cli.resolve import instance_settings as instance_settings
from wsgi_drain.cli.resolve import settings as settings
from wsgi_drain.errors import ConfigError, DrainError

F = TypeVar("F", bound=Callable[..., Any])

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class _MinPeers(click.ParamType):  # type: ignore[type-arg]
    """--min-peers: a whole number 0 or more, or "all"."""

    name = "N|all"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int):
            return value
        from wsgi_drain import peers

        try:
            return peers.parse(value)
        except ConfigError:
            self.fail(f"{value!r} is not a whole number (0 or more) or 'all'", param, ctx)


MIN_PEERS = _MinPeers()


def seconds_option(
    *decls: str,
    help: str,
    minimum: float = 0,
    above: bool = False,
    default: float | None = None,
    **attrs: Any,
) -> Callable[[F], F]:
    """An option that is a duration: float seconds, at least `minimum` (more than it with
    `above`), shown as SECONDS; a `default` given here is shown in the help."""
    return click.option(
        *decls,
        type=click.FloatRange(min=minimum, min_open=above),
        metavar="SECONDS",
        default=default,
        show_default=default is not None,
        help=help,
        **attrs,
    )


JSON_OPTION = click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object on stdout."
)
QUIET_OPTION = click.option("--quiet", "-q", is_flag=True, help="No progress lines on stderr.")


# Declared once for `group_options` and the host's `host_options`.
APACHE_CONFIG_OPTION = click.option(
    "--apache-config",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="WSGI_DRAIN_APACHE_CONFIG",
    help="Apache's main configuration file; its PidFile names the instance.",
)
APACHE_PIDFILE_OPTION = click.option(
    "--apache-pidfile",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="WSGI_DRAIN_APACHE_PIDFILE",
    help="Pid file of the Apache parent [default: the one Apache parent running].",
)
HAPROXY_OPTION = click.option(
    "--haproxy",
    multiple=True,
    metavar="SOCKET:BACKEND/SERVER",
    envvar="WSGI_DRAIN_HAPROXY",
    help="HAProxy admin socket and this host's server in it, e.g. "
    "/run/haproxy/admin.sock:be_app/web1 (repeat for several HAProxy instances).",
)
LB_DETECT_OPTION = seconds_option(
    "--lb-detect",
    help="For a health-file router: how long the load balancer takes to stop "
    "sending once the health URL fails (check interval x unhealthy threshold + "
    "deregistration delay).",
)


def config_option(help: str) -> Callable[[F], F]:
    """--config, the wsgi-drain TOML file; `help` says what the command reads in it."""
    return click.option(
        "--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), help=help
    )


def router_option(help: str) -> Callable[[F], F]:
    """--router KIND:SPEC, repeatable; `help` says what it replaces for the command."""
    return click.option("--router", "routers", multiple=True, metavar="KIND:SPEC", help=help)


def state_dir_option(*, readable: bool = True) -> Callable[[F], F]:
    """--state-dir; `readable=False` leaves an unreadable directory to the command to report."""
    return click.option(
        "--state-dir",
        type=click.Path(file_okay=False, readable=readable, path_type=Path),
        envvar="WSGI_DRAIN_STATE_DIR",
        help="Where locks and run journals live [default: /run/wsgi-drain].",
    )


def _apply(f: F, options: list[Callable[[F], F]]) -> F:
    # click lists options in decorator order: apply the last first.
    for option in reversed(options):
        f = option(f)
    return f


def group_options(f: F) -> F:
    """Options every per-group command shares: the group, its Apache, routers, state."""
    return _apply(
        f,
        [
            click.option(
                "--group",
                "-g",
                required=True,
                envvar="WSGI_DRAIN_GROUP",
                help="Name of the WSGIDaemonProcess group (as in the Apache configuration; "
                "mod_wsgi-express names it HOST:PORT, or NAME with --process-group NAME).",
            ),
            config_option(
                "wsgi-drain TOML file [default: $WSGI_DRAIN_CONFIG or /etc/wsgi-drain.toml]."
            ),
            APACHE_CONFIG_OPTION,
            APACHE_PIDFILE_OPTION,
            HAPROXY_OPTION,
            router_option(
                "A front-end router of this host (repeat; kinds mix): "
                "haproxy:SOCKET:BACKEND/SERVER (SOCKET a path or ipv4@HOST:PORT), "
                "nginx:[pid=PIDFILE:]UPSTREAM_FILE:HOST:PORT (marks that server line down, "
                "nginx -t, reload), health-file:PATH (its presence fails the health URL; "
                "with --lb-detect), "
                "command:'PROGRAM ARGS' (runs PROGRAM ARGS divert|restore|state, no shell). "
                "--haproxy S is short for --router haproxy:S."
            ),
            click.option(
                "--health-url",
                envvar="WSGI_DRAIN_HEALTH_URL",
                help="URL on Apache itself (not the router) that answers 2xx when the app is "
                "healthy.",
            ),
            seconds_option(
                "--health-timeout",
                minimum=0.1,
                envvar="WSGI_DRAIN_HEALTH_TIMEOUT",
                help="Seconds one health probe may take [default: 5].",
            ),
            LB_DETECT_OPTION,
            click.option(
                "--ack-trap",
                "ack_traps",
                multiple=True,
                metavar="KEY",
                help="Acknowledge a configuration trap chosen on purpose (its key is in the "
                "warning, e.g. script-reloading): a note instead of a WARNING; repeat for "
                "several.",
            ),
            click.option(
                "--health-host",
                metavar="NAME",
                envvar="WSGI_DRAIN_HEALTH_HOST",
                help="Host header for the health probe (and TLS server name for https), for an "
                "app on a name-based virtual host; the probe still connects to --health-url's "
                "address.",
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
            # Not checked for readability here: `check` as the monitoring user
            # reports an unreadable state directory as UNKNOWN, by name.
            state_dir_option(readable=False),
            JSON_OPTION,
        ],
    )


def several_group_options(f: F) -> F:
    """`group_options` for `restart`: --group repeatable, --all-groups, --health-url NAME=URL.

    The shared --group and --health-url are replaced by their several-group
    forms (same names, same environment variables), so the other commands'
    stay exactly as they are.
    """
    f = group_options(f)
    several = {
        # No envvar here: click would split WSGI_DRAIN_GROUP on blanks; it
        # names one group, read whole by cli/several.py when --group is absent.
        "group": click.Option(
            ["--group", "-g"],
            multiple=True,
            help="Name of the WSGIDaemonProcess group (as in the Apache configuration); repeat "
            "for several groups of this host in one run (diverted once, restored once).",
        ),
        "health_url": click.Option(
            ["--health-url"],
            multiple=True,
            envvar="WSGI_DRAIN_HEALTH_URL",
            metavar="URL|GROUP=URL",
            help="URL on Apache itself (not the router) that answers 2xx when the app is "
            "healthy; with several groups, GROUP=URL for each (repeat).",
        ),
    }
    params = f.__click_params__  # type: ignore[attr-defined]
    params[:] = [several.get(p.name, p) for p in params]
    # click shows them in reverse order of this list: just before --group is just after it.
    at = next(i for i, p in enumerate(params) if p.name == "group")
    params.insert(
        at,
        click.Option(
            ["--all-groups"],
            is_flag=True,
            help="Restart every WSGIDaemonProcess group of the Apache instance in one run.",
        ),
    )
    return f


def divert_options(f: F) -> F:
    """The router step's options, shared by `restart` and `drain`."""
    return _apply(
        f,
        [
            seconds_option(
                "--drain-timeout",
                help="Seconds to wait for the router's in-flight requests to finish [default: 30].",
            ),
            click.option(
                "--min-peers",
                type=MIN_PEERS,
                help="Divert only if at least this many other servers are UP ('all': every "
                "other server the router sees, so never two hosts out; refused with a router "
                "that cannot name the servers out); with fewer, drain refuses and restart "
                "restarts in place (see --if-few-peers) [default: 1].",
            ),
            seconds_option(
                "--peer-wait",
                help="When too few other servers are UP, or another host went out at the same "
                "moment, wait this long for them before deciding (a rollout in parallel: hosts "
                "take turns) [default: 0, decide at once].",
            ),
        ],
    )


def divert_settings(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Pop `divert_options`' values from `kwargs`, as settings."""
    return {name: kwargs.pop(name) for name in ("drain_timeout", "min_peers", "peer_wait")}


def divert_run_settings(
    kwargs: dict[str, Any], extra: dict[str, Any], guarded: dict[str, Any] | None = None
) -> config.Settings:
    """`settings` for a command that diverts (`restart`, `drain`): with `divert_options`' values,
    and a health-file router's --lb-detect required before discovery."""
    resolved = settings(kwargs, {**extra, **divert_settings(kwargs)}, guarded)
    require_lb_detect(resolved)
    return resolved


def require_lb_detect(resolved: config.Settings) -> None:
    """Before discovery: a health-file router that will divert needs --lb-detect (exit 2).

    Found only at the divert step, it would come after discovery and its
    warnings, as if the run had started.
    """
    if resolved.mode == "rolling" or resolved.lb_detect is not None:
        return
    from wsgi_drain import routers

    for spec in routers.specs(resolved.haproxy, resolved.routers):
        if routers.parse_spec(spec)[0] == "health-file":
            raise ConfigError(
                f"router {spec}: give --lb-detect SECONDS (the load balancer's check interval "
                "x unhealthy threshold + its deregistration delay): how long it takes to stop "
                "sending to this host once the health URL fails"
            )


def _fail(err: DrainError, as_json: bool) -> None:
    # Once, on stdout, as the verdict a successful run prints there (issue 22:
    # not on both streams); with --json the JSON carries it.
    if as_json:
        report.print_json(report.error_dict(err.status.name.lower(), int(err.status), str(err)))
    else:
        click.echo(f"wsgi-drain: {err.status.name} - {err}")
    sys.exit(int(err.status))


def handles_errors(f: F) -> F:
    """Turn DrainError into one verdict line on stdout (JSON with --json) and its exit status."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        as_json = bool(kwargs.get("as_json"))
        try:
            return f(*args, **kwargs)
        except DrainError as err:
            _fail(err, as_json)

    return wrapper  # type: ignore[return-value]
