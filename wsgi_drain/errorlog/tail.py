"""Reading an error log as it grows (`ErrorLogTail`) or looking back (`recent_events`).

What a file does under a reader (rotation, copytruncate, a partial last
line, a file not there yet) is this module's; what a line means is lines.py's.
"""

from __future__ import annotations

import os
import stat
import weakref
from pathlib import Path

from wsgi_drain.errorlog.events import LifecycleEvent
from wsgi_drain.errorlog.lines import line_time, parse_line

_CHUNK = 1 << 20


class ErrorLogTail:
    """Lifecycle events from the lines appended to an error log after construction.

    The file is opened at construction and positioned at its end, so a
    rotation between construction and the first ``read_new`` loses nothing.
    Each ``read_new`` reads what was appended since the last call:

    - rotation (the path now names another inode, or no file): the rest of the
      old file is read through the descriptor still open on it, then the new
      file from its start; a partial last line of the old file is dropped;
    - truncation in place (copytruncate): reading restarts at 0 (lines written
      and truncated away between two calls are lost, and a file regrown past
      the old position before the next call is not noticed);
    - a partial last line is kept until its newline arrives;
    - a missing file is not an error: ``read_new`` returns [] until it appears,
      and then reads it from the start, since all of it is new.

    Holds one file descriptor; ``close()`` (or ``with``) releases it, and it is
    released anyway when the object is collected.  Errors other than a missing
    file (e.g. permission denied) propagate as OSError.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self._ident: tuple[int, int] | None = None
        self._offset = 0
        self._partial = b""
        self._finalizer: weakref.finalize[[int], ErrorLogTail] | None = None
        self._closed = False
        if self._open():
            self._offset = os.fstat(self._require_fd()).st_size

    def read_new(self) -> list[LifecycleEvent]:
        """Events from the complete lines appended since the last call."""
        if self._closed:
            msg = f"read from closed ErrorLogTail of {str(self.path)!r}"
            raise ValueError(msg)
        events = []
        for line in self.read_new_lines():
            event = parse_line(line)
            if event is not None:
                events.append(event)
        return events

    def read_new_lines(self) -> list[str]:
        """The complete lines appended since the last call (any kind), decoded."""
        if self._closed:
            msg = f"read from closed ErrorLogTail of {str(self.path)!r}"
            raise ValueError(msg)
        return [raw.decode("utf-8", "replace") for raw in self._read_new_lines()]

    def close(self) -> None:
        """Release the file descriptor; ``read_new`` raises ValueError afterwards."""
        self._release()
        self._closed = True

    def _release(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None
        self._fd = None
        self._ident = None

    def __enter__(self) -> ErrorLogTail:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals

    def _read_new_lines(self) -> list[bytes]:
        if self._fd is None:
            if not self._open():
                return []
            self._offset = 0
            self._partial = b""
        lines = self._drain()
        current = self._stat_path()
        if current is None or current == self._ident:
            return lines
        # Rotated: the old file is fully read above; switch to the new one.
        self._release()
        self._partial = b""
        if self._open():
            self._offset = 0
            lines.extend(self._drain())
        return lines

    def _drain(self) -> list[bytes]:
        fd = self._require_fd()
        if os.fstat(fd).st_size < self._offset:
            self._offset = 0  # truncated in place
            self._partial = b""
        lines: list[bytes] = []
        while True:
            chunk = os.pread(fd, _CHUNK, self._offset)
            if not chunk:
                return lines
            self._offset += len(chunk)
            data = self._partial + chunk
            *complete, self._partial = data.split(b"\n")
            lines.extend(complete)

    def _open(self) -> bool:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            msg = f"error log {str(self.path)!r} is not a regular file"
            raise OSError(msg)
        self._fd = fd
        self._ident = (info.st_dev, info.st_ino)
        self._finalizer = weakref.finalize(self, os.close, fd)
        return True

    def _stat_path(self) -> tuple[int, int] | None:
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (info.st_dev, info.st_ino)

    def _require_fd(self) -> int:
        if self._fd is None:  # pragma: no cover - guarded by callers
            msg = "error log is not open"
            raise RuntimeError(msg)
        return self._fd


def recent_events(
    path: Path, since: float, max_bytes: int = 2 << 20
) -> list[tuple[float, LifecycleEvent]]:
    """Lifecycle events logged at or after epoch `since`, from the file's last `max_bytes`.

    For `check`: bounded work however large the log has grown.  A missing or
    unreadable file gives [].
    """
    try:
        with path.open("rb") as source:
            size = source.seek(0, os.SEEK_END)
            source.seek(max(0, size - max_bytes))
            data = source.read(max_bytes)
    except OSError:
        return []
    found = []
    for raw in data.decode(errors="replace").splitlines():
        when = line_time(raw)
        if when is None or when < since:
            continue
        event = parse_line(raw)
        if event is not None:
            found.append((when, event))
    return found
