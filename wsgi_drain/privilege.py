"""Never hand out root: what a caller may not choose when sudo made us root.

A sudoers rule such as ``nagios ALL=(root) NOPASSWD: wsgi-drain check *``
lets the caller pass any option to a root process.  Options that run a
program (``--router command:``, ``--py-spy``, ``--rollback``), write a file (``--textfile``),
or make root open a path or a socket the caller chose (``--apache-pidfile``,
``--apache-config``, ``--config``, ``--state-dir``, ``--health-ca``, every
``--router``/``--haproxy``) would then run programs as root, write root-owned
files anywhere, or read root-only files.  So under sudo (euid 0 with
SUDO_UID or SUDO_USER set: sudo's own marks) they are refused, whether they
came from the command line or a WSGI_DRAIN_* variable; the same settings in
root's own configuration file are root's choice and stand.  A run by root
itself (no sudo marks) is root's choice too.

The monitoring user should run `check` unprivileged (README); where root is
really needed, a sudoers line with fixed arguments leaves it nothing to choose.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

from wsgi_drain.errors import ConfigError

# Option name -> the words of the refusal, for every caller-chosen value that
# makes root run, write, open or connect to something.
GUARDED = {
    "config_file": "--config",
    "apache_config": "--apache-config",
    "apache_pidfile": "--apache-pidfile",
    "state_dir": "--state-dir",
    "health_ca": "--health-ca",
    "haproxy": "--haproxy",
    "routers": "--router",
    "textfile": "--textfile",
    "py_spy": "--py-spy",
    "rollback": "--rollback",
}
# The variables click reads for some of them (sudo may keep them: env_keep, SETENV).
_ENV = {
    "apache_config": "WSGI_DRAIN_APACHE_CONFIG",
    "apache_pidfile": "WSGI_DRAIN_APACHE_PIDFILE",
    "state_dir": "WSGI_DRAIN_STATE_DIR",
    "health_ca": "WSGI_DRAIN_HEALTH_CA",
    "haproxy": "WSGI_DRAIN_HAPROXY",
}


class SudoRefused(ConfigError):
    """An option a sudo caller may not choose (exit 2, UNKNOWN for `check`)."""


def sudo_caller() -> str | None:
    """The user who ran us through sudo ("nagios", or "uid 1001"), None when not under sudo."""
    if os.geteuid() != 0:
        return None
    user = os.environ.get("SUDO_USER")
    uid = os.environ.get("SUDO_UID")
    if not user and not uid:
        return None
    return user or f"uid {uid}"


def refuse_under_sudo(given: Mapping[str, object]) -> None:
    """Raise SudoRefused for the first guarded option the sudo caller gave (module docstring).

    `given` maps option names (as in GUARDED) to the values the command line
    and environment gave (None or empty: not given).  Nothing is refused when
    not running as root through sudo.  WSGI_DRAIN_CONFIG is checked here too.
    """
    caller = sudo_caller()
    if caller is None:
        return
    chosen = dict(given)
    env_config = os.environ.get("WSGI_DRAIN_CONFIG")
    if env_config and not chosen.get("config_file"):
        chosen["config_file"] = Path(env_config)
    for key, option in GUARDED.items():
        value = chosen.get(key)
        if value is None or value == () or value == "":
            continue
        if key == "config_file" and isinstance(value, Path) and root_owned_toml(value):
            continue  # root's own file: what it says is root's choice
        via = f"{option} (or {_ENV[key]})" if key in _ENV else option
        raise SudoRefused(
            f"{via} is refused when run as root through sudo (by {caller}): it would let "
            f"the caller make root run, write or read what it names. Name it in root's "
            "configuration file (/etc/wsgi-drain.toml) instead, run the check as this user "
            "without sudo, or give sudoers a line with fixed arguments (README, "
            "'As the monitoring user')"
        )


def root_owned_toml(path: Path) -> bool:
    """Whether `path` is a .toml file that only root can have written (itself and its directory)."""
    if path.suffix != ".toml":
        return False
    try:
        target = path.resolve(strict=True)
        info = target.stat()
        parent = target.parent.stat()
    except OSError:
        return False
    writable = stat.S_IWGRP | stat.S_IWOTH
    return (
        stat.S_ISREG(info.st_mode)
        and info.st_uid == 0
        and not info.st_mode & writable
        and parent.st_uid == 0
        and not parent.st_mode & writable
    )
