"""The leftovers record: what a group's replaced daemons left running, for `check` and `status`.

A restart knows which processes the old daemons left behind; a check an
hour later does not (they are init's children by then, with nothing that
ties them to the group).  So each restart that recorded descendants writes
`<state dir>/<group>.leftovers.json`: every one still running at the end of
the run, with its pid, start time (clock ticks since boot), command line and
its daemon's pid and start time, merged with the entries of earlier runs
that still run.  A later reader re-proves each entry by pid and start time
(a pid reused since is another process, and is not named); one whose daemon
still lives (it was stuck) is not left behind until that daemon is gone.

The file is written atomically, mode 0640 with the state directory's group,
so that a monitoring user the operator let read that directory (group r-x)
can read it too; it holds nothing /proc does not show every user anyway.
Nothing read from it is ever signalled: only pidfds opened while a
descendant's ancestry was proven are (descendants.py).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from wsgi_drain import procfs
from wsgi_drain.atomic import write_atomic
from wsgi_drain.errors import DrainError
from wsgi_drain.procfs import Started
from wsgi_drain.state import _file_name, ensure_dir

if TYPE_CHECKING:  # descendants.py follows processes in a restart; a check reads the record only
    from wsgi_drain.descendants import Descendant

SUFFIX = ".leftovers.json"
SCHEMA = "wsgi-drain/leftovers/v1"
MODE = 0o640
_MAX_BYTES = 1 << 20


class RecordError(DrainError):
    """The leftovers record cannot be read (check: UNKNOWN, naming the file)."""

    def __init__(self, path: Path, why: str) -> None:
        self.path = path
        super().__init__(f"leftovers record {path} {why}")


@dataclass(frozen=True)
class Entry(Started):
    """One process an old daemon of the group started, as recorded."""

    pid: int
    ticks: int
    cmdline: tuple[str, ...]
    daemon_pid: int
    daemon_ticks: int
    recorded: float  # epoch seconds

    @classmethod
    def of(cls, proc: Descendant) -> Entry:
        return cls(
            proc.pid,
            proc.ticks,
            tuple(proc.cmdline),
            proc.daemon_pid,
            proc.daemon_ticks,
            time.time(),
        )

    @property
    def running(self) -> bool:
        """Still the same process (pid and start time), and not a zombie."""
        return procfs.start_ticks(self.pid) == self.ticks and not procfs.gone(self.pid)

    @property
    def daemon_gone(self) -> bool:
        return procfs.start_ticks(self.daemon_pid) != self.daemon_ticks or procfs.gone(
            self.daemon_pid
        )

    @property
    def left_behind(self) -> bool:
        return self.running and self.daemon_gone


def path_for(state_dir: Path, group: str) -> Path:
    return state_dir / _file_name(group, SUFFIX)


def load(state_dir: Path, group: str) -> list[Entry]:
    """The group's record ([] when there is none); RecordError when it cannot be read."""
    return _load(path_for(state_dir, group))


def still_left(state_dir: Path, group: str) -> list[Entry]:
    """The recorded processes left behind that still run (re-proven now)."""
    return [e for e in load(state_dir, group) if e.left_behind]


def all_left(state_dir: Path) -> tuple[dict[str, list[Entry]], list[str]]:
    """Every group's processes left behind that still run, and the records unreadable (status)."""
    found: dict[str, list[Entry]] = {}
    problems: list[str] = []
    if not state_dir.is_dir():
        return found, problems
    for path in sorted(state_dir.glob("*" + SUFFIX)):
        try:
            group, entries = _read(path)
        except FileNotFoundError:
            continue  # removed by a run since the listing
        except RecordError as err:
            problems.append(str(err))
            continue
        left = [e for e in entries if e.left_behind]
        if left:
            found[group] = left
    return found, problems


def save(state_dir: Path, group: str, now: Iterable[Descendant]) -> list[Entry]:
    """Merge this run's running descendants into the record; remove it when nothing runs.

    Entries of earlier runs are kept while they still run.  An unreadable
    record is replaced (its processes were re-proven by nobody: they are
    dropped, not trusted).  Returns what was written.
    """
    fresh = [Entry.of(p) for p in now]
    try:
        earlier = load(state_dir, group)
    except RecordError:
        earlier = []
    keys = {(e.pid, e.ticks) for e in fresh}
    entries = [e for e in earlier if (e.pid, e.ticks) not in keys and e.running] + fresh
    path = path_for(ensure_dir(state_dir), group)
    if not entries:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return []
    data = {"schema": SCHEMA, "group": group, "processes": [asdict(e) for e in entries]}
    gid = os.stat(state_dir).st_gid
    import json

    write_atomic(path, json.dumps(data, indent=1), MODE, owner=(os.geteuid(), gid))
    return entries


def _load(path: Path) -> list[Entry]:
    try:
        return _read(path)[1]
    except FileNotFoundError:
        return []


def _read(path: Path) -> tuple[str, list[Entry]]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as err:
        raise RecordError(path, f"cannot be read ({err.strerror})") from err
    import json  # only when a file is there (a healthy check reads none: issue 22)

    try:
        with os.fdopen(fd, "rb") as source:
            data = json.loads(source.read(_MAX_BYTES))
    except (OSError, ValueError) as err:
        raise RecordError(path, f"is not valid JSON ({err})") from err
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise RecordError(path, f"is not a {SCHEMA} record")
    group, procs = data.get("group"), data.get("processes")
    if not isinstance(group, str) or not isinstance(procs, list):
        raise RecordError(path, "lacks its group or processes")
    try:
        entries = [_entry(item) for item in procs]
    except (TypeError, ValueError) as err:
        raise RecordError(path, f"has an invalid process entry ({err})") from err
    return group, entries


def _entry(item: object) -> Entry:
    if not isinstance(item, dict):
        raise TypeError("not an object")
    ints = ("pid", "ticks", "daemon_pid", "daemon_ticks")
    if not all(isinstance(item.get(k), int) and not isinstance(item.get(k), bool) for k in ints):
        raise ValueError("pid, ticks, daemon_pid, daemon_ticks must be whole numbers")
    cmdline = item.get("cmdline")
    if not isinstance(cmdline, list) or not all(isinstance(w, str) for w in cmdline):
        raise ValueError("cmdline must be a list of strings")
    recorded = item.get("recorded")
    if not isinstance(recorded, (int, float)) or isinstance(recorded, bool):
        raise ValueError("recorded must be a number")
    return Entry(
        item["pid"],
        item["ticks"],
        tuple(cmdline),
        item["daemon_pid"],
        item["daemon_ticks"],
        recorded,
    )


def warning(left: list[Entry], group: str) -> str:
    """`check`'s WARNING for processes left behind that still run: what, and what to do."""
    pids = " ".join(str(e.pid) for e in left[:10]) + (
        f" +{len(left) - 10}" if len(left) > 10 else ""
    )
    oldest = max(e.age for e in left)
    return (
        f"{len(left)} process(es) left behind by replaced daemons of group {group!r} still run "
        f"(pids {pids}; oldest {oldest:.0f} s): they hold the old code's memory and connections; "
        "end them by pid (kill PID), and keep restarts from leaving more: restart with "
        "--leftovers stop, or make the app end its children (docs/app-children.md)"
    )
