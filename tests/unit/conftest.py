"""Fixtures the unit tests of real processes and sockets share."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator

import pytest

from tests.unit.children import reap


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[str]]]:
    """The test's own child processes: each one killed (if still running) and reaped after."""
    children: list[subprocess.Popen[str]] = []
    yield children
    reap(children)


@pytest.fixture
def listeners() -> Iterator[list[socket.socket]]:
    """The test's own sockets (see servers.bind), closed after it."""
    made: list[socket.socket] = []
    yield made
    for sock in made:
        sock.close()
