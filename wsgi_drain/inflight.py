"""Requests in flight in each daemon process, read on the host.

mod_wsgi hands every request from an Apache worker to a daemon over one
connection to the group's unix socket, accepted by the daemon and closed when
the request ends (docs/mod_wsgi.md, section 2).  The accepted end carries the
socket's path in /proc/net/unix, and sits in the daemon's fd table: so a
daemon's in-flight requests are its fds whose inode is such a connection.
This sees every request, including those that reached Apache without passing
the router (an internal call straight to Apache), which the router's own
counters cannot.  Reading another process's fds needs root (or its user).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from wsgi_drain import procfs


def connections(socket_path: str | Path) -> set[int] | None:
    """Inodes of the requests in flight in the whole group now; None if unreadable."""
    return procfs.unix_connection_inodes(str(socket_path))


def by_process(pids: Iterable[int], socket_path: str | Path) -> dict[int, set[int]] | None:
    """pid -> inodes of its requests in flight now; None when it cannot be told.

    None when /proc/net/unix or any process's fd table cannot be read (not
    root): the caller then must not assume a process is idle.
    """
    open_now = connections(socket_path)
    if open_now is None:
        return None
    found: dict[int, set[int]] = {}
    for pid in pids:
        if not procfs.fds_readable(pid):
            if procfs.state_of(pid) is None:
                found[pid] = set()  # gone: nothing in flight
                continue
            return None
        found[pid] = procfs.socket_inodes(pid) & open_now
    return found
