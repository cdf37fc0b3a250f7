"""wsgi-drain's own settings: command line > WSGI_DRAIN_* environment > TOML file.

The TOML file (/etc/wsgi-drain.toml, or --config / WSGI_DRAIN_CONFIG) names,
for each group, its Apache instance, routers and health URL, so that a bare
`wsgi-drain restart --group myapp` works:

    state_dir = "/run/wsgi-drain"          # optional, top-level defaults

    [groups.myapp]
    apache_pidfile = "/run/apache2/apache2.pid"
    haproxy = ["/run/haproxy/admin.sock:be_app/web1"]
    routers = ["command:/usr/local/sbin/lb-hook web1"]   # any kind, "KIND:SPEC"
    health_url = "http://127.0.0.1:8080/health"
    health_host = "myapp.example.com"      # Host header / SNI for a name-based vhost
    mode = "drain"
    timeout = 60
    leftovers = "stop"                     # end what the old daemons left running

Top-level keys are defaults for every group; a group's table overrides them.
Routers given on the command line (``--router``, ``--haproxy``) replace the
file's routers of every kind, as any option replaces its key.
Every key is checked (unknown key, wrong type, a mode or signal that does not
exist, a timeout out of range, a `[groups.X]` table that looks like a typo of
the group asked for): a typo is an error naming the key and the file, never a
silent fall back that drops a safety setting.  Read as root, the file must
not be writable by anyone but root.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from wsgi_drain.errors import ConfigError, UsageError
from wsgi_drain.state import DEFAULT_STATE_DIR

DEFAULT_CONFIG = Path("/etc/wsgi-drain.toml")


@dataclass(frozen=True)
class Settings:
    """Everything a command needs to know about one group, resolved."""

    group: str
    apache_config: Path | None = None
    apache_pidfile: Path | None = None
    haproxy: tuple[str, ...] = ()
    routers: tuple[str, ...] = ()
    health_url: str | None = None
    health_timeout: float = 5.0
    health_host: str | None = None
    health_ca: Path | None = None
    health_insecure: bool = False
    ack_traps: tuple[str, ...] = ()
    lb_detect: float | None = None
    mode: str = "drain"
    signal: str = "SIGUSR1"
    timeout: float | None = None
    drain_timeout: float = 30.0
    # A count, or "all" (every other server the router sees UP): peers.py.
    min_peers: int | str = 1
    # How long to wait for peers to come back UP before refusing; 0: decide at once.
    peer_wait: float = 0.0
    # Fewer than min_peers other servers UP: "rolling" restarts in place,
    # "refuse" exits 4 without touching anything (a fleet rollout's choice).
    few_peers: str = "rolling"
    # After the restore, how long to wait for the router to see the server UP.
    lb_up_timeout: float = 30.0
    # --rollback: the deploy's way back (argv), run once when the new code is known bad.
    rollback: tuple[str, ...] = ()
    rollback_timeout: float = 60.0
    state_dir: Path = DEFAULT_STATE_DIR
    # restart: the last run as Prometheus metrics (node_exporter textfile collector).
    textfile: Path | None = None
    # What the old daemons left running: "report" names it, "stop" ends it.
    leftovers: str = "report"


_PATHS = {"apache_config", "apache_pidfile", "state_dir", "health_ca", "textfile"}
# Lowest accepted value of each number (the command line's ranges).
_FLOATS = {
    "timeout": 0.0,
    "drain_timeout": 0.0,
    "health_timeout": 0.1,
    "lb_detect": 0.0,
    "lb_up_timeout": 0.0,
    "peer_wait": 0.0,
    "rollback_timeout": 0.0,
}
_STRINGS = {"health_url", "health_host", "mode", "signal", "few_peers", "leftovers"}
_BOOLS = {"health_insecure"}
_LISTS = {"haproxy", "routers", "ack_traps"}
# --haproxy S is --router haproxy:S: one setting, the routers, in two keys.
_ROUTER_KEYS = ("haproxy", "routers")
MODES = ("drain", "rolling")
FEW_PEERS = ("rolling", "refuse")
LEFTOVERS = ("report", "stop")
_KEYS = {f.name for f in fields(Settings)} - {"group"}


def config_path(explicit: Path | None) -> Path | None:
    """The TOML file to read: --config, WSGI_DRAIN_CONFIG, or /etc/wsgi-drain.toml if present."""
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"configuration file {explicit} does not exist")
        return explicit
    env = os.environ.get("WSGI_DRAIN_CONFIG")
    if env:
        path = Path(env)
        if not path.is_file():
            raise ConfigError(f"WSGI_DRAIN_CONFIG names {path}, which does not exist")
        return path
    return DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None


def read_file(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    if os.geteuid() == 0:
        check_owner(path)
    try:
        from wsgi_drain._compat import tomllib  # only when there is a file

        with path.open("rb") as source:
            return tomllib.load(source)
    except ValueError as err:  # tomllib.TOMLDecodeError
        raise ConfigError(f"{path}: invalid TOML: {err}") from err
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror}") from err


def check_owner(path: Path) -> None:
    """As root, refuse a file (or its directory) that another user could have written.

    The file names what root signals and which routers it drives.  The
    resolved target is checked: /etc files may be symlinks (alternatives).
    """
    target = path.resolve()
    try:
        info = os.stat(target)
        parent = os.stat(target.parent)
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror}") from err
    if info.st_uid != 0:
        raise ConfigError(
            f"{path} is owned by uid {info.st_uid}, not root, and wsgi-drain runs as root: "
            f"`chown root: {target}`"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(
            f"{path} is writable by others (mode {stat.S_IMODE(info.st_mode):o}) and wsgi-drain "
            f"runs as root: `chmod go-w {target}`"
        )
    if parent.st_mode & stat.S_IWOTH and not parent.st_mode & stat.S_ISVTX:
        raise ConfigError(
            f"{target.parent} (holding {path}) is writable by everyone: anyone could replace "
            "the file; keep the configuration in a root-only directory such as /etc"
        )


def groups_in(data: Mapping[str, Any]) -> list[str]:
    groups = data.get("groups", {})
    return sorted(groups) if isinstance(groups, dict) else []


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def table_name(group: str) -> str:
    """`groups.NAME` as TOML spells it: quoted when NAME is not a bare key (mod_wsgi-express's
    `127.0.0.1:8000`, a name with '.'), so that it can be pasted into the file."""
    if _BARE_KEY.fullmatch(group):
        return f"groups.{group}"
    import json  # a quoted TOML key is a JSON string

    return "groups." + json.dumps(group)


def resolve(
    group: str,
    given: Mapping[str, Any],
    data: Mapping[str, Any],
    source: str,
    apache_defines: Callable[[Settings], bool] | None = None,
) -> Settings:
    """Merge: `given` (command line and environment, None = not given) over the file.

    A group with no table of its own whose name is close to a table's is
    flagged as a typo only when `apache_defines(settings)` says Apache does
    not define it either (None: it is not asked, so flagged): a second app
    on the host that the file does not name must just work.
    """
    top = {k: v for k, v in data.items() if k != "groups"}
    groups = data.get("groups", {})
    if not isinstance(groups, dict):
        raise ConfigError(f"{source}: [groups] must be a table of group tables")
    near: list[str] = []
    if group not in groups and groups:
        import difflib  # only when the file has tables, none of them this group's

        near = difflib.get_close_matches(group, [str(g) for g in groups], n=1, cutoff=0.75)
    table = groups.get(group, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: [{table_name(group)}] must be a table")
    merged: dict[str, Any] = {}
    for where, layer in ((source, top), (f"{source} [{table_name(group)}]", table)):
        unknown = set(layer) - _KEYS
        if unknown:
            # A top-level [group."x"] is a misspelt [groups."x"]: say so.
            import difflib

            allowed = _KEYS | ({"groups"} if layer is top else set())
            hints = [
                f"{key!r}: did you mean {close[0]}?"
                for key in sorted(unknown)
                if (close := difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.75))
            ]
            raise ConfigError(
                f"{where}: unknown setting(s) {', '.join(sorted(unknown))}"
                + (f" ({'; '.join(hints)})" if hints else "")
                + f"; known: {', '.join(sorted(_KEYS))}"
            )
        merged.update(layer)
    values = {k: _check(k, v, source) for k, v in merged.items()}
    if any(given.get(key) for key in _ROUTER_KEYS):
        # Routers given replace the file's, of every kind (--router command:...
        # replaces the file's haproxy = [...] too): driving both would divert
        # a server the operator did not name.
        for key in _ROUTER_KEYS:
            values.pop(key, None)
    for key, value in given.items():
        if value is not None and value != ():
            values[key] = value
    settings = Settings(group=group, **values)
    if near and (apache_defines is None or not apache_defines(settings)):
        raise ConfigError(
            f"{source}: no [{table_name(group)}] table and Apache defines no group {group!r}, "
            f"but there is [{table_name(near[0])}]: a typo? Rename the table (or pass --group "
            f"{near[0]})"
        )
    return settings


def _check(key: str, value: Any, source: str) -> Any:
    """One value from the file, type- and range-checked; ConfigError naming key and file."""

    def bad(expected: str) -> ConfigError:
        return ConfigError(f"{source}: {key} = {value!r}: expected {expected}")

    if key in _PATHS:
        if not isinstance(value, str) or not value:
            raise bad("a path (a string)")
        return Path(value)
    if key in _FLOATS:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number of seconds")
        if value < _FLOATS[key] or (key in ("timeout", "rollback_timeout") and value <= 0):
            low = _FLOATS[key]
            raise bad(f"a number of seconds {'above 0' if not low else f'of at least {low:g}'}")
        return float(value)
    if key == "rollback":
        from wsgi_drain.program import parse_argv

        if not isinstance(value, (str, list)):
            raise bad("a list of words, the program first (or one string)")
        return parse_argv(value, f"{source}: rollback")
    if key == "min_peers":
        try:
            from wsgi_drain import peers

            return peers.parse(value)
        except ConfigError:
            raise bad('a whole number, 0 or more, or "all"') from None
    if key in _BOOLS:
        if not isinstance(value, bool):
            raise bad("true or false (a TOML boolean, not a string)")
        return value
    if key in _LISTS:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(v, str) and v for v in items):
            raise bad("a string or a list of strings")
        if key == "ack_traps":
            from wsgi_drain.traps import check_keys

            try:
                check_keys(items)
            except ConfigError as err:
                raise ConfigError(f"{source}: ack_traps: {err}") from err
        return tuple(items)
    if not isinstance(value, str):
        raise bad("a string")
    if key == "mode" and value not in MODES:
        raise bad(" or ".join(repr(m) for m in MODES) + " (lower case)")
    if key == "few_peers" and value not in FEW_PEERS:
        raise bad(" or ".join(repr(m) for m in FEW_PEERS) + " (lower case)")
    if key == "leftovers" and value not in LEFTOVERS:
        raise bad(" or ".join(repr(m) for m in LEFTOVERS) + " (lower case)")
    if key == "signal":
        from wsgi_drain.signals import parse_signal

        try:
            parse_signal(value)
        except UsageError as err:
            raise ConfigError(f"{source}: signal = {value!r}: {err}") from err
    return value


def health_urls_by_group(values: Sequence[str], groups: Sequence[str]) -> dict[str, str]:
    """`--health-url` values for a run over `groups`: NAME=URL each, or one plain URL for one group.

    A value starting with a URL scheme is a plain URL (a URL's query may hold
    '='); anything else with '=' is NAME=URL.  A plain URL with several
    groups would be probed for every group, proving only one: a UsageError
    with the fix.  Groups not named keep their [groups.NAME] health_url.
    """
    found: dict[str, str] = {}
    for value in values:
        name, sep, url = value.partition("=")
        if value.startswith(("http://", "https://")) or not sep:
            if len(groups) != 1:
                raise UsageError(
                    f"--health-url {value}: a plain URL is for a run of one group; with several, "
                    "name each group's: "
                    + " ".join(f"--health-url {g}=URL" for g in groups)
                    + " (or health_url in each [groups.NAME] table)"
                )
            name, url = groups[0], value
        elif name not in groups:
            raise UsageError(
                f"--health-url {value}: {name!r} is not a group of this run "
                f"({', '.join(groups)}); write --health-url GROUP=URL"
            )
        if name in found:
            raise UsageError(f"--health-url given twice for group {name!r}: give it once")
        found[name] = url
    return found


def one_host(each: Sequence[Settings]) -> list[Settings]:
    """The settings of a run over several groups of one host: every group's routers, for each.

    The host leaves rotation once for the whole run, so each group's run
    knows every router any of the groups names (first seen first); the
    routers' own settings (drain timeout, peers, state directory) are the
    first group's: one divert has one set of them.
    """
    from wsgi_drain.routers import specs

    routers: list[str] = []
    for s in each:
        routers += [spec for spec in specs(s.haproxy, s.routers) if spec not in routers]
    first = each[0]
    shared = {
        name: getattr(first, name)
        for name in ("drain_timeout", "min_peers", "peer_wait", "few_peers", "lb_up_timeout")
    }
    return [
        replace(s, haproxy=(), routers=tuple(routers), state_dir=first.state_dir, **shared)
        for s in each
    ]
