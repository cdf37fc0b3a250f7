"""What the running httpd binary says about itself: compiled-in modules and version.

`<IfModule>` and `<IfVersion>` depend on them, and nothing in the
configuration text tells them.  The binary is asked once each, lazily (most
configurations never need it), with a timeout, no shell and a small fixed
environment: `httpd -l` and `httpd -v` read no configuration.
"""

from __future__ import annotations

import re
from pathlib import Path

# Neither -l nor -v reads the configuration; both answer in ~15 ms.
TIMEOUT = 5.0
_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}
_VERSION = re.compile(r"Apache/(\d+)\.(\d+)\.(\d+)")


class HttpdBinary:
    """The facts of one httpd executable (an `apacheconf.HttpdFacts`).

    `path` should be `/proc/PID/exe` of the running parent when it can be
    read: that is the binary actually running, even if a package upgrade has
    replaced the file on disk since.  Each fact is None when the binary
    cannot be run or its answer not understood; `problem` then says why.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.problem: str | None = None if path is not None else "the httpd binary is unknown"
        self._static: frozenset[str] | None = None
        self._version: tuple[int, int, int] | None = None
        self._asked: set[str] = set()

    def static_modules(self) -> frozenset[str] | None:
        if "-l" not in self._asked:
            self._asked.add("-l")
            out = self._run("-l")
            if out is not None:
                self._static = parse_static_modules(out)
        return self._static

    def version(self) -> tuple[int, int, int] | None:
        if "-v" not in self._asked:
            self._asked.add("-v")
            out = self._run("-v")
            if out is not None:
                self._version = parse_version(out)
                if self._version is None:
                    self.problem = f"`{self.path} -v` printed no version: {out.strip()[:80]!r}"
        return self._version

    def _run(self, flag: str) -> str | None:
        if self.path is None:
            return None
        import subprocess  # most configurations never ask (check: issue 22)

        try:
            done = subprocess.run(
                [str(self.path), flag],
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
                env=_ENV,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            self.problem = f"cannot run `{self.path} {flag}`: {err}"
            return None
        if done.returncode != 0:
            self.problem = f"`{self.path} {flag}` exited {done.returncode}: {done.stderr.strip()}"
            return None
        return done.stdout


def parse_static_modules(text: str) -> frozenset[str] | None:
    """`httpd -l` output -> source names of the compiled-in modules; None if not that output."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("Compiled in modules"):
        return None
    return frozenset(line.strip() for line in lines[1:] if line.strip())


def parse_version(text: str) -> tuple[int, int, int] | None:
    """`httpd -v` output ("Server version: Apache/2.4.71 (Debian)") -> (2, 4, 71)."""
    match = _VERSION.search(text)
    if match is None:
        return None
    return int(match[1]), int(match[2]), int(match[3])
