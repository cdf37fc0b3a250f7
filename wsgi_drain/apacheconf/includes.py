"""`Include`/`IncludeOptional` expanded as server/config.c and util.c expand them.

`include_targets` walks an include's target to the files httpd would read, in its
order: a directory whole and recursively, a wildcard one path component at a
time (ap_dir_nofnmatch, ap_dir_fnmatch), entries in byte order.  `Sources`
keeps what the reading depended on (every file read, every directory listed,
the nearest existing parent of an optional include that matched nothing) and
the chain of files being read, which refuses include loops and too deep a
nesting as httpd does.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from wsgi_drain.apacheconf.words import Line
from wsgi_drain.errors import ApacheConfigError

# httpd's include recursion limit (AP_MAX_INCLUDE_DEPTH).
_MAX_INCLUDE_DEPTH = 128


def root_relative(server_root: Path, name: str) -> Path:
    """config.c ap_server_root_relative: absolute as is, else under `server_root`."""
    return Path(os.path.normpath(server_root / name))


class Sources:
    """The files read (`files`, each once, in the order first read) and all inputs.

    `inputs` are the files and directories whose contents or listing the
    reading depended on, each once, in the order first met.
    """

    def __init__(self) -> None:
        self.files: list[Path] = []
        self.inputs: list[Path] = []
        self._stack: list[str] = []

    def note(self, path: Path) -> None:
        """Record `path` as an input (once)."""
        if path not in self.inputs:
            self.inputs.append(path)

    def check_include(self, path: Path, at: Line) -> None:
        """Refuse to include `path` at `at` when it is being read already or nests too deep."""
        real = os.path.realpath(path)
        if real in self._stack:
            chain = " -> ".join([*self._stack[self._stack.index(real) :], real])
            raise ApacheConfigError(f"{at.source}: Include loop: {chain}")
        if len(self._stack) > _MAX_INCLUDE_DEPTH:
            msg = f"{at.source}: exceeded the maximum include depth of {_MAX_INCLUDE_DEPTH}"
            raise ApacheConfigError(msg)

    @contextmanager
    def reading(self, path: Path) -> Iterator[None]:
        """While `path` is read: it is a file read, an input, and on the include chain."""
        if path not in self.files:
            self.files.append(path)
        self.note(path)
        self._stack.append(os.path.realpath(path))
        try:
            yield
        finally:
            self._stack.pop()


def include_targets(
    target: Path, optional: bool, at: Line, note: Callable[[Path], None]
) -> Iterator[Path]:
    """The files an include of `target` (already under ServerRoot) reads, in httpd's order.

    Lazily, so that `note` sees the directories listed in the order they are
    met between the files read.  Raises ApacheConfigError when a directory
    cannot be listed, or when a non-optional wildcard matches nothing.
    """
    if not _has_wildcard(str(target)):
        yield from _path(target, optional, at, note)
        return
    parts = target.parts
    yield from _glob(Path(parts[0]), list(parts[1:]), optional, at, note)


def _path(path: Path, optional: bool, at: Line, note: Callable[[Path], None]) -> Iterator[Path]:
    """util.c ap_dir_nofnmatch: a directory is read whole, recursively, in byte order."""
    if path.is_dir():
        note(path)
        try:
            names = os.listdir(path)
        except OSError as err:
            msg = f"{at.source}: could not open directory {path}: {err.strerror}"
            raise ApacheConfigError(msg) from err
        # All entries, dot files too: httpd skips only "." and "..".
        for entry in sorted(str(path / n) for n in names):
            yield from _path(Path(entry), optional, at, note)
        return
    if optional and not path.exists():
        note(_existing_ancestor(path))
        return
    yield path


def _glob(
    base: Path, parts: list[str], optional: bool, at: Line, note: Callable[[Path], None]
) -> Iterator[Path]:
    """util.c ap_dir_fnmatch: match one path component at a time, in byte order."""
    part, rest = parts[0], parts[1:]
    if not _has_wildcard(part):
        if rest:
            yield from _glob(base / part, rest, optional, at, note)
        else:
            yield from _path(base / part, optional, at, note)
        return
    note(_existing_ancestor(base))
    try:
        names = os.listdir(base)
    except FileNotFoundError:
        if optional:
            return
        raise ApacheConfigError(
            f"{at.source}: could not open directory {base}: No such file or directory"
        ) from None
    except OSError as err:
        msg = f"{at.source}: could not open directory {base}: {err.strerror}"
        raise ApacheConfigError(msg) from err
    matches = sorted(
        str(base / name)
        for name in names
        # APR_FNM_PERIOD: a leading dot must be matched by a dot.
        if fnmatch.fnmatchcase(name, part)
        and (not name.startswith(".") or part.startswith("."))
        # A wildcard inside the path only matches directories.
        and (not rest or (base / name).is_dir())
    )
    if not matches:
        if optional:
            return
        raise ApacheConfigError(
            f"{at.source}: Include: no matches for the wildcard {part!r} in {str(base)!r}"
        )
    for match in matches:
        if rest:
            yield from _glob(Path(match), rest, optional, at, note)
        else:
            yield from _path(Path(match), optional, at, note)


def _existing_ancestor(path: Path) -> Path:
    """`path` or its nearest existing parent: whose listing a new file would change."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return path


def _has_wildcard(text: str) -> bool:
    """apr_fnmatch_test, near enough: any of the glob characters."""
    return any(char in text for char in "*?[")
