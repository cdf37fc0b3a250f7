"""Real child processes for the unit tests, and their clean-up (psutil's way: always reaped)."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from typing import Any

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
