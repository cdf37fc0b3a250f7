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
import json
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from wsgi_drain.errors import ConfigError, LockedError

DEFAULT_STATE_DIR = Path("/run/wsgi-drain")

_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")


def _file_name(group: str, suffix: str) -> str:
    # Group names come from the Apache configuration, but the user types
    # them: keep them from naming a path.
    return _SAFE_NAME.sub("_", group) + suffix


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
    if info.st_mode & 0o022 or info.st_uid != os.geteuid():
        raise ConfigError(
            f"state directory {path} is writable by others or owned by another user; "
            f"fix with: chown {os.geteuid()} {path} && chmod 700 {path}"
        )
    return path


@contextlib.contextmanager
def group_lock(state_dir: Path, group: str) -> Iterator[Path]:
    """Hold the group's lock for the duration; LockedError at once if taken.

    flock is released by the kernel when the process dies, so a killed run
    never leaves a stale lock behind (its journal says what it left undone).
    """
    path = ensure_dir(state_dir) / _file_name(group, ".lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
            raise LockedError(
                group, str(path), f", held by pid {holder}" if holder else ""
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)


@dataclass
class Journal:
    """What a run has changed that a later command may need to undo.

    Written before each step that changes the outside world, removed when the
    run ends cleanly; one left behind means the run was killed (or deliberately
    left the backend diverted because the app was unhealthy).
    """

    group: str
    pid: int
    started: float
    phase: str = "start"
    routers: list[str] = field(default_factory=list)  # router specs, "haproxy:SOCK:BE/SRV"
    diverted: list[str] = field(default_factory=list)
    signalled: list[int] = field(default_factory=list)
    note: str = ""

    @classmethod
    def path_for(cls, state_dir: Path, group: str) -> Path:
        return state_dir / _file_name(group, ".journal.json")

    def save(self, state_dir: Path) -> None:
        path = self.path_for(ensure_dir(state_dir), self.group)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(asdict(self), out, indent=1)
        os.replace(tmp, path)

    def remove(self, state_dir: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path_for(state_dir, self.group).unlink()

    @classmethod
    def load(cls, state_dir: Path, group: str) -> Journal | None:
        return _load(cls.path_for(state_dir, group))


def _load(path: Path) -> Journal | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read run journal {path}: {err}; remove it by hand") from err
    return Journal(**{k: v for k, v in data.items() if k in Journal.__dataclass_fields__})


def all_journals(state_dir: Path) -> list[Journal]:
    """Every journal left in the state directory (for `status` and `check`)."""
    if not state_dir.is_dir():
        return []
    found = []
    for path in sorted(state_dir.glob("*.journal.json")):
        journal = _load(path)
        if journal is not None:
            found.append(journal)
    return found


def lock_holder(state_dir: Path, group: str) -> int | None:
    """The pid holding the group's lock, read from /proc/locks, or None.

    Read-only on purpose: a check that took the lock even for a moment could
    make a deploy's restart fail with "locked".
    """
    try:
        info = (state_dir / _file_name(group, ".lock")).stat()
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        # "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF"
        parts = line.split()
        if len(parts) < 6 or parts[1] != "FLOCK" or parts[0] == "->":
            continue
        try:
            dev_inode = parts[5].rsplit(":", 1)
            if int(dev_inode[1]) == info.st_ino:
                return int(parts[4])
        except (ValueError, IndexError):
            continue
    return None


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Write `text` to a temporary file beside `path`, then rename it over `path`.

    A reader (node_exporter scraping a textfile) sees the old file or the new
    one, never half of one.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
