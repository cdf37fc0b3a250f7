"""What `parse_config` returns: frozen dataclasses, and mod_wsgi's defaults they fall back to.

Nothing here reads a file: this is the model the rest of the package fills
in, and what every other module of wsgi-drain sees of an Apache configuration.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from wsgi_drain.errors import GroupNotFoundError

# mod_wsgi's defaults (wsgi_daemon.c, 4.9 and 6.x alike).
DEFAULT_PROCESSES = 1
DEFAULT_THREADS = 15
DEFAULT_GRACEFUL_TIMEOUT = 15.0
DEFAULT_SHUTDOWN_TIMEOUT = 5.0
DEFAULT_LOG_LEVEL = "warn"

# The names `LogLevel` accepts for mod_wsgi: its source file name and its
# module symbol, with or without `_module` (core.c update_loglevel).  httpd
# itself rejects "mod_wsgi"; it is accepted here because people write it.
WSGI_MODULE_NAMES = frozenset({"wsgi", "wsgi_module", "mod_wsgi.c", "mod_wsgi"})


class HttpdFacts(Protocol):
    """What only the httpd binary itself knows (`httpd -l`, `httpd -v`).

    Either may answer None when it cannot be learned; the reader then treats
    the conditions that need it as undecidable.
    """

    def static_modules(self) -> frozenset[str] | None:
        """Source names of the compiled-in modules, e.g. {"core.c", "mod_so.c"}."""
        ...

    def version(self) -> tuple[int, int, int] | None:
        """(major, minor, patch) of the binary, e.g. (2, 4, 71)."""
        ...


@dataclass(frozen=True)
class DaemonGroup:
    """One `WSGIDaemonProcess` directive, with the log settings in effect where it stands.

    `id` is the group's 1-based ordinal among all WSGIDaemonProcess directives
    in the order httpd reads them; mod_wsgi names the group's listening socket
    `<WSGISocketPrefix>.<parent-pid>.<generation>.<id>.sock` with it.
    `options` holds every `key=value` option as written, values unquoted; a
    bare word (which mod_wsgi itself refuses) maps to "".  Timeouts are None
    unless given explicitly.  `error_log` is None when the log goes to a pipe
    or syslog.  `script_reloading` is WSGIScriptReloading of the group's
    <VirtualHost>, else of the main server.  `inputs` are the files and
    directories read before this directive (their contents and listings decide
    its position); `uncertain` is why its position cannot be known from the
    text (see the package docstring), None when it can.  `preloaded` is whether
    a script is loaded as each process starts (see `Reader._preload`).
    """

    name: str
    id: int
    options: Mapping[str, str] = field(hash=False)
    processes: int
    threads: int
    display_name: str | None
    graceful_timeout: float | None
    eviction_timeout: float | None
    shutdown_timeout: float | None
    error_log: Path | None
    log_level: str
    source: str
    script_reloading: bool = True
    # A script is loaded into the group as each daemon starts; False: each
    # process loads it on its first request (mod_wsgi's default).
    preloaded: bool = False
    inputs: tuple[Path, ...] = field(default=(), hash=False, compare=False, repr=False)
    uncertain: str | None = None

    @property
    def title(self) -> str | None:
        """The process title display-name gives: "%{GROUP}" -> "(wsgi:NAME)", else as written."""
        if self.display_name is None:
            return None
        if self.display_name == "%{GROUP}":
            return f"(wsgi:{self.name})"
        return self.display_name

    @property
    def drain_window(self) -> float:
        """Seconds a SIGUSR1'd process may keep serving before forced shutdown.

        mod_wsgi uses eviction-timeout for a signalled restart when it is set
        (non-zero), else graceful-timeout, whose default is 15 s.
        """
        if self.eviction_timeout is not None and self.eviction_timeout > 0:
            return self.eviction_timeout
        if self.graceful_timeout is not None:
            return self.graceful_timeout
        return DEFAULT_GRACEFUL_TIMEOUT

    @property
    def shutdown_window(self) -> float:
        """Seconds of forced shutdown before the process aborts (default 5 s)."""
        if self.shutdown_timeout is not None:
            return self.shutdown_timeout
        return DEFAULT_SHUTDOWN_TIMEOUT

    @property
    def wsgi_log_level(self) -> str:
        """The level mod_wsgi logs at here: its own `wsgi:LEVEL` if given, else the global one."""
        return effective_module_level(self.log_level, WSGI_MODULE_NAMES)


@dataclass(frozen=True)
class ApacheConfig:
    """The parts of one Apache configuration wsgi-drain relies on.

    Paths are resolved as httpd resolves them; `socket_prefix` is None when
    WSGISocketPrefix is not set (mod_wsgi then uses a build-time default under
    ServerRoot), `pid_file` None when PidFile is not set (httpd then uses its
    build-time DEFAULT_PIDLOG, `/run/apache2.pid` on Debian).  `error_log` is
    the main server's (ServerRoot/logs/error_log when unset), None when piped
    or syslog.  `listen` holds each Listen directive's arguments as written,
    joined by one space.  `files` lists every file read, each once, in the order
    first read; `inputs` every file and directory whose contents or listing the
    reading depended on (includes that matched nothing included).  `uncertain`
    is the first reason a group's position could not be decided, None if none.
    `user` is the User directive (None when unset).
    """

    path: Path
    server_root: Path
    groups: tuple[DaemonGroup, ...]
    socket_prefix: Path | None
    socket_rotation: bool
    pid_file: Path | None
    runtime_dir: Path | None
    error_log: Path | None
    log_level: str
    script_reloading: bool
    listen: tuple[str, ...]
    files: tuple[Path, ...]
    inputs: tuple[Path, ...] = ()
    uncertain: str | None = None
    user: str | None = None

    def group(self, name: str) -> DaemonGroup:
        """The group named exactly `name` (mod_wsgi compares names case-sensitively).

        Raises GroupNotFoundError carrying the names that are defined.
        """
        for group in self.groups:
            if group.name == name:
                return group
        raise GroupNotFoundError(name, tuple(g.name for g in self.groups), str(self.path))


def effective_module_level(log_level: str, module_names: Iterable[str]) -> str:
    """The level a module logs at under `LogLevel` text such as "warn wsgi:info".

    Words apply left to right like httpd's: a plain level sets the global level
    and clears every per-module level; `module:level` sets one module's.
    Returns the level lower-cased; "warn" when nothing applies.
    """
    names = frozenset(module_names)
    level = DEFAULT_LOG_LEVEL
    module_level: str | None = None
    for word in log_level.split():
        module, sep, value = word.rpartition(":")
        if not sep:
            level, module_level = word.lower(), None
        elif module in names:
            module_level = value.lower()
    return module_level or level
