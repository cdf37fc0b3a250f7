"""Loopback and unix-socket servers of the unit tests: real sockets, each request recorded."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from pathlib import Path


class RecordingServer:
    """Accepts on `listener` in a thread until it is closed.

    Each connection's request is read until `complete(data)` says it is whole (or
    the peer stops sending), recorded in `requests`, then `answer(conn)` replies.
    """

    def __init__(
        self,
        listener: socket.socket,
        complete: Callable[[bytes], bool],
        answer: Callable[[socket.socket], None],
    ) -> None:
        self.listener = listener
        self.requests: list[bytes] = []
        self._complete = complete
        self._answer = answer
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # the listener was closed: the test is over
            with conn:
                data = b""
                while not self._complete(data):
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                self.requests.append(data)
                self._answer(conn)


def bind(listeners: list[socket.socket], path: Path) -> socket.socket:
    """A unix socket listening at `path` (a group's socket, as mod_wsgi makes it), kept in
    `listeners` for the test's clean-up."""
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.listen()
    listeners.append(sock)
    return sock
