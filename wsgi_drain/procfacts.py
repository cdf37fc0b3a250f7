"""A process's facts as psutil states them, read from /proc without psutil (Linux only).

`check` runs every minute on every host and needs only simple facts of a few
processes: the Apache parent's name, argv, environment and start time, and
each daemon's start time, RSS, threads and state.  Importing psutil costs
about as much as all of wsgi-drain's own rules (issue 22), so these readers
take the files psutil 7 reads on Linux and parse them as it does, to the
same values: `create_time` is psutil's `create_time()` to the bit (the boot
time of /proc/stat plus the start tick over the clock rate, in that order),
which `DaemonProcess.create_time` is compared with before any signal;
`name` is psutil's `name()`, 15-character comm names extended from argv[0]
as psutil extends them; `argv` is psutil's `cmdline()` (NUL-separated, or
space-separated for a title rewritten with spaces).  Unit-tested against
psutil itself.

psutil's errors map to the built-in ones: NoSuchProcess is
ProcessLookupError (gone, or a zombie that no longer has the fact),
AccessDenied is PermissionError; both are OSErrors, as psutil.Error covers
both.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

PROC = "/proc"
# psutil's PROC_STATUSES: the state letter of /proc/PID/stat, in psutil's words.
STATES = {
    "R": "running", "S": "sleeping", "D": "disk-sleep", "T": "stopped",
    "t": "tracing-stop", "Z": "zombie", "X": "dead", "x": "dead", "K": "wake-kill",
    "W": "waking", "I": "idle", "P": "parked",
}  # fmt: skip
_ENCODING = sys.getfilesystemencoding()
_ERRORS = sys.getfilesystemencodeerrors()


class Usage:
    """What `status` and `check` show of one process (a plain class: dataclasses cost start-up)."""

    __slots__ = ("create_time", "rss", "state", "threads")

    def __init__(self, create_time: float, rss: int, threads: int, state: str) -> None:
        self.create_time, self.rss, self.threads, self.state = create_time, rss, threads, state


@dataclass(frozen=True)
class ProcessInfo:
    """One process as `check` and `status` report it (`process_info`)."""

    pid: int
    age: float
    rss: int | None
    threads: int | None
    state: str


def process_info(pid: int) -> ProcessInfo | None:
    """Age, RSS, threads and state of one process; None when it is gone."""
    try:
        facts = usage(pid)
    except ProcessLookupError:
        return None
    except PermissionError:
        return ProcessInfo(pid=pid, age=0.0, rss=None, threads=None, state="?")
    return ProcessInfo(
        pid=pid,
        age=time.time() - facts.create_time,
        rss=facts.rss,
        threads=facts.threads,
        state=facts.state,
    )


def _read(pid: int, name: str) -> bytes:
    """/proc/PID/NAME; ProcessLookupError when the process is gone (psutil's NoSuchProcess)."""
    path = f"{PROC}/{pid}/{name}"
    try:
        with open(path, "rb") as f:
            return f.read()
    except (FileNotFoundError, ProcessLookupError) as err:
        gone = not os.path.exists(f"{PROC}/{pid}/stat")
        if isinstance(err, FileNotFoundError) and not gone and not _zombie(pid):
            raise  # the process is there but not this file: not "gone" (psutil's rule)
        raise ProcessLookupError(f"process {pid} is gone") from err


def _text(pid: int, name: str) -> str:
    """/proc/PID/NAME as psutil reads it: the file system's encoding, universal newlines."""
    text = _read(pid, name).decode(_ENCODING, _ERRORS)
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def _stat(pid: int) -> tuple[bytes, list[bytes]]:
    """The command name and the fields after it of /proc/PID/stat (fields[0] is the state)."""
    data = _read(pid, "stat")
    # The name is between the first "(" and the last ")": it may hold both.
    rpar = data.rfind(b")")
    return data[data.find(b"(") + 1 : rpar], data[rpar + 2 :].split()


def boot_time() -> float:
    """The boot time in seconds since the epoch, as /proc/stat gives it (whole seconds)."""
    with open(f"{PROC}/stat", "rb") as f:
        for line in f:
            if line.startswith(b"btime"):
                return float(line.strip().split()[1])
    raise RuntimeError(f"line 'btime' not found in {PROC}/stat")


def _create_time(fields: list[bytes]) -> float:
    return float(fields[19]) / os.sysconf("SC_CLK_TCK") + boot_time()


def create_time(pid: int) -> float:
    """When `pid` started, in seconds since the epoch: psutil's `create_time()`, bit for bit."""
    return _create_time(_stat(pid)[1])


def _zombie(pid: int) -> bool:
    try:
        return _stat(pid)[1][0] == b"Z"
    except OSError:
        return False


def argv(pid: int) -> list[str]:
    """The command line as psutil's `cmdline()` reads it."""
    data = _text(pid, "cmdline")
    if not data:
        if _zombie(pid):
            raise ProcessLookupError(f"process {pid} is a zombie")
        return []
    # Split on NULs; a title rewritten in place may separate its words by spaces.
    sep = "\x00" if data.endswith("\x00") else " "
    if data.endswith(sep):
        data = data[:-1]
    words = data.split(sep)
    if sep == "\x00" and len(words) == 1 and " " in data:
        words = data.split(" ")
    return words


def name(pid: int) -> str:
    """The process name as psutil's `name()` gives it.

    The kernel cuts the name at 15 characters; a cut name that begins argv[0]'s
    base name is replaced by it ("gnome-keyring-d" is "gnome-keyring-daemon").
    """
    comm = _stat(pid)[0].decode(_ENCODING, _ERRORS)
    if len(comm) >= 15:
        try:
            words = argv(pid)
        except (PermissionError, ProcessLookupError):
            return comm
        if words:
            extended = os.path.basename(words[0])
            if extended.startswith(comm):
                return extended
    return comm


def ppid(pid: int) -> int:
    """The parent's pid (field 4 of /proc/PID/stat)."""
    return int(_stat(pid)[1][1])


def environ(pid: int) -> dict[str, str]:
    """The process's environment as psutil's `environ()` parses it (root or its own user)."""
    data = _text(pid, "environ")
    found: dict[str, str] = {}
    pos = 0
    while True:
        end = data.find("\0", pos)
        if end <= pos:  # a NUL first, or two in a row: the end of the block
            break
        equal = data.find("=", pos, end)
        if equal > pos:
            found[data[pos:equal]] = data[equal + 1 : end]
        pos = end + 1
    return found


def usage(pid: int) -> Usage:
    """Start time, RSS, thread count and state, as psutil's `oneshot()` reads them."""
    _comm, fields = _stat(pid)
    statm = _read(pid, "statm").split()
    status = _read(pid, "status")
    threads = next(
        int(line.split()[1]) for line in status.splitlines() if line.startswith(b"Threads:")
    )
    return Usage(
        create_time=_create_time(fields),
        rss=int(statm[1]) * os.sysconf("SC_PAGE_SIZE"),
        threads=threads,
        state=STATES.get(fields[0].decode(), "?"),
    )


def pids() -> list[int]:
    """Every process on the host."""
    return [int(entry) for entry in os.listdir(PROC) if entry.isdigit()]
