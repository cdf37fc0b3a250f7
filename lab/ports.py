"""Loopback ports and waiting for them to accept."""

from __future__ import annotations

import socket
import time

from wsgi_drain.deadline import Deadline

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A port nothing listens on right now.

    The port is released before returning, so another process may take it
    before the caller binds it; the labs then fail to start with a clear error.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether a TCP connection to host:port succeeds now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_accepting(host: str, port: int, deadline: Deadline, interval: float = 0.05) -> bool:
    """Poll until host:port accepts or the deadline passes; True when it accepts."""
    while True:
        if accepts(host, port, timeout=min(0.5, max(deadline.remaining(), 0.05))):
            return True
        if deadline.expired():
            return False
        time.sleep(min(interval, deadline.remaining()))
