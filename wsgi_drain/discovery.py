"""Find the Apache instance and prove which processes belong to a daemon group.

A group's processes are the Apache parent's children that hold the group's
listening socket `<WSGISocketPrefix>.<parent-pid>.<generation>.<id>.sock`
and no other group's, nor Apache's own listeners (mod_wsgi creates the
sockets in the parent; MPM workers and other groups' daemons close them).
Which socket is the group's is proven by `identity.prove`, never assumed from
the files on disk.  The `(wsgi:GROUP)` title is the fallback when this
process may not read the daemons' fd tables (an unprivileged `check`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from wsgi_drain import procfacts, procfs
from wsgi_drain.apacheconf import ApacheConfig, DaemonGroup, load_envvars, parse_config
from wsgi_drain.errors import (
    AmbiguousApacheError,
    DrainError,
    GroupNotFoundError,
    IdentityError,
    NotFoundError,
)
from wsgi_drain.express import Express, detect, group_hint
from wsgi_drain.httpd import HttpdBinary
from wsgi_drain.identity import (
    GroupSocket,
    Identity,
    config_changes,
    expected_title,
    observe,
    prove,
    sockets_by_name,
    title_names_group,
)

if TYPE_CHECKING:
    from wsgi_drain.config import Settings

APACHE_NAMES = frozenset({"apache2", "httpd", "apache", "httpd2"})

# The packaged httpd's compiled-in ServerRoot and configuration file, used
# when it runs without -d/-f (`httpd -V`: HTTPD_ROOT, SERVER_CONFIG_FILE).  The
# file is relative to the ServerRoot, so `-d ROOT` alone moves it too: that is
# how Debian's apache2ctl starts a second instance (APACHE_CONFDIR).
_DEFAULT_LAYOUTS = {
    "apache2": (Path("/etc/apache2"), Path("apache2.conf")),  # Debian, Ubuntu
    "httpd": (Path("/etc/httpd"), Path("conf/httpd.conf")),  # RHEL, Fedora
}


@dataclass(frozen=True)
class ApacheInstance:
    """One running Apache parent and the configuration it was started with."""

    pid: int
    create_time: float
    exe: str
    config_path: Path
    config: ApacheConfig
    # Set up and started by mod_wsgi-express (its facts), else None.
    express: Express | None = None

    def describe(self) -> str:
        return f"Apache pid {self.pid} ({self.config_path})"

    def group(self, name: str) -> DaemonGroup:
        """The group named `name`; GroupNotFoundError, in express's terms on express."""
        try:
            return self.config.group(name)
        except GroupNotFoundError as err:
            if self.express is None:
                raise
            raise GroupNotFoundError(
                err.group, err.known, str(self.config.path), group_hint(err.known, self.express)
            ) from None

    def error_log_of(self, group: DaemonGroup) -> Path | None:
        """Where mod_wsgi logs `group`'s lifecycle: its vhost's ErrorLog, else the main one."""
        return group.error_log or self.config.error_log


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
    identity: Identity | None = None

    @property
    def pids(self) -> tuple[int, ...]:
        return tuple(p.pid for p in self.processes)


def find_apache(
    *, pidfile: Path | None = None, config_path: Path | None = None, group: str | None = None
) -> ApacheInstance:
    """Locate the running Apache parent.

    With `pidfile`, the pid in it; with `config_path`, the PidFile that
    configuration names; with neither, the one Apache parent running on the
    host, or, when several run and `group` is given, the one whose
    configuration defines `group` (`instance_defining`).  Raises NotFoundError
    with the fix when there is none or the pid file is stale,
    AmbiguousApacheError when several parents run and neither a path nor the
    group tells which is meant.
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
        if group is not None:
            return instance_defining(group, parents)
        pids = ", ".join(str(p.pid) for p in parents)
        raise AmbiguousApacheError(
            f"{len(parents)} Apache instances run (pids {pids}); "
            "name one with --apache-pidfile or --apache-config"
        )
    return instance_by_pid(parents[0].pid, None, source="the running Apache parent")


def find_group_apache(settings: Settings) -> ApacheInstance:
    """`find_apache` for the run's group: its pid file or configuration, else its group's."""
    return find_apache(
        pidfile=settings.apache_pidfile, config_path=settings.apache_config, group=settings.group
    )


class RunningParent:
    """An Apache parent found running on the host (`running_parents`); a plain class, as
    every dataclass costs a check's start-up (issue 22)."""

    __slots__ = ("pid",)

    def __init__(self, pid: int) -> None:
        self.pid = pid


def instance_defining(group: str, parents: list[RunningParent]) -> ApacheInstance:
    """The one running instance whose configuration defines `group`, as `status` lists them.

    A parent that exits meanwhile is skipped (it serves no group).  One that
    cannot be read might define `group` too: then nothing is chosen, since
    picking the other would be a guess about which processes to signal.
    Raises GroupNotFoundError when no instance defines it, AmbiguousApacheError
    when several do or one could not be read.
    """
    defining: list[ApacheInstance] = []
    unread: list[str] = []
    known: set[str] = set()
    for parent in parents:
        try:
            instance = instance_by_pid(parent.pid, None, source="a running Apache parent")
        except DrainError as err:
            if not procfs.gone(parent.pid):
                unread.append(f"pid {parent.pid} cannot be read ({err})")
            continue
        names = {g.name for g in instance.config.groups}
        known |= names
        if group in names:
            defining.append(instance)
    if len(defining) == 1 and not unread:
        return defining[0]
    fix = "name the instance with --apache-pidfile (or apache_pidfile in the group's table)"
    if len(defining) > 1:
        listed = "; ".join(_pidfile_hint(i) for i in defining)
        raise AmbiguousApacheError(
            f"group {group!r} is defined by {len(defining)} running Apache instances ({listed}): "
            + fix
        )
    if unread:
        found = f"defined by {defining[0].describe()}, but " if defining else "not found, and "
        raise AmbiguousApacheError(f"group {group!r} {found}{'; '.join(unread)}: {fix}")
    pids = ", ".join(str(p.pid) for p in parents)
    raise GroupNotFoundError(group, tuple(sorted(known)), f"the running Apache instances ({pids})")


def _pidfile_hint(instance: ApacheInstance) -> str:
    pid_file = instance.config.pid_file
    return f"pid {instance.pid}" + (f": --apache-pidfile {pid_file}" if pid_file else "")


def running_parents() -> list[RunningParent]:
    """Apache parent processes: apache-named processes whose parent is not Apache."""
    found = []
    for pid in procfacts.pids():
        try:
            if procfacts.name(pid) not in APACHE_NAMES:
                continue
            parent = procfacts.ppid(pid)
        except OSError:  # gone, or not ours to read: psutil's scan skipped it too
            continue
        try:
            parent_name = procfacts.name(parent)
        except OSError:
            parent_name = ""
        if parent_name not in APACHE_NAMES and procfs.state_of(pid) != "Z":
            found.append(RunningParent(pid))
    return found


def _read_pidfile(path: Path) -> int:
    try:
        text = path.read_text().strip()
    except OSError as err:
        if isinstance(err, FileNotFoundError):
            why = f"Apache pid file {path} does not exist: is Apache running with this PidFile?"
        else:
            why = f"cannot read Apache pid file {path}: {err.strerror}"
        raise NotFoundError(why) from err
    if not text.isdigit():
        # Never its content: the path may be a file the caller may not read.
        raise NotFoundError(
            f"Apache pid file {path} does not hold a pid (a whole number alone): "
            "is it Apache's PidFile?"
        )
    return int(text)


def instance_by_pid(pid: int, config_path: Path | None, *, source: str) -> ApacheInstance:
    try:
        create_time = procfacts.create_time(pid)
        name = procfacts.name(pid)
        argv = procfacts.argv(pid)
        # exe and environ are readable by root (or the same user) only; an
        # unprivileged `check` makes do with argv[0] and its own environment.
        exe = procfs.exe(pid) or (argv[0] if argv and argv[0].startswith("/") else "")
        try:
            environ: Mapping[str, str] = procfacts.environ(pid)
        except PermissionError:
            environ = os.environ
    except ProcessLookupError:
        raise NotFoundError(
            f"{source} names pid {pid}, which is not running: the pid file is stale"
        ) from None
    except PermissionError as err:
        raise NotFoundError(f"not allowed to inspect pid {pid} ({source}): run as root") from err
    if procfs.state_of(pid) == "Z":
        raise NotFoundError(f"{source} names pid {pid}, which has exited (zombie)")
    if name not in APACHE_NAMES and Path(exe).name not in APACHE_NAMES:
        hint = ""
        if pid == 1:
            # Apache as PID 1 of a container wrote its pid as that namespace numbers it.
            hint = (
                ": a pid file written inside a container names the pid in there; run "
                "wsgi-drain inside the container (docker exec, or nsenter --target PID --pid "
                "--mount)"
            )
        raise NotFoundError(f"{source} names pid {pid}, which is {name!r}, not Apache{hint}")

    server_root, argv_config, defines, before, after = _parse_argv(argv)
    # The name it runs as first: a RHEL-style `httpd` may be a link to apache2.
    layout_name = name if name in _DEFAULT_LAYOUTS else Path(exe).name
    default_root, default_file = _DEFAULT_LAYOUTS.get(layout_name, _DEFAULT_LAYOUTS["apache2"])
    if server_root is None:
        server_root = default_root
    if config_path is None:
        config_path = argv_config or default_file
        if not config_path.is_absolute():
            config_path = server_root / config_path
    if environ is os.environ and (config_path.parent / "envvars").is_file():
        # Not allowed to read Apache's environment: Debian's envvars sets what
        # its configuration's ${APACHE_*} need (apache2ctl sources it).
        environ = load_envvars(config_path.parent / "envvars", environ)
    if not config_path.is_file():
        raise NotFoundError(
            f"Apache pid {pid} runs with configuration {config_path}, which cannot be read; "
            "pass --apache-config"
        )
    # /proc/PID/exe runs the very binary that is running, even if replaced on disk.
    binary = Path(f"/proc/{pid}/exe") if procfs.exe(pid) else (Path(exe) if exe else None)
    config = parse_config(
        config_path,
        server_root=server_root,
        environ=environ,
        defines=defines,
        before=before,
        after=after,
        facts=HttpdBinary(binary),
    )
    return ApacheInstance(
        pid=pid,
        create_time=create_time,
        exe=exe,
        config_path=config_path,
        config=config,
        express=detect(config, argv),
    )


def _parse_argv(
    argv: list[str],
) -> tuple[Path | None, Path | None, tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """-d ServerRoot, -f config file, -D defines, -C and -c directives from httpd's argv."""
    server_root = config = None
    defines: list[str] = []
    before: list[str] = []
    after: list[str] = []
    words = iter(argv[1:])
    for word in words:
        flag, attached = word[:2], word[2:]
        if flag in ("-d", "-f", "-D", "-C", "-c"):
            value = attached or next(words, "")
            if flag == "-d":
                server_root = Path(value)
            elif flag == "-f":
                config = Path(value)
            elif flag == "-D":
                defines.append(value)
            elif flag == "-C":
                before.append(value)
            else:
                after.append(value)
    return server_root, config, tuple(defines), tuple(before), tuple(after)


def group_processes(instance: ApacheInstance, group: DaemonGroup) -> GroupProcesses:
    """The live processes of `group`, proven members of its proven socket.

    Raises IdentityError (exit 3) when which socket is the group's cannot be
    proven, GroupNotRunningError when it is proven absent, NotFoundError when
    membership cannot be told at all (no fd access and no usable title).
    """
    if not procfs.fds_readable(instance.pid) or not procfs.children_fds_readable(instance.pid):
        # Daemons run as another user: without CAP_SYS_PTRACE (a container's
        # root, by default) their sockets cannot be read, only their titles.
        return _by_title(instance, group)
    obs = observe(instance.config, instance.pid, instance.create_time)
    changes = (
        config_changes(instance.config.inputs, obs.loaded_at) if obs.loaded_at is not None else []
    )
    identity = prove(instance.config, group, obs, changes, express=instance.express)
    members = tuple(
        DaemonProcess(pid=c.pid, create_time=c.create_time, title=c.title)
        for c in obs.members(identity.socket.id)
    )
    return GroupProcesses(group, identity.socket, members, "socket", identity)


def reread(instance: ApacheInstance, previous: GroupProcesses) -> GroupProcesses:
    """The group's members now, on the socket already proven (for watching a restart).

    Identity is not proven again every few milliseconds: a daemon just forked
    shows the parent's title for a moment.  If the parent no longer holds the
    proven socket (Apache itself restarted, a new generation), the group is
    proven afresh.
    """
    if previous.socket is None or previous.identity is None:
        return group_processes(instance, previous.group)
    obs = observe(instance.config, instance.pid, instance.create_time)
    sock = obs.sockets.get(previous.socket.id)
    if sock is None or sock.inode != previous.socket.inode:
        return group_processes(instance, previous.group)
    members = tuple(
        DaemonProcess(pid=c.pid, create_time=c.create_time, title=c.title)
        for c in obs.members(sock.id)
    )
    return GroupProcesses(previous.group, sock, members, "socket", previous.identity)


def _by_title(instance: ApacheInstance, group: DaemonGroup) -> GroupProcesses:
    """Members by their display-name title, for a user who may not read the daemons' fds.

    The title proves the group when the whole `(wsgi:NAME)` survives; a cut or
    custom title only when no other group shares it and the configuration is
    unchanged since Apache loaded it (told by the sockets' files, which
    /proc/net/unix names for anyone).
    """
    room = procfs.argv0_length(instance.pid)
    title = expected_title(group, room)
    if not title:
        raise NotFoundError(
            f"cannot tell the processes of group {group.name!r} from Apache's workers: this user "
            "may not read their sockets (run as root) and the group sets no display-name "
            "(add display-name=%{GROUP} to its WSGIDaemonProcess)"
        )
    if not title_names_group(instance.config, group, title, instance.express):
        shared = [
            g.name for g in instance.config.groups if g is not group and g.title
            and g.title[:room] == title
        ]  # fmt: skip
        if shared or len(title) <= len("(wsgi:"):
            fix = (
                f"start Apache through {instance.express.apachectl} (it pads argv[0] so "
                "express's whole title fits) or give setup-server --process-group NAME"
                if instance.express is not None
                else "start Apache by its full path so the whole (wsgi:NAME) title fits"
            )
            raise IdentityError(
                f"the processes of group {group.name!r} are titled {title!r}, which does not tell "
                f"them from {', '.join(shared) or 'other groups'}'s; run as root (its sockets "
                f"tell), or {fix}"
            )
        _sockets, loaded_at = sockets_by_name(instance.config, instance.pid, instance.create_time)
        changed = config_changes(group.inputs, loaded_at) if loaded_at is not None else None
        if changed is None or changed or group.uncertain:
            raise IdentityError(
                f"the processes of group {group.name!r} are titled {title!r}, which only "
                "identifies them in the configuration Apache loaded, and that cannot be proven "
                "to be the one on disk without root; run as root"
            )
    members = []
    for pid in procfs.children(instance.pid):
        if procfs.gone(pid):
            continue
        if procfs.title(pid) == title:
            members.append(_process(pid))
    return GroupProcesses(group, None, tuple(m for m in members if m), "title")


def _process(pid: int) -> DaemonProcess | None:
    try:
        started = procfacts.create_time(pid)
    except ProcessLookupError:
        return None
    return DaemonProcess(pid=pid, create_time=started, title=procfs.title(pid))


def still_member(instance: ApacheInstance, sock: GroupSocket | None, proc: DaemonProcess) -> bool:
    """Re-check, right before signalling, that `proc` is the same process and in the group."""
    if procfs.parent_of(proc.pid) != instance.pid or procfs.state_of(proc.pid) == "Z":
        return False
    try:
        if procfacts.create_time(proc.pid) != proc.create_time:
            return False
    except ProcessLookupError:
        return False
    if sock is not None:
        return sock.inode in procfs.socket_inodes(proc.pid)
    return procfs.title(proc.pid) == proc.title
