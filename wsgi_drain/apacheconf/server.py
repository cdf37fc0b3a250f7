"""What a reading records of the server and its groups, and the `ApacheConfig` made of it.

The reader fills a `Server` as it executes directives; `Server.config` then
applies what httpd and mod_wsgi decide only once the whole configuration is
read: each group's log settings from its <VirtualHost> merged with the main
server's (config.c ap_merge_log_config), ErrorLog's default, and where the
pid file goes.  `WSGIDaemonProcess` arguments are split and checked here as
mod_wsgi's wsgi_add_daemon_process does.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from wsgi_drain.apacheconf.includes import Sources
from wsgi_drain.apacheconf.model import (
    DEFAULT_LOG_LEVEL,
    DEFAULT_PROCESSES,
    DEFAULT_THREADS,
    ApacheConfig,
    DaemonGroup,
)
from wsgi_drain.apacheconf.words import BLANKS, Line, atoi, next_word
from wsgi_drain.errors import ApacheConfigError

# httpd's DEFAULT_ERRORLOG, relative to ServerRoot (the same in upstream and
# Debian builds: `apache2 -V`).
_DEFAULT_ERRORLOG = "logs/error_log"


@dataclass
class Scope:
    """Log settings of the main server or of one <VirtualHost>."""

    error_log: list[str] | None = None
    log_words: list[str] = field(default_factory=list)
    script_reloading: bool | None = None


@dataclass(frozen=True)
class Context:
    """Where a directive stands: which server, and whether at server level."""

    scope: Scope
    in_vhost: bool = False
    server_level: bool = True


@dataclass
class PendingGroup:
    """A group as read; its log settings are known only once its scope is complete."""

    name: str
    options: dict[str, str]
    source: str
    scope: Scope
    inputs: tuple[Path, ...] = ()
    uncertain: str | None = None


@dataclass
class Server:
    """The server-level values read so far; `root` is the ServerRoot in effect now.

    `uncertain` is the first reason the position of the groups from there on
    cannot be known; `preloaded` the groups a script is loaded into as their
    daemons start (WSGIImportScript, or WSGIScriptAlias with process-group=
    and application-group=).
    """

    root: Path
    main: Scope = field(default_factory=Scope)
    groups: list[PendingGroup] = field(default_factory=list)
    group_sources: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    runtime_dir: Path | None = None
    pid_file: str | None = None
    socket_prefix: str | None = None
    socket_rotation: bool = True
    listen: list[str] = field(default_factory=list)
    preloaded: set[str] = field(default_factory=set)
    uncertain: str | None = None

    def mark_uncertain(self, reason: str) -> None:
        """Groups defined from here on have unknown positions; the first reason is kept."""
        if self.uncertain is None:
            self.uncertain = reason

    def add_group(self, args: str, line: Line, scope: Scope, inputs: tuple[Path, ...]) -> None:
        """mod_wsgi wsgi_add_daemon_process: name, then key=value options."""
        name, pos = next_word(args, 0)
        if not name:
            raise ApacheConfigError(f"{line.source}: Name of WSGI daemon process not supplied")
        options: dict[str, str] = {}
        while pos < len(args):
            end = pos
            while end < len(args) and args[end] != "=" and args[end] not in BLANKS:
                end += 1
            key = args[pos:end]
            if not key:
                raise ApacheConfigError(
                    f"{line.source}: Invalid option to WSGI daemon process definition"
                )
            if end < len(args) and args[end] == "=":
                options[key], pos = next_word(args, end + 1)
            else:
                # mod_wsgi refuses a bare word; keep it rather than fail on it.
                options[key] = ""
                pos = end
            while pos < len(args) and args[pos] in BLANKS:
                pos += 1
        if name in self.group_sources:
            raise ApacheConfigError(
                f"{line.source}: Name duplicates previous WSGI daemon definition: "
                f"{name!r} is already defined at {self.group_sources[name]}"
            )
        _check_group_options(name, options, line)
        self.group_sources[name] = line.source
        self.groups.append(
            PendingGroup(name, options, line.source, scope, inputs=inputs, uncertain=self.uncertain)
        )

    def config(self, path: Path, sources: Sources) -> ApacheConfig:
        """The configuration read from main file `path`, with what `sources` read."""
        root = self.root
        main_error_log = self.main.error_log or [_DEFAULT_ERRORLOG]
        main_reloading = self.main.script_reloading
        groups = []
        for number, pending in enumerate(self.groups, start=1):
            scope = pending.scope
            reloading = scope.script_reloading
            if reloading is None:
                reloading = True if main_reloading is None else main_reloading
            groups.append(
                _daemon_group(
                    pending,
                    number,
                    error_log=_error_log(root, scope.error_log or main_error_log),
                    log_level=_vhost_log_level(self.main, scope),
                    script_reloading=reloading,
                    preloaded=pending.name in self.preloaded,
                )
            )
        return ApacheConfig(
            path=path,
            server_root=root,
            groups=tuple(groups),
            socket_prefix=(
                None
                if self.socket_prefix is None
                else Path(os.path.normpath(root / self.socket_prefix))
            ),
            socket_rotation=self.socket_rotation,
            pid_file=self._pid_file(),
            runtime_dir=self.runtime_dir,
            error_log=_error_log(root, main_error_log),
            log_level=" ".join(self.main.log_words) or DEFAULT_LOG_LEVEL,
            script_reloading=True if main_reloading is None else main_reloading,
            listen=tuple(self.listen),
            files=tuple(sources.files),
            inputs=tuple(sources.inputs),
            uncertain=self.uncertain,
            user=self.user,
        )

    def _pid_file(self) -> Path | None:
        if self.pid_file is None:
            return None
        # log.c ap_log_pid writes ap_runtime_dir_relative(PidFile) (config.c):
        # absolute as is, else under DefaultRuntimeDir, else under
        # ServerRoot + DEFAULT_REL_RUNTIMEDIR.  That last one is a build-time
        # value: "logs" in upstream's default layout, while Debian's apache2
        # 2.4 writes a relative PidFile straight under ServerRoot (checked by
        # starting it).  This follows Debian.  The final ServerRoot counts, as
        # the pid file is written after the whole configuration is read.
        base = self.runtime_dir if self.runtime_dir is not None else self.root
        return Path(os.path.normpath(base / self.pid_file))


def _check_group_options(name: str, options: Mapping[str, str], line: Line) -> None:
    """The checks mod_wsgi makes on the values wsgi-drain uses, with its messages."""
    checks = {
        "processes": ("process count", 1),
        "threads": ("thread count", 0),
        "graceful-timeout": ("graceful timeout", 0),
        "eviction-timeout": ("eviction timeout", 0),
        "shutdown-timeout": ("shutdown timeout", 0),
    }
    for key, (what, least) in checks.items():
        value = options.get(key)
        if value is not None and (not value or atoi(value) < least):
            raise ApacheConfigError(
                f"{line.source}: Invalid {what} for WSGI daemon process {name!r}: {value!r}"
            )


def _daemon_group(
    pending: PendingGroup,
    number: int,
    *,
    error_log: Path | None,
    log_level: str,
    script_reloading: bool,
    preloaded: bool,
) -> DaemonGroup:
    options = pending.options

    def seconds(key: str) -> float | None:
        # mod_wsgi reads whole seconds with atoi(): "2.5" is 2.
        return float(atoi(options[key])) if key in options else None

    return DaemonGroup(
        name=pending.name,
        id=number,
        options=MappingProxyType(dict(options)),
        processes=atoi(options["processes"]) if "processes" in options else DEFAULT_PROCESSES,
        threads=atoi(options["threads"]) if "threads" in options else DEFAULT_THREADS,
        display_name=options.get("display-name"),
        graceful_timeout=seconds("graceful-timeout"),
        eviction_timeout=seconds("eviction-timeout"),
        shutdown_timeout=seconds("shutdown-timeout"),
        error_log=error_log,
        log_level=log_level,
        source=pending.source,
        script_reloading=script_reloading,
        preloaded=preloaded,
        inputs=pending.inputs,
        uncertain=pending.uncertain,
    )


def _error_log(root: Path, args: list[str]) -> Path | None:
    """core.c set_errorlog: "|cmd" and "syslog[:facility]" are not files; "file PATH" is."""
    if len(args) == 2:
        return Path(os.path.normpath(root / args[1])) if args[0] == "file" else None
    target = args[0]
    if target.startswith("|") or target.startswith("syslog"):
        return None
    return Path(os.path.normpath(root / target))


def _vhost_log_level(main: Scope, vhost: Scope) -> str:
    """config.c ap_merge_log_config: a vhost's own level wins whole; module levels add up."""
    if main is vhost:
        words = main.log_words
    elif any(":" not in word for word in vhost.log_words):
        words = vhost.log_words
    else:
        words = main.log_words + vhost.log_words
    return " ".join(words) or DEFAULT_LOG_LEVEL
