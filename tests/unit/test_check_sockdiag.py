"""The listening-socket reader `check` uses (sock_diag) against the kernel's own text view.

Real sockets of this test: a listener must be found (IPv4 and IPv6), a connected
socket and a bound-but-not-listening one must not, by both readers.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator

import pytest

from wsgi_drain import procfs, sockdiag


def _inode(sock: socket.socket) -> int:
    return os.fstat(sock.fileno()).st_ino


@pytest.fixture
def sockets() -> Iterator[dict[str, socket.socket]]:
    made: dict[str, socket.socket] = {}
    try:
        made["listen4"] = socket.create_server(("127.0.0.1", 0))
        # No IPv6 on this host: the IPv4 half still runs.
        with contextlib.suppress(OSError):
            made["listen6"] = socket.create_server(("::1", 0), family=socket.AF_INET6)
        made["client"] = socket.create_connection(made["listen4"].getsockname()[:2])
        made["accepted"], _ = made["listen4"].accept()
        made["bound"] = socket.socket()
        made["bound"].bind(("127.0.0.1", 0))
        yield made
    finally:
        for sock in made.values():
            sock.close()


def test_check_sockdiag_finds_listeners_only_as_proc_net_tcp_does(
    sockets: dict[str, socket.socket],
) -> None:
    fast = sockdiag.listening_tcp_inodes()
    text = procfs.listening_tcp_inodes_from_text()
    for name, sock in sockets.items():
        listening = name.startswith("listen")
        assert (_inode(sock) in fast) is listening, name
        assert (_inode(sock) in text) is listening, name
    assert procfs.listening_tcp_inodes() >= {
        _inode(s) for n, s in sockets.items() if n.startswith("listen")
    }
