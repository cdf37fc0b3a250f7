"""Small, fast readers of /proc that discovery needs and psutil does not give cheaply.

Everything here reads one process's or the kernel's files directly instead of
walking every process on the host, so finding a group stays cheap on a host
with thousands of processes.  A process that vanishes mid-read is not an
error: it reads as "nothing there".
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from pathlib import Path

PROC = Path("/proc")

_SOCKET_LINK = re.compile(r"^socket:\[(\d+)\]$")


class Started:
    """Age and command line of a process named by its start `ticks` (descendants, their record)."""

    ticks: int
    cmdline: Sequence[str]

    @property
    def age(self) -> float:
        """Seconds since it started."""
        return boot_clock() - self.ticks / os.sysconf("SC_CLK_TCK")

    @property
    def command(self) -> str:
        return " ".join(self.cmdline) or "?"


def children(pid: int) -> list[int]:
    """Direct children of `pid`, from /proc/PID/task/*/children.

    The kernel lists a child under the thread that forked it, so every task is
    read.  Falls back to scanning /proc/*/stat where the children files do not
    exist (kernels without CONFIG_PROC_CHILDREN).
    """
    task_dir = PROC / str(pid) / "task"
    try:
        tids = os.listdir(task_dir)
    except OSError:
        return []
    found: list[int] = []
    readable = False
    for tid in tids:
        try:
            text = (task_dir / tid / "children").read_text()
        except FileNotFoundError:
            continue
        except OSError:
            continue
        readable = True
        found.extend(int(word) for word in text.split())
    if readable:
        return sorted(set(found))
    return _children_by_scan(pid)


def _children_by_scan(pid: int) -> list[int]:
    found = []
    for entry in os.listdir(PROC):
        if not entry.isdigit():
            continue
        if parent_of(int(entry)) == pid:
            found.append(int(entry))
    return sorted(found)


def parent_of(pid: int) -> int | None:
    """The parent pid from /proc/PID/stat, or None when the process is gone."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split
    # after its last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[1])


def boot_clock() -> float:
    """Seconds since boot on the kernel's clock that /proc/PID/stat's start times use."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def started_at(pid: int) -> float | None:
    """When `pid` started, in `boot_clock()` seconds (to a clock tick); None when gone.

    Ages must be measured this way, not from psutil's create_time(): that adds
    the boot time, which the kernel gives in whole seconds (/proc/stat btime),
    so an age from it can be up to a second off (measured 0.57 s here) -- enough
    to judge a replacement that crashed within SETTLE as one that lived.
    """
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime, clock ticks since boot); fields after the command
    # name's last ')' start at field 3.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19]) / os.sysconf("SC_CLK_TCK")


def start_ticks(pid: int) -> int | None:
    """When `pid` started, in clock ticks since boot (field 22 of /proc/PID/stat); None when gone.

    Exact and comparable as is: with the pid it names one process for good
    (psutil's guard against pid reuse), and it survives a JSON record unrounded.
    """
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[19])


def state_of(pid: int) -> str | None:
    """The one-letter state from /proc/PID/stat ("R", "S", "Z", ...), None when gone."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2]


def gone(pid: int) -> bool:
    """Whether `pid` no longer runs: exited, or a zombie its parent has not reaped yet."""
    return state_of(pid) in (None, "Z")


def socket_inodes(pid: int) -> set[int]:
    """Inodes of every socket the process holds open (needs the right to read its fds)."""
    fd_dir = PROC / str(pid) / "fd"
    inodes: set[int] = set()
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(fd_dir / fd)
        except OSError:
            continue
        match = _SOCKET_LINK.match(target)
        if match:
            inodes.add(int(match.group(1)))
    return inodes


def fds_readable(pid: int) -> bool:
    """Whether this process may read `pid`'s fd table (root, or the same user).

    Listing the directory is not enough: without CAP_SYS_PTRACE (Docker's
    default capabilities) root may list another user's fds but not read
    where they point, which is what membership needs.
    """
    fd_dir = PROC / str(pid) / "fd"
    try:
        fds = os.listdir(fd_dir)
        if fds:
            os.readlink(fd_dir / fds[0])
    except FileNotFoundError:
        return True  # that fd was just closed: the table itself was readable
    except OSError:
        return False
    return True


def children_fds_readable(pid: int) -> bool:
    """Whether the fd table of every live child of `pid` is readable (see `fds_readable`)."""
    return all(fds_readable(child) for child in children(pid) if not gone(child))


# __SO_ACCEPTCON in /proc/net/unix's Flags column (net/unix/af_unix.c): listening.
_SO_ACCEPTCON = 0x10000


def unix_socket_paths(*, listening_only: bool = False) -> dict[int, str]:
    """Inode -> path of bound unix sockets on the host, from /proc/net/unix.

    The server side of every accepted connection shows its listener's path
    too, so a path can appear many times; `listening_only` keeps listeners.
    """
    paths: dict[int, str] = {}
    try:
        lines = (PROC / "net" / "unix").read_text().splitlines()[1:]
    except OSError:
        return paths
    for line in lines:
        # Num RefCount Protocol Flags Type St Inode Path
        parts = line.split(None, 7)
        if len(parts) != 8:
            continue
        if listening_only and not int(parts[3], 16) & _SO_ACCEPTCON:
            continue
        paths[int(parts[6])] = parts[7]
    return paths


def unix_connections(path: str) -> int | None:
    """How many accepted connections to the unix socket at `path` are open now.

    For a mod_wsgi daemon socket each is one request in flight between an
    Apache worker and a daemon (mod_wsgi opens one connection per request and
    closes it at the end).  None when /proc/net/unix cannot be read.
    """
    inodes = unix_connection_inodes(path)
    return None if inodes is None else len(inodes)


def unix_connection_inodes(path: str) -> set[int] | None:
    """Inodes of the accepted (server-side) connections to the unix socket at `path`.

    The kernel gives an accepted socket its listener's address, so each shows
    `path` in /proc/net/unix without the listening flag; the client side is
    unbound and shows no path.  None when /proc/net/unix cannot be read.
    """
    try:
        lines = (PROC / "net" / "unix").read_text().splitlines()[1:]
    except OSError:
        return None
    inodes: set[int] = set()
    for line in lines:
        parts = line.split(None, 7)
        if len(parts) == 8 and parts[7] == path and not int(parts[3], 16) & _SO_ACCEPTCON:
            inodes.add(int(parts[6]))
    return inodes


def read_chars(pid: int) -> int | None:
    """Bytes the process has read so far (`rchar` of /proc/PID/io); None if unreadable.

    Needs root or the process's user (a ptrace access check).  An idle
    mod_wsgi daemon reads nothing (its threads wait in accept and sleep), so a
    rise means it read a request.
    """
    try:
        text = (PROC / str(pid) / "io").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key == "rchar":
            return int(value)
    return None


def cmdline(pid: int) -> list[str]:
    """argv as the kernel shows it now (a daemon's display-name rewrites it)."""
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def title(pid: int) -> str:
    """The process title: argv[0] as rewritten in place, NULs and padding dropped."""
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return ""
    return raw.split(b"\0", 1)[0].decode(errors="replace").strip()


def listening_tcp_inodes() -> set[int]:
    """Inodes of every listening TCP socket on the host (/proc/net/tcp and tcp6, state 0A).

    Asked of the kernel for listeners only (`sockdiag`) where it answers: the text
    files list every connection on the host, which `check` would read every minute.
    """
    from wsgi_drain import sockdiag

    try:
        return sockdiag.listening_tcp_inodes()
    except sockdiag.SockDiagError:
        return listening_tcp_inodes_from_text()


def listening_tcp_inodes_from_text() -> set[int]:
    """`listening_tcp_inodes` read from /proc/net/tcp and tcp6 (the fallback)."""
    inodes: set[int] = set()
    for name in ("tcp", "tcp6"):
        try:
            lines = (PROC / "net" / name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            # sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
            if len(parts) > 9 and parts[3] == "0A":
                inodes.add(int(parts[9]))
    return inodes


def real_uid(pid: int) -> int | None:
    """The real uid from /proc/PID/status, None when the process is gone."""
    try:
        text = (PROC / str(pid) / "status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    return None


def exe(pid: int) -> str | None:
    """Where /proc/PID/exe points, None when it cannot be read (another user's process)."""
    try:
        return os.readlink(PROC / str(pid) / "exe")
    except OSError:
        return None


def argv0_length(pid: int) -> int:
    """Length of argv[0] as the process was started: room mod_wsgi's display-name gets."""
    args = cmdline(pid)
    return len(args[0]) if args else 0
