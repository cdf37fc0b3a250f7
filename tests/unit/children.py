"""Real child processes for the unit tests, and their clean-up (psutil's way: always reaped)."""

from __future__ import annotations

import ctypes
import os
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from wsgi_drain import procfs

# A child that says it is up, then sleeps: the membership and watch tests signal it.
SLEEPER = "import sys, time; sys.stdout.write('ready\\n'); sys.stdout.flush(); time.sleep(60)"


def reap(started: Sequence[subprocess.Popen[Any]]) -> None:
    """Kill what still runs of `started` (only these: the test's own children), reap each."""
    for child in started:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=10)
        if child.stdout is not None:
            child.stdout.close()


PTRACE_ATTACH, PTRACE_DETACH = 16, 17


@contextmanager
def traced(pid: int) -> Iterator[None]:
    """`pid` held in a tracing stop ("t" in /proc), as a debugger attached to it holds it."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    libc.ptrace.restype = ctypes.c_long
    if libc.ptrace(PTRACE_ATTACH, pid, None, None) != 0:
        raise OSError(ctypes.get_errno(), f"ptrace(PTRACE_ATTACH, {pid})")
    try:
        _, status = os.waitpid(pid, 0)
        assert os.WIFSTOPPED(status) and procfs.state_of(pid) == "t"
        yield
    finally:
        libc.ptrace(PTRACE_DETACH, pid, None, None)
