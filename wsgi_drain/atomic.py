"""Replacing a file atomically: readers see the old file or the new one, never half of one.

One way, for every file wsgi-drain writes over: the run journal, the
Prometheus textfile, the nginx upstream file it edits.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def write_atomic(
    path: Path,
    data: str | bytes,
    mode: int = 0o644,
    *,
    owner: tuple[int, int] | None = None,
    durable: bool = False,
) -> None:
    """Write `data` to a temporary file beside `path`, then rename it over `path`.

    The new file gets `mode` and, when given, `owner` (uid, gid; left as the
    writer's where changing it is not permitted).  Its contents are fsynced
    before the rename; with `durable` the directory is fsynced after it too,
    so the rename itself survives a crash of the host.  On any failure the
    temporary file is removed and `path` is left as it was.
    """
    # mkstemp: O_EXCL, O_NOFOLLOW and an unpredictable name, so nobody can
    # plant a symlink or a file there first; the mode is set on the descriptor.
    import tempfile  # only a check with --textfile writes one

    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        os.fchmod(fd, mode)
        if owner is not None:
            with contextlib.suppress(PermissionError):
                os.fchown(fd, *owner)
        with os.fdopen(fd, "wb") as out:
            out.write(data.encode() if isinstance(data, str) else data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    if durable:
        fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make the entries of directory `path` (a rename, a removal) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
