"""A program the operator named, run once and bounded: the deploy's own rollback.

Given as ``PROGRAM ARGS`` (words split as a POSIX shell would split them,
never run through a shell) or as a TOML list of words; PROGRAM must be an
absolute path (cron, systemd and Ansible run wsgi-drain with a minimal PATH).
It runs in a session of its own, so that at its timeout, or when the run is
interrupted, its whole process group is killed (everything it started that
stayed in it, and only that).  Its output (stdout and stderr together, the
start of it, bounded) is kept for the report.  Output goes to an unnamed
temporary file, not a pipe: a child it leaves running in the background
would hold a pipe open long after the program itself exited.
"""

from __future__ import annotations

import contextlib
import os
import select
import shlex
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from wsgi_drain.errors import ConfigError

# How much of the program's output is kept for the report.
OUTPUT_LIMIT = 1 << 14
# Seconds to reap the program after SIGKILL (it cannot ignore it).
REAP = 5.0
# How often a running program is looked at (its exit is also seen at once
# through its pidfd where the kernel has one).
POLL = 0.05


def parse_argv(value: str | Sequence[str], what: str) -> tuple[str, ...]:
    """``"PROGRAM ARGS"`` or ``["PROGRAM", "ARG"]`` -> argv; ConfigError with the fix otherwise."""
    if isinstance(value, str):
        try:
            argv = tuple(shlex.split(value))
        except ValueError as err:
            raise ConfigError(f"{what} {value!r}: {err}") from err
    else:
        argv = tuple(value)
    if not argv or not all(isinstance(w, str) and w for w in argv):
        raise ConfigError(f"{what}: give a program and its arguments, e.g. '/srv/deploy/rollback'")
    if not Path(argv[0]).is_absolute():
        raise ConfigError(
            f"{what} {shlex.join(argv)!r}: give the program's absolute path (cron and systemd "
            "run wsgi-drain with a minimal PATH), e.g. '/srv/deploy/rollback myapp'"
        )
    return argv


@dataclass(frozen=True)
class ProgramResult:
    """How the program ended: its exit status (None: killed), output, and why it was killed."""

    argv: tuple[str, ...]
    returncode: int | None
    output: str
    duration: float
    timed_out: bool = False
    interrupted: bool = False
    # The program could not be started at all (no such file, not executable).
    start_error: str | None = None

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def describe(self) -> str:
        """One phrase: how it ended."""
        name = shlex.join(self.argv)
        if self.start_error is not None:
            return f"{name} could not be started: {self.start_error}"
        if self.timed_out:
            return (
                f"{name} did not finish within its timeout and was killed ({self.duration:.1f} s)"
            )
        if self.interrupted:
            return f"{name} was killed when the run was interrupted ({self.duration:.1f} s)"
        if self.returncode == 0:
            return f"{name} succeeded in {self.duration:.1f} s"
        return f"{name} failed with exit status {self.returncode} ({self.duration:.1f} s)"


def run_bounded(
    argv: Sequence[str],
    timeout: float,
    *,
    wake_fd: int | None = None,
    stop: object = None,
    env: Mapping[str, str] | None = None,
) -> ProgramResult:
    """Run `argv` once, at most `timeout` seconds; never raises for how the program ends.

    `wake_fd` (the run's interrupt pipe) is watched meanwhile; when it becomes
    readable and `stop()` (a callable) says so, the program's process group is
    killed and the result says `interrupted`.
    """
    started = time.monotonic()
    words = tuple(argv)
    with tempfile.TemporaryFile() as out:
        try:
            proc = subprocess.Popen(
                list(words),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                start_new_session=True,
            )
        except OSError as err:
            return ProgramResult(
                words, None, "", time.monotonic() - started, start_error=err.strerror or str(err)
            )
        timed_out = interrupted = False
        try:
            timed_out, interrupted = _wait(proc, started + timeout, wake_fd, stop)
        finally:
            if proc.returncode is None:
                _kill_group(proc)
        out.seek(0)
        output = out.read(OUTPUT_LIMIT).decode(errors="replace")
    returncode = None if (timed_out or interrupted) else proc.returncode
    return ProgramResult(
        words, returncode, output, time.monotonic() - started, timed_out, interrupted
    )


def _wait(
    proc: subprocess.Popen[bytes], until: float, wake_fd: int | None, stop: object
) -> tuple[bool, bool]:
    """Wait for the program's exit; (timed out, interrupted)."""
    while True:
        if proc.poll() is not None:
            return False, False
        left = until - time.monotonic()
        if left <= 0:
            return True, False
        fds = [wake_fd] if wake_fd is not None else []
        ready, _w, _x = select.select(fds, [], [], min(POLL, left))
        if ready:
            if callable(stop) and stop():
                return False, True
            with contextlib.suppress(BlockingIOError):  # woken by another signal
                os.read(ready[0], 512)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the program's process group (its own session), then reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=REAP)
