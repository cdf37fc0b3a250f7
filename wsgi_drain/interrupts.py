"""SIGINT/SIGTERM/SIGHUP during a run: record the signal, let the main loop act on it.

The handlers only record the signal and wake the loop through
`signal.set_wakeup_fd`; the restart sequence checks at its own safe points and
then runs its one failure policy (restore routers, or leave them diverted), so
an operator's Ctrl-C never leaves a backend half-handled.  SIGHUP (an SSH
session that dropped) is handled the same way: its default action would end
the run at once, mid-drain, with the backend out of rotation.
"""

from __future__ import annotations

import os
import select
import signal
from types import FrameType, TracebackType

from wsgi_drain.errors import Interrupted

_CAUGHT = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupts:
    """Context manager: catch SIGINT/SIGTERM/SIGHUP for the duration of a run."""

    def __init__(self) -> None:
        self.received: signal.Signals | None = None
        self._read_fd = -1
        self._write_fd = -1
        self._previous: dict[int, object] = {}
        self._previous_wakeup = -1

    def __enter__(self) -> Interrupts:
        self._read_fd, self._write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._previous_wakeup = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
        for sig in _CAUGHT:
            self._previous[sig] = signal.signal(sig, self._record)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        signal.set_wakeup_fd(self._previous_wakeup)
        os.close(self._read_fd)
        os.close(self._write_fd)

    def _record(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signal.Signals(signum)

    @property
    def fd(self) -> int:
        """Readable when a signal has arrived; poll it with the fds you wait on."""
        return self._read_fd

    def check(self) -> None:
        """Raise Interrupted if SIGINT, SIGTERM or SIGHUP arrived."""
        if self.received is not None:
            why = " (the terminal hung up)" if self.received == signal.SIGHUP else ""
            raise Interrupted(f"interrupted by {self.received.name}{why}")

    def sleep(self, timeout: float) -> None:
        """Sleep up to `timeout` seconds, returning early (and raising) on a signal."""
        self.check()
        if timeout > 0:
            select.select([self._read_fd], [], [], timeout)
        self._drain()
        self.check()

    def _drain(self) -> None:
        try:
            while os.read(self._read_fd, 512):
                pass
        except BlockingIOError:
            pass
