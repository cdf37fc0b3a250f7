"""Which listening socket is a daemon group's, proven from the running processes, or refused.

mod_wsgi names a group's socket `<prefix>.<parent-pid>.<generation>.<id>.sock`
where `id` is the group's position among the `WSGIDaemonProcess` directives of
the configuration Apache *loaded*.  The files on disk may say something else:
edited after Apache started, or decided by sections we could not evaluate.
Trusting them signals another group's processes (reproduced), so the id is
only used when it is proven, from two independent kinds of evidence:

* the title: with `display-name=%{GROUP}` mod_wsgi writes `(wsgi:NAME)` over
  argv[0] of each daemon, from the configuration it loaded.  When the whole
  title survives (argv[0] is long enough), processes holding socket N that
  all show `(wsgi:myapp)` prove socket N is myapp's, whatever the files say.
* the configuration: every file and directory read up to the group's
  directive is unchanged since the running generation loaded it (the socket
  files are created right after loading), the group's position was decidable,
  Apache holds as many group sockets as the files define, and what the
  processes on socket N show agrees with the group's options (title, user,
  process count).

Either suffices; contradicting evidence refuses.  On an instance
mod_wsgi-express set up (`express.detect`), express's own title counts like
`%{GROUP}`'s: express derives it from the group's name, `(wsgi:NAME)` or
`(wsgi:HOST:PORT:UID)`, writes one such group, and pads argv[0] so it is
whole (docs/express.md).  That is what lets a deploy that runs setup-server
again (files rewritten, nothing changed) restart without reloading Apache.

`prove` is pure: it takes an `Observation` (read from /proc by `observe`)
and the config changes found by `config_changes`, so every rule is testable
without a running Apache.
"""

from __future__ import annotations

import os
import pwd
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from wsgi_drain import procfacts, procfs
from wsgi_drain.apacheconf import ApacheConfig, DaemonGroup
from wsgi_drain.errors import GroupNotRunningError, IdentityError
from wsgi_drain.express import Express, config_rewritten_warning, express_title, identity_fix

_SOCKET_NAME = re.compile(r"\.(?P<pid>\d+)\.(?P<gen>u?\d+)\.(?P<id>\d+)\.sock$")


@dataclass(frozen=True)
class GroupSocket:
    """One group listener held by the Apache parent."""

    path: str
    inode: int
    id: int = 0
    generation: str = ""


@dataclass(frozen=True)
class Child:
    """A child of the Apache parent that holds at least one group listener.

    `wsgi_ids` are the group ids whose listeners it holds; `holds_listener`
    whether it also holds one of Apache's own listening TCP sockets (MPM
    workers do, mod_wsgi daemons close them); `same_exe` whether it runs the
    parent's binary (daemons are forks without exec; piped loggers are not),
    None when that cannot be read.
    """

    pid: int
    create_time: float
    title: str
    uid: int | None
    wsgi_ids: frozenset[int]
    holds_listener: bool = False
    same_exe: bool | None = True

    def is_member_of(self, group_id: int) -> bool:
        """A daemon of `group_id`: mod_wsgi leaves a daemon only its own group's listener."""
        return (
            self.wsgi_ids == frozenset({group_id})
            and not self.holds_listener
            and self.same_exe is not False
        )


@dataclass(frozen=True)
class Observation:
    """What the running instance shows: the parent's group sockets and who holds them.

    `title_room` is the length of the parent's argv[0], which is all of a
    display-name title that survives; `parent_title` the parent's own title,
    which a daemon shows for a moment after the fork, before mod_wsgi renames
    it (such a child is not yet titled, not titled wrong); `loaded_at` the epoch time the running
    generation created its group sockets (just after loading the
    configuration), None when unknown; `as_root` whether Apache's parent runs
    as root (then daemons switch to their user).
    """

    parent_pid: int
    title_room: int
    sockets: Mapping[int, GroupSocket]
    children: tuple[Child, ...]
    loaded_at: float | None
    as_root: bool = True
    parent_title: str = ""

    def members(self, group_id: int) -> tuple[Child, ...]:
        return tuple(c for c in self.children if c.is_member_of(group_id))

    def titled(self, group_id: int) -> tuple[Child, ...]:
        """Members that already show their own title (not the parent's, just forked)."""
        return tuple(
            c
            for c in self.members(group_id)
            if not self.parent_title or c.title != self.parent_title
        )


@dataclass(frozen=True)
class Change:
    """A configuration input modified (or removed) after Apache loaded it."""

    path: Path
    when: float | None  # None: it no longer exists

    def describe(self) -> str:
        if self.when is None:
            return f"{self.path} (removed)"
        return f"{self.path} (changed {_stamp(self.when)})"


@dataclass(frozen=True)
class Identity:
    """The proven socket of a group and how it was proven.

    `config_current` is True when the group's options read from the files are
    the ones Apache runs (proven by the configuration); False when only the
    title proved the socket, so processes=/timeouts on disk may differ from
    what runs.  `warnings` are for the operator (e.g. Apache has not loaded
    the configuration on disk).
    """

    socket: GroupSocket
    proof: str
    config_current: bool
    warnings: tuple[str, ...] = field(default=())


def observe(config: ApacheConfig, parent_pid: int, parent_create_time: float) -> Observation:
    """Read the instance's group sockets and their holders from /proc (needs root).

    Only sockets named for this parent pid, under the configured socket prefix
    when it is known, and held open by the parent count: files of earlier
    generations linger on disk.
    """
    held = procfs.socket_inodes(parent_pid)
    sockets = _named_sockets(config, parent_pid, held)
    listeners = held & procfs.listening_tcp_inodes()
    by_inode = {s.inode: s.id for s in sockets.values()}
    parent_exe = procfs.exe(parent_pid)
    children = []
    for pid in procfs.children(parent_pid):
        if procfs.gone(pid):
            continue
        inodes = procfs.socket_inodes(pid)
        ids = frozenset(by_inode[i] for i in inodes if i in by_inode)
        if not ids:
            continue
        try:
            create_time = procfacts.create_time(pid)
        except ProcessLookupError:
            continue
        exe = procfs.exe(pid)
        children.append(
            Child(
                pid=pid,
                create_time=create_time,
                title=procfs.title(pid),
                uid=procfs.real_uid(pid),
                wsgi_ids=ids,
                holds_listener=bool(inodes & listeners),
                same_exe=None if exe is None or parent_exe is None else exe == parent_exe,
            )
        )
    return Observation(
        parent_pid=parent_pid,
        title_room=procfs.argv0_length(parent_pid),
        sockets=sockets,
        children=tuple(children),
        loaded_at=_loaded_at(sockets.values(), parent_create_time),
        as_root=procfs.real_uid(parent_pid) == 0,
        parent_title=procfs.title(parent_pid),
    )


def sockets_by_name(
    config: ApacheConfig, parent_pid: int, parent_create_time: float
) -> tuple[dict[int, GroupSocket], float | None]:
    """The parent's group sockets told by name alone, and when they were made.

    For a user who may not read the parent's fds: /proc/net/unix lists only
    sockets that are still open, so an earlier generation's lingering files
    do not show.
    """
    sockets = _named_sockets(config, parent_pid)
    return sockets, _loaded_at(sockets.values(), parent_create_time)


def _named_sockets(
    config: ApacheConfig, parent_pid: int, held: set[int] | None = None
) -> dict[int, GroupSocket]:
    """Open unix sockets named `<prefix>.<parent_pid>.<generation>.<id>.sock`, by id.

    With `held` (the parent's socket inodes), only those: an earlier
    generation's listener with the same id, still open in a daemon that has
    not exited yet, must not hide the parent's own.
    """
    prefix = str(config.socket_prefix) + "." if config.socket_prefix else None
    sockets: dict[int, GroupSocket] = {}
    for inode, path in procfs.unix_socket_paths(listening_only=True).items():
        if held is not None and inode not in held:
            continue
        match = _SOCKET_NAME.search(path)
        if not match or int(match["pid"]) != parent_pid:
            continue
        if prefix is not None and not path.startswith(prefix):
            continue
        gid = int(match["id"])
        sockets[gid] = GroupSocket(path=path, inode=inode, id=gid, generation=match["gen"])
    return sockets


def _loaded_at(sockets: Iterable[GroupSocket], parent_create_time: float) -> float | None:
    """When the running generation loaded its configuration, as a safe upper bound.

    mod_wsgi creates the group sockets right after the configuration is read,
    at every start and restart, so their files' ctime is the best witness.
    Without the files, a first generation ("0") cannot have loaded it before
    the parent started; a later one is unknown.
    """
    times = []
    generation_zero = True
    for sock in sockets:
        generation_zero = generation_zero and sock.generation == "0"
        try:
            times.append(os.stat(sock.path).st_ctime)
        except OSError:
            continue
    if times:
        return min(times)
    return parent_create_time if generation_zero else None


def config_changes(paths: Iterable[Path], since: float) -> list[Change]:
    """Inputs modified at or after `since` (epoch), or gone.

    ctime is used as well as mtime: it cannot be set back (rsync -t, tar,
    `touch -d` preserve or fake mtime), and a rename into place sets it.  A
    symlink counts by both its own change time and its target's.
    """
    changes = []
    for path in paths:
        try:
            info = os.stat(path)
            link = os.lstat(path)
        except FileNotFoundError:
            changes.append(Change(path, None))
            continue
        except OSError:
            continue
        when = max(info.st_mtime, info.st_ctime, link.st_ctime)
        if when >= since:
            changes.append(Change(path, when))
    return changes


def expected_title(group: DaemonGroup, room: int) -> str | None:
    """What of the group's display-name survives in argv[0] (None without display-name)."""
    title = group.title
    if title is None or room <= 0:
        return None
    return title[:room]


def prove(
    config: ApacheConfig,
    group: DaemonGroup,
    obs: Observation,
    changes: Iterable[Change],
    *,
    express: Express | None = None,
) -> Identity:
    """The socket that is `group`'s, with the proof; IdentityError when it cannot be proven.

    `express`: the instance is mod_wsgi-express's, whose title for its group
    proves it too, and whose users get their fixes as express options.
    Raises GroupNotRunningError when the proof holds but the parent has no
    socket with the group's id (the group is configured, not running).
    """
    changes = list(changes)
    if not obs.sockets:
        raise GroupNotRunningError(
            f"the Apache parent (pid {obs.parent_pid}) runs no mod_wsgi daemon group at all: "
            f"group {group.name!r} is not running in this instance (is mod_wsgi loaded, and "
            "was Apache restarted after the group was added?)"
        )
    title = expected_title(group, obs.title_room)
    by_title = _title_proof(group, obs, title)
    by_express = by_title is None and express is not None
    if by_express:
        by_title = _express_title_proof(config, group, obs, title, express)
    against = _config_doubts(config, group, obs, changes, title)

    if by_title is not None:
        sock = obs.sockets[by_title]
        warnings = []
        if against and express is not None and title is not None:
            warnings.append(config_rewritten_warning(group, express, title))
        elif against:
            warnings.append(
                f"the configuration on disk is not what Apache runs ({'; '.join(against)}); "
                f"group {group.name!r} was identified by its processes' title {title!r} on "
                f"socket {by_title}, and its options (processes=, timeouts) are read from the "
                "files as they are now. A daemon restart does not load the configuration: "
                "reload Apache for that"
            )
        proof = f"socket {by_title}, processes titled {title!r}"
        if by_express:
            proof += " (mod_wsgi-express's title for the group)"
        if not against:
            proof += ", configuration unchanged since Apache loaded it"
        return Identity(sock, proof, config_current=not against, warnings=tuple(warnings))

    if not against:
        found = obs.sockets.get(group.id)
        if found is None:
            raise GroupNotRunningError(
                f"the Apache parent (pid {obs.parent_pid}) holds no listening socket for group "
                f"{group.name!r} (id {group.id}), although its configuration is unchanged since "
                "Apache loaded it: the group is not running in this instance"
            )
        proof = f"socket {group.id}, configuration unchanged since Apache loaded it"
        if title:
            proof += f", processes titled {title!r}"
        return Identity(found, proof, config_current=True)

    fix = (
        "Reload Apache (apachectl graceful; every daemon then gets about 3 s) so the "
        "configuration it runs is the one on disk"
    )
    if express is not None:
        fix = identity_fix(group, express)
    elif title != f"(wsgi:{group.name})":
        fix += (
            ", or add display-name=%{GROUP} to every WSGIDaemonProcess and start Apache by "
            "its full path, so wsgi-drain can identify a group by its processes' titles"
        )
    raise IdentityError(
        f"cannot prove which processes belong to group {group.name!r}, so nothing is "
        f"signalled: {'; '.join(against)}. {fix}"
    )


def _title_proof(group: DaemonGroup, obs: Observation, title: str | None) -> int | None:
    """The one socket whose processes all show the group's whole `(wsgi:NAME)` title."""
    if title is None or title != f"(wsgi:{group.name})":
        # Only mod_wsgi's own %{GROUP} title names the group, and only whole:
        # a cut title or a free display-name may be shared with another group.
        return None
    return _one_socket_titled(obs, title)


def _one_socket_titled(obs: Observation, title: str) -> int | None:
    """The one socket whose processes (one or more) all show `title`; None if not exactly one."""
    matching = [
        gid
        for gid in obs.sockets
        if (members := obs.titled(gid)) and all(m.title == title for m in members)
    ]
    return matching[0] if len(matching) == 1 else None


def title_names_group(
    config: ApacheConfig, group: DaemonGroup, title: str, express: Express | None
) -> bool:
    """Whether the title `title` (as it survives in argv[0]) names `group` by itself.

    mod_wsgi's whole `(wsgi:NAME)` does; on express, so does express's whole
    title for the group when no other group on disk shows the same.  A cut or
    free display-name does not (it may be another group's in what Apache loaded).
    """
    if title == f"(wsgi:{group.name})":
        return True
    if express is None or title != express_title(group):
        return False
    return not any(g is not group and g.title == title for g in config.groups)


def _express_title_proof(
    config: ApacheConfig,
    group: DaemonGroup,
    obs: Observation,
    title: str | None,
    express: Express | None,
) -> int | None:
    """The one socket whose processes all show express's whole title for `group`.

    Express's title names its group as %{GROUP} does, so it proves the same
    way, on the same conditions: whole (not cut by argv[0]), no other group
    on disk titled the same, exactly one socket whose processes show it.
    """
    if title is None or express is None or not title_names_group(config, group, title, express):
        return None
    return _one_socket_titled(obs, title)


def _config_doubts(
    config: ApacheConfig,
    group: DaemonGroup,
    obs: Observation,
    changes: list[Change],
    title: str | None,
) -> list[str]:
    """Every reason the files do not prove the group's socket id (empty: they do)."""
    doubts = []
    if group.uncertain:
        doubts.append(f"the group's position depends on {group.uncertain}")
    if obs.loaded_at is None:
        doubts.append("when Apache loaded its configuration cannot be told (no socket files)")
    inputs = set(group.inputs)
    before = [c for c in changes if c.path in inputs]
    if before:
        listed = ", ".join(c.describe() for c in before[:3])
        more = f" and {len(before) - 3} more" if len(before) > 3 else ""
        doubts.append(
            f"the configuration changed after Apache loaded it at {_stamp(obs.loaded_at)}: "
            f"{listed}{more}"
        )
    elif not changes and config.uncertain is None and len(obs.sockets) != len(config.groups):
        doubts.append(
            f"Apache runs {len(obs.sockets)} daemon group socket(s) but the configuration "
            f"defines {len(config.groups)} group(s)"
        )
    members = obs.members(group.id)
    if len(members) > group.processes:
        doubts.append(
            f"socket {group.id} has {len(members)} processes but the group sets "
            f"processes={group.processes}"
        )
    titled = obs.titled(group.id)
    shown = sorted({m.title for m in titled})
    if title is not None and any(m.title != title for m in titled):
        doubts.append(f"socket {group.id}'s processes are titled {_titles(shown)}, not {title!r}")
    elif title is None and any(m.title.startswith("(wsgi:") for m in titled):
        doubts.append(
            f"socket {group.id}'s processes are titled {_titles(shown)}, but group "
            f"{group.name!r} sets no display-name"
        )
    uid = _expected_uid(config, group, obs)
    wrong_user = sorted({m.uid for m in members if m.uid is not None and m.uid != uid})
    if uid is not None and wrong_user:
        doubts.append(
            f"socket {group.id}'s processes run as uid {', '.join(map(str, wrong_user))}, "
            f"but the group runs as uid {uid}"
        )
    return doubts


def _expected_uid(config: ApacheConfig, group: DaemonGroup, obs: Observation) -> int | None:
    """The uid the group's daemons run as, when Apache runs as root and it can be resolved."""
    if not obs.as_root:
        return None
    name = group.options.get("user") or config.user
    if not name:
        return None
    if name.startswith("#") and name[1:].isdigit():
        return int(name[1:])
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


def _titles(titles: list[str]) -> str:
    return ", ".join(repr(t) for t in titles) if titles else "nothing"


def _stamp(when: float | None) -> str:
    """Local time to the millisecond: a file edited in the second Apache started must show."""
    if when is None:
        return "an unknown time"
    millis = int(when * 1000) % 1000
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when)) + f".{millis:03d}"
