"""Find the Apache instance and prove which processes belong to a daemon group.

A group's processes are the Apache parent's children that hold the group's
listening socket `<WSGISocketPrefix>.<parent-pid>.<generation>.<id>.sock`
(mod_wsgi creates it in the parent; MPM workers and other groups' daemons close
it).  That is proof of membership: MPM workers look the same by name, and the
`(wsgi:GROUP)` title is only a fallback, truncated to the original argv[0]'s
length, used when this process may not read the daemons' fd tables.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psutil

from wsgi_drain import procfs
from wsgi_drain.apacheconf import ApacheConfig, DaemonGroup, load_envvars, parse_config
from wsgi_drain.errors import NotFoundError

APACHE_NAMES = frozenset({"apache2", "httpd", "apache", "httpd2"})

# Where the packaged httpd looks when started without -f/-d (`apache2 -V`:
# HTTPD_ROOT + SERVER_CONFIG_FILE).
_DEFAULT_CONFIGS = {
    "apache2": Path("/etc/apache2/apache2.conf"),
    "httpd": Path("/etc/httpd/conf/httpd.conf"),
}

_SOCKET_NAME = re.compile(r"\.(?P<pid>\d+)\.(?P<gen>u?\d+)\.(?P<id>\d+)\.sock$")


@dataclass(frozen=True)
class ApacheInstance:
    """One running Apache parent and the configuration it was started with."""

    pid: int
    create_time: float
    exe: str
    config_path: Path
    config: ApacheConfig

    def describe(self) -> str:
        return f"Apache pid {self.pid} ({self.config_path})"

    def error_log_of(self, group: DaemonGroup) -> Path | None:
        """Where mod_wsgi logs `group`'s lifecycle: its vhost's ErrorLog, else the main one."""
        return group.error_log or self.config.error_log


@dataclass(frozen=True)
class GroupSocket:
    path: str
    inode: int


@dataclass(frozen=True)
class DaemonProcess:
    """A live daemon process, identified by pid + create time (guards PID reuse)."""

    pid: int
    create_time: float
    title: str


@dataclass(frozen=True)
class GroupProcesses:
    """A group's live processes and how membership was proven."""

    group: DaemonGroup
    socket: GroupSocket | None
    processes: tuple[DaemonProcess, ...]
    method: Literal["socket", "title"]

    @property
    def pids(self) -> tuple[int, ...]:
        return tuple(p.pid for p in self.processes)


def find_apache(*, pidfile: Path | None = None, config_path: Path | None = None) -> ApacheInstance:
    """Locate the running Apache parent.

    With `pidfile`, the pid in it; with `config_path`, the PidFile that
    configuration names; with neither, the one Apache parent running on the
    host.  Raises NotFoundError with the fix when there is none, the pid file
    is stale, or several parents run and none was named.
    """
    if pidfile is not None:
        pid = _read_pidfile(pidfile)
        return instance_by_pid(pid, config_path, source=f"pid file {pidfile}")
    if config_path is not None:
        if not config_path.is_file():
            raise NotFoundError(f"Apache configuration {config_path} does not exist")
        environ = dict(os.environ)
        envvars = config_path.parent / "envvars"
        if envvars.is_file():
            environ = load_envvars(envvars, environ)
        config = parse_config(config_path, environ=environ)
        if config.pid_file is None:
            raise NotFoundError(
                f"{config_path} sets no PidFile; pass --apache-pidfile with the pid file "
                "the running Apache writes"
            )
        pid = _read_pidfile(config.pid_file)
        return instance_by_pid(
            pid, config_path, source=f"PidFile {config.pid_file} of {config_path}"
        )
    parents = running_parents()
    if not parents:
        raise NotFoundError(
            "no running Apache found (no apache2/httpd parent process); start Apache, "
            "or pass --apache-pidfile/--apache-config for the instance to use"
        )
    if len(parents) > 1:
        listing = ", ".join(f"pid {p.pid} ({' '.join(p.cmdline())})" for p in parents)
        raise NotFoundError(
            f"several Apache instances run: {listing}; "
            "choose one with --apache-pidfile or --apache-config"
        )
    return instance_by_pid(parents[0].pid, None, source="the running Apache parent")


def running_parents() -> list[psutil.Process]:
    """Apache parent processes: apache-named processes whose parent is not Apache."""
    found = []
    for proc in psutil.process_iter(["name", "ppid"]):
        if proc.info["name"] not in APACHE_NAMES:
            continue
        try:
            parent_name = psutil.Process(proc.info["ppid"]).name()
        except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
            parent_name = ""
        if parent_name not in APACHE_NAMES and procfs.state_of(proc.pid) != "Z":
            found.append(proc)
    return found


def _read_pidfile(path: Path) -> int:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        raise NotFoundError(
            f"Apache pid file {path} does not exist: is Apache running with this PidFile?"
        ) from None
    except OSError as err:
        raise NotFoundError(f"cannot read Apache pid file {path}: {err.strerror}") from err
    if not text.isdigit():
        raise NotFoundError(f"Apache pid file {path} holds {text[:40]!r}, not a pid")
    return int(text)


def instance_by_pid(pid: int, config_path: Path | None, *, source: str) -> ApacheInstance:
    try:
        proc = psutil.Process(pid)
        name = proc.name()
        argv = proc.cmdline()
        create_time = proc.create_time()
        exe = proc.exe() if argv else ""
        try:
            environ: Mapping[str, str] = proc.environ()
        except psutil.AccessDenied:
            environ = os.environ
    except psutil.NoSuchProcess:
        raise NotFoundError(
            f"{source} names pid {pid}, which is not running: the pid file is stale"
        ) from None
    except psutil.AccessDenied as err:
        raise NotFoundError(f"not allowed to inspect pid {pid} ({source}): run as root") from err
    if procfs.state_of(pid) == "Z":
        raise NotFoundError(f"{source} names pid {pid}, which has exited (zombie)")
    if name not in APACHE_NAMES and Path(exe).name not in APACHE_NAMES:
        raise NotFoundError(f"{source} names pid {pid}, which is {name!r}, not Apache")

    server_root, argv_config, defines = _parse_argv(argv)
    exe_name = Path(exe).name if exe else name
    if config_path is None:
        config_path = argv_config or _DEFAULT_CONFIGS.get(
            exe_name, Path("/etc/apache2/apache2.conf")
        )
        if not config_path.is_absolute() and server_root is not None:
            config_path = server_root / config_path
    if not config_path.is_file():
        raise NotFoundError(
            f"Apache pid {pid} runs with configuration {config_path}, which cannot be read; "
            "pass --apache-config"
        )
    config = parse_config(config_path, server_root=server_root, environ=environ, defines=defines)
    return ApacheInstance(
        pid=pid, create_time=create_time, exe=exe, config_path=config_path, config=config
    )


def _parse_argv(argv: list[str]) -> tuple[Path | None, Path | None, tuple[str, ...]]:
    """-d ServerRoot, -f config file and -D defines from httpd's command line."""
    server_root = config = None
    defines: list[str] = []
    words = iter(argv[1:])
    for word in words:
        flag, attached = word[:2], word[2:]
        if flag in ("-d", "-f", "-D"):
            value = attached or next(words, "")
            if flag == "-d":
                server_root = Path(value)
            elif flag == "-f":
                config = Path(value)
            else:
                defines.append(value)
    return server_root, config, tuple(defines)


def group_socket(instance: ApacheInstance, group: DaemonGroup) -> GroupSocket | None:
    """The listening socket the parent holds for `group`, or None when not found.

    The socket name carries the parent pid and the group's ordinal id; the
    parent must hold it open (an old generation's file may linger on disk).
    """
    held = procfs.socket_inodes(instance.pid)
    if not held:
        return None
    prefix = str(instance.config.socket_prefix) if instance.config.socket_prefix else None
    for inode, path in procfs.unix_socket_paths().items():
        if inode not in held:
            continue
        match = _SOCKET_NAME.search(path)
        if not match or int(match["pid"]) != instance.pid or int(match["id"]) != group.id:
            continue
        if prefix is not None and not path.startswith(prefix + "."):
            continue
        return GroupSocket(path=path, inode=inode)
    return None


def group_processes(instance: ApacheInstance, group: DaemonGroup) -> GroupProcesses:
    """The live processes of `group`, proven members.

    Raises NotFoundError when membership cannot be proven at all: no socket
    (or no permission to read fd tables) and no distinctive title.
    """
    kids = procfs.children(instance.pid)
    if procfs.fds_readable(instance.pid):
        sock = group_socket(instance, group)
        if sock is None:
            raise NotFoundError(
                f"the Apache parent (pid {instance.pid}) holds no listening socket for group "
                f"{group.name!r} (id {group.id}): the group is not running in this instance "
                "(was Apache restarted with this configuration?)"
            )
        members = []
        for pid in kids:
            if procfs.state_of(pid) in (None, "Z"):
                continue
            if sock.inode in procfs.socket_inodes(pid):
                members.append(_process(pid))
        return GroupProcesses(group, sock, tuple(m for m in members if m), "socket")
    return _by_title(instance, group, kids)


def _by_title(instance: ApacheInstance, group: DaemonGroup, kids: list[int]) -> GroupProcesses:
    expected = group.title
    if not expected:
        raise NotFoundError(
            f"cannot tell group {group.name!r}'s processes from Apache's workers: this user "
            "may not read their sockets (run as root) and the group sets no display-name "
            "(add display-name=%{GROUP} to its WSGIDaemonProcess)"
        )
    members = []
    for pid in kids:
        if procfs.state_of(pid) in (None, "Z"):
            continue
        title = procfs.title(pid)
        if title and expected.startswith(title) and _title_is_unique(instance, title):
            members.append(_process(pid))
    return GroupProcesses(group, None, tuple(m for m in members if m), "title")


def _title_is_unique(instance: ApacheInstance, title: str) -> bool:
    """A truncated title proves membership only if no other group's title shares it."""
    claimants = [g for g in instance.config.groups if g.title and g.title.startswith(title)]
    return len(claimants) == 1 and len(title) > len("(wsgi:")


def _process(pid: int) -> DaemonProcess | None:
    try:
        proc = psutil.Process(pid)
        return DaemonProcess(pid=pid, create_time=proc.create_time(), title=procfs.title(pid))
    except psutil.NoSuchProcess:
        return None


def still_member(instance: ApacheInstance, sock: GroupSocket | None, proc: DaemonProcess) -> bool:
    """Re-check, right before signalling, that `proc` is the same process and in the group."""
    if procfs.parent_of(proc.pid) != instance.pid or procfs.state_of(proc.pid) == "Z":
        return False
    try:
        if psutil.Process(proc.pid).create_time() != proc.create_time:
            return False
    except psutil.NoSuchProcess:
        return False
    if sock is not None:
        return sock.inode in procfs.socket_inodes(proc.pid)
    return procfs.title(proc.pid) == proc.title
