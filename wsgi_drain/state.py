"""The state directory: per-group locks and run journals.

Default /run/wsgi-drain (tmpfs: gone at reboot, like the processes it
describes); WSGI_DRAIN_STATE_DIR or --state-dir moves it.  The directory is
0700 and files 0600, opened with O_NOFOLLOW, because the tool runs as root and
a planted symlink must not make it write elsewhere.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

# write_atomic is re-exported: the CLI and tests know it as state.write_atomic.
from wsgi_drain.atomic import fsync_dir
from wsgi_drain.atomic import write_atomic as write_atomic
from wsgi_drain.errors import ConfigError, JournalError, LockedError

DEFAULT_STATE_DIR = Path("/run/wsgi-drain")


def _file_name(group: str, suffix: str) -> str:
    """A file name for `group`: one per name (`my app` and `my_app` differ), never a path.

    Group names come from the Apache configuration but the user types them;
    percent-encoding keeps '/' and everything unusual out, reversibly.
    """
    return urllib.parse.quote(group, safe="-_.") + suffix


def ensure_dir(path: Path) -> Path:
    """Create the state directory 0700 if missing; refuse one others can write."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.lstat()
    except OSError as err:
        raise ConfigError(
            f"cannot create state directory {path}: {err.strerror}; "
            "set WSGI_DRAIN_STATE_DIR or --state-dir to a writable directory"
        ) from err
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"state directory {path} is not a directory")
    me = os.geteuid()
    if info.st_uid != me:
        raise ConfigError(_not_ours(path, info.st_uid, me))
    if info.st_mode & 0o022:
        raise ConfigError(
            f"state directory {path} is writable by others (mode "
            f"{stat.S_IMODE(info.st_mode):o}); fix with: chmod 700 {path}"
        )
    return path


def _not_ours(path: Path, owner: int, me: int) -> str:
    """Why a state directory owned by someone else is refused, and the fix that is safe.

    Never "chown it to yourself": root's state directory holds root's locks
    and journals; handing it to a user would let that user forge them.
    """
    if me != 0 and owner == 0:
        return (
            f"state directory {path} belongs to root: this command needs root (run it with "
            "sudo), or a state directory of your own for your own Apache "
            "(--state-dir or WSGI_DRAIN_STATE_DIR, e.g. $XDG_RUNTIME_DIR/wsgi-drain)"
        )
    return (
        f"state directory {path} is owned by uid {owner}, not by this user (uid {me}): "
        "wsgi-drain keeps its locks and journals only in a directory of its own user; "
        "use another --state-dir (or WSGI_DRAIN_STATE_DIR), or find out who made this one"
    )


@contextlib.contextmanager
def group_lock(
    state_dir: Path, group: str, *, what: str = "restart", shared: bool = False
) -> Iterator[Path]:
    """Hold the group's lock for the duration; LockedError at once if taken.

    flock is released by the kernel when the process dies, so a killed run
    never leaves a stale lock behind (its journal says what it left undone).
    `what` is written into the lock for the message another caller gets.
    `shared`: hand-run `drain`/`undrain` hold it shared, so that on a load
    balancer's host the drains of different app servers of one group run
    side by side (each server has its exclusive router lock, and the peer
    rule keeps two from going out), while a restart, which holds it
    exclusively, still excludes them all.
    """
    path = ensure_dir(state_dir) / _file_name(group, ".lock")
    with _flock(path, f"{os.getpid()} {what}", shared=shared) as holder:
        if holder is not None:
            pid, _, did = holder.partition(" ")
            live = _holder(path)
            if live is not None and str(live) != pid:
                # Shared holders (hand-run drains) overwrite one another's note, and
                # the last writer may be gone: name a live holder, from /proc/locks.
                pid, did = str(live), "drain or undrain"
            raise LockedError(
                group, str(path), f", held by pid {pid} ({did or 'restart'})" if pid else ""
            )
        yield path


@contextlib.contextmanager
def router_lock(state_dir: Path, spec: str, group: str) -> Iterator[Path]:
    """Hold a router server's lock: two runs must never divert the same server at once.

    Two groups behind the same HAProxy server (two apps on one host) would
    otherwise undo each other: the first to finish puts the server back while
    the other is still restarting.  LockedError at once, naming the other run.
    """
    path = _router_lock_path(ensure_dir(state_dir), spec)
    with _flock(path, f"{os.getpid()} {group}") as holder:
        if holder is not None:
            pid, _, other = holder.partition(" ")
            raise _router_locked(group, path, spec, pid, other)
        yield path


@contextlib.contextmanager
def journal_lock(state_dir: Path, group: str) -> Iterator[None]:
    """Hold the group's journal lock: exclusive, waiting (it is held only for a read and a write).

    Hand-run drains and undrains of different servers of one group run at
    once (the group lock is shared between them) and change one journal.
    """
    path = ensure_dir(state_dir) / _file_name(group, ".journal.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _router_lock_path(state_dir: Path, spec: str) -> Path:
    import hashlib  # only a run with routers takes their locks (check: issue 22)

    digest = hashlib.sha256(spec.encode()).hexdigest()[:24]
    return state_dir / f"router-{digest}.lock"


def refuse_if_locked(state_dir: Path, group: str, specs: Iterable[str]) -> None:
    """LockedError (exit 7) naming the holder when a live run holds the group's or a router's lock.

    Read-only (/proc/locks), for before a run reads its routers: a server
    diverted by the run that holds the lock is that run's, and must not be
    judged "in drain before the restart, and not by wsgi-drain".
    """
    group_path = state_dir / _file_name(group, ".lock")
    pid = _holder(group_path)
    if pid is not None:
        did = _note(group_path).partition(" ")[2]
        raise LockedError(group, str(group_path), f", held by pid {pid} ({did or 'a run'})")
    for spec in specs:
        path = _router_lock_path(state_dir, spec)
        pid = _holder(path)
        if pid is not None:
            raise _router_locked(group, path, spec, str(pid), _note(path).partition(" ")[2])


def _router_locked(group: str, path: Path, spec: str, pid: str, other: str) -> LockedError:
    """The error for a router lock another live run holds (for `other`, its group)."""
    return LockedError(
        group,
        str(path),
        f": router {spec} is being diverted by another wsgi-drain run (group {other!r}, "
        f"pid {pid}); restart the groups behind one server one after the other",
        router=True,
    )


def _holder(path: Path) -> int | None:
    """The pid of another process holding a flock on `path`, from /proc/locks."""
    try:
        info = path.stat()
        text = Path("/proc/locks").read_text()
    except OSError:
        return None
    pid = flock_holder(text, info.st_dev, info.st_ino)
    return None if pid == os.getpid() else pid


def _note(path: Path) -> str:
    """What the holder wrote in its lock ("PID WHAT"); empty if unreadable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        return os.pread(fd, 200, 0).decode(errors="replace").strip()
    finally:
        os.close(fd)


@contextlib.contextmanager
def _flock(path: Path, note: str, *, shared: bool = False) -> Iterator[str | None]:
    """flock `path`: yields None once taken (writing `note` in it), else the holder's note."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise
            yield os.pread(fd, 200, 0).decode(errors="replace").strip()
            return
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{note}\n".encode(), 0)
        yield None
    finally:
        os.close(fd)


@dataclass
class Journal:
    """What a run has changed that a later command may need to undo.

    Written (and fsync'd) before each step that changes the outside world,
    removed when the run ends cleanly; one left behind means the run was
    killed, or deliberately left the backend diverted because the app was
    unhealthy, or a hand-run `drain` is in effect (`kind` "drain").

    `routers` are the router specs of the run ("haproxy:SOCK:BE/SRV"),
    `before` each one's administrative state before the run ("ready",
    "drain", "maint": only a "ready" one is ever diverted and later put
    back), `diverted` those this run diverted or sent the divert command to
    (an unanswered command may have been carried out), `signalled` the pids
    sent a restart signal.  `groups` names every group of a run over several
    groups (`restart --group A --group B`): the journal is saved as one copy
    per group (each under its group's name, so `status`, `check` and
    `undrain` of any of them find it) and removed as one, so that the host,
    diverted once, is repaired once.
    """

    group: str
    pid: int
    started: float
    phase: str = "start"
    kind: str = "restart"
    routers: list[str] = field(default_factory=list)
    before: dict[str, str] = field(default_factory=dict)
    diverted: list[str] = field(default_factory=list)
    signalled: list[int] = field(default_factory=list)
    note: str = ""
    # The processes left on new code that fails (rolling mode, nothing
    # diverted), and the rollback program once it started (--rollback).
    new_code: list[int] = field(default_factory=list)
    rollback: str = ""
    groups: list[str] = field(default_factory=list)

    @classmethod
    def path_for(cls, state_dir: Path, group: str, kind: str = "restart") -> Path:
        """A restart's journal and a hand-run drain's live apart: each is undone on its own."""
        return state_dir / _file_name(group, _SUFFIXES[kind])

    def save(self, state_dir: Path) -> None:
        """Replace the journal atomically and durably (it must survive a crash of the host)."""
        for group in self.groups or [self.group]:
            path = self.path_for(ensure_dir(state_dir), group, self.kind)
            import json

            text = json.dumps({**asdict(self), "group": group}, indent=1)
            write_atomic(path, text, 0o600, durable=True)

    def remove(self, state_dir: Path) -> None:
        for group in self.groups or [self.group]:
            with contextlib.suppress(FileNotFoundError):
                self.path_for(state_dir, group, self.kind).unlink()
                fsync_dir(state_dir)

    @classmethod
    def load(cls, state_dir: Path, group: str, kind: str = "restart") -> Journal | None:
        """The group's journal of `kind`, None if there is none; JournalError if unreadable."""
        return _load(cls.path_for(state_dir, group, kind), group)

    @property
    def still_diverted(self) -> list[str]:
        """Routers this run diverted from "ready" (or may have): the ones to put back."""
        return [spec for spec in self.diverted if self.before.get(spec, "ready") == "ready"]


_SUFFIXES = {
    "restart": ".journal.json",
    "drain": ".drain.json",
    # The whole host's runs (wsgi_drain/host/): one journal per host, named HOST.
    "reload": ".reload.json",
    "stop": ".stop.json",
}

# The name host runs (`reload`, `stop`) lock and journal under: "@" starts no
# WSGIDaemonProcess name a configuration uses, and every group's `undrain` reads it.
HOST = "@host"


# Types of the journal's keys; a missing optional key takes the dataclass default.
_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "group": str,
    "pid": int,
    "started": (int, float),
}
_OPTIONAL: dict[str, type] = {
    "phase": str,
    "kind": str,
    "routers": list,
    "before": dict,
    "diverted": list,
    "signalled": list,
    "note": str,
    "new_code": list,
    "rollback": str,
    "groups": list,
}


def _load(path: Path, group: str | None = None) -> Journal | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise JournalError(path, group, f"cannot be read ({err.strerror})") from err
    import json  # only when a file is there (a healthy check reads none: issue 22)

    try:
        with os.fdopen(fd, "rb") as source:
            data = json.loads(source.read(1 << 20))
    except (OSError, ValueError) as err:
        raise JournalError(path, group, f"is not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise JournalError(path, group, f"holds {type(data).__name__}, not an object")
    for key, kind in _REQUIRED.items():
        if not isinstance(data.get(key), kind) or isinstance(data.get(key), bool):
            raise JournalError(path, group, f"lacks a valid {key!r}")
    for key, kind in _OPTIONAL.items():
        if key in data and not isinstance(data[key], kind):
            raise JournalError(path, group, f"has a {key!r} that is not a {kind.__name__}")
    journal = Journal(**{k: data[k] for k in (*_REQUIRED, *_OPTIONAL) if k in data})
    if not all(
        isinstance(s, str) for s in (*journal.routers, *journal.diverted, *journal.groups)
    ) or not all(isinstance(k, str) and isinstance(v, str) for k, v in journal.before.items()):
        raise JournalError(path, group, "names a router that is not a string")
    if group is not None and journal.group != group:
        raise JournalError(path, group, f"belongs to group {journal.group!r}")
    return journal


def all_journals(state_dir: Path) -> tuple[list[Journal], list[JournalError]]:
    """Every journal left in the state directory, and the unreadable ones (for `status`)."""
    if not state_dir.is_dir():
        return [], []
    found, broken = [], []
    paths = [p for suffix in _SUFFIXES.values() for p in state_dir.glob("*" + suffix)]
    for path in sorted(paths):
        try:
            journal = _load(path)
        except JournalError as err:
            broken.append(err)
            continue
        if journal is not None:
            found.append(journal)
    return found, broken


def lock_holder(state_dir: Path, group: str) -> int | None:
    """The pid holding the group's lock, read from /proc/locks, or None.

    Read-only on purpose: a check that took the lock even for a moment could
    make a deploy's restart fail with "locked".
    """
    try:
        info = (state_dir / _file_name(group, ".lock")).stat()
        text = Path("/proc/locks").read_text()
    except OSError:
        return None
    return flock_holder(text, info.st_dev, info.st_ino)


def flock_holder(locks: str, device: int, inode: int) -> int | None:
    """The pid holding a flock on (device, inode), from the text of /proc/locks.

    Lines look like "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF": the
    device as hexadecimal major:minor, then the inode.  Both must match: the
    same inode number on another filesystem is another file.
    """
    want = (os.major(device), os.minor(device), inode)
    for line in locks.splitlines():
        parts = line.split()
        if len(parts) < 6 or parts[1] != "FLOCK" or parts[0] == "->":
            continue
        try:
            major, minor, ino = parts[5].split(":")
            if (int(major, 16), int(minor, 16), int(ino)) == want:
                return int(parts[4])
        except ValueError:
            continue
    return None
