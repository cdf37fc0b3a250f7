"""Loopback ports and waiting for them to accept."""

from __future__ import annotations

import itertools
import os
import socket
import time

from wsgi_drain.deadline import Deadline

LOOPBACK = "127.0.0.1"


# Under pytest-xdist (scripts/test runs the integration suite on two workers)
# each worker takes its ports from a range of its own below the kernel's
# ephemeral range (32768-60999 on Debian): a port the kernel hands to one
# worker's bind(0) and that worker releases before Apache binds it could
# otherwise be handed to the other worker in between.  Outside xdist the
# kernel's choice is used, as before.
_WORKER_BASE = 20000
_WORKER_SPAN = 1500
_offsets = itertools.count()  # this process's next port in its worker's range


def free_port(host: str = LOOPBACK) -> int:
    """A port nothing listens on right now.

    The port is released before returning, so another process may take it
    before the caller binds it; the labs then fail to start with a clear error.
    Under pytest-xdist, worker N only ever returns ports of its own range, each
    at most once per cycle through the range.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw") or not worker[2:].isdigit():
        return _bind_free(host, 0)
    low = _WORKER_BASE + int(worker[2:]) * _WORKER_SPAN
    for _ in range(_WORKER_SPAN):
        try:
            return _bind_free(host, low + next(_offsets) % _WORKER_SPAN)
        except OSError:
            continue  # in use (or in TIME_WAIT): the next one
    raise OSError(f"no free port in {low}-{low + _WORKER_SPAN - 1} for worker {worker}")


def _bind_free(host: str, port: int) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, port))
        bound: int = sock.getsockname()[1]
        return bound


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
