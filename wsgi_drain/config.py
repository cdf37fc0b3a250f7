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
    mode = "drain"
    timeout = 60

Top-level keys are defaults for every group; a group's table overrides them.
Unknown keys are an error, so a typo never silently drops a safety setting.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from wsgi_drain.errors import ConfigError
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
    mode: str = "drain"
    signal: str = "SIGUSR1"
    timeout: float | None = None
    drain_timeout: float = 30.0
    min_peers: int = 1
    state_dir: Path = DEFAULT_STATE_DIR


_PATHS = {"apache_config", "apache_pidfile", "state_dir"}
_FLOATS = {"timeout", "drain_timeout", "health_timeout"}
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
    try:
        with path.open("rb") as source:
            return tomllib.load(source)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: invalid TOML: {err}") from err
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror}") from err


def groups_in(data: Mapping[str, Any]) -> list[str]:
    groups = data.get("groups", {})
    return sorted(groups) if isinstance(groups, dict) else []


def resolve(group: str, given: Mapping[str, Any], data: Mapping[str, Any], source: str) -> Settings:
    """Merge: `given` (command line and environment, None = not given) over the file."""
    top = {k: v for k, v in data.items() if k != "groups"}
    groups = data.get("groups", {})
    if not isinstance(groups, dict):
        raise ConfigError(f"{source}: [groups] must be a table of group tables")
    table = groups.get(group, {})
    merged: dict[str, Any] = {}
    for where, layer in ((source, top), (f"{source} [groups.{group}]", table)):
        unknown = set(layer) - _KEYS
        if unknown:
            raise ConfigError(
                f"{where}: unknown setting(s) {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sorted(_KEYS))}"
            )
        merged.update(layer)
    for key, value in given.items():
        if value is not None and value != ():
            merged[key] = value
    return Settings(group=group, **{k: _coerce(k, v, source) for k, v in merged.items()})


def _coerce(key: str, value: Any, source: str) -> Any:
    try:
        if key in _PATHS:
            return Path(value)
        if key in _FLOATS:
            return float(value)
        if key == "min_peers":
            return int(value)
        if key in ("haproxy", "routers"):
            return (value,) if isinstance(value, str) else tuple(str(v) for v in value)
        return str(value)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{source}: bad value for {key}: {value!r}") from err
