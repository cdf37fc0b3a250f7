"""Real stacks for the integration tests: Apache + mod_wsgi (Debian's or PyPI's)
behind a real HAProxy on loopback, and a way to run the installed command.

Missing Apache, HAProxy or the PyPI module skips a test on a workstation and
fails it under CI (CI=true): a skipped integration test would hide a broken
install step.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from wsgi_drain.lab import ApacheLab, HAProxyLab, LabUnavailable, ModWsgi, skip_or_fail

VARIANTS: list[ModWsgi] = ["debian", "pypi"]


def wsgi_drain_command() -> list[str]:
    """The installed console script next to this interpreter, else on PATH."""
    beside = Path(sys.executable).parent / "wsgi-drain"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("wsgi-drain")
    if found is None:
        skip_or_fail("the wsgi-drain command is not installed: pip install -e .")
    return [found]


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.stdout)
        return data


def run_cli(*args: str, timeout: float = 120.0) -> Run:
    done = subprocess.run(
        [*wsgi_drain_command(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Run(done.returncode, done.stdout, done.stderr)


def start(lab: ApacheLab | HAProxyLab) -> None:
    try:
        lab.start()
    except LabUnavailable as err:
        skip_or_fail(str(err))


@dataclass
class Stack:
    """Two Apache hosts (a, b) behind one HAProxy; `a` is the one restarted."""

    a: ApacheLab
    b: ApacheLab
    haproxy: HAProxyLab
    state_dir: Path

    def args(self, *extra: str, haproxy: bool = True) -> list[str]:
        words = [
            "restart",
            "--group",
            "myapp",
            "--apache-pidfile",
            str(self.a.pid_file),
            "--health-url",
            f"{self.a.url}/health",
            "--state-dir",
            str(self.state_dir),
        ]
        if haproxy:
            words += ["--haproxy", f"{self.haproxy.admin_socket}:be_app/a"]
        return [*words, *extra]


@pytest.fixture(params=VARIANTS)
def modwsgi(request: pytest.FixtureRequest) -> ModWsgi:
    variant: ModWsgi = request.param
    return variant


@pytest.fixture
def stack(tmp_path: Path, modwsgi: ModWsgi) -> Iterator[Stack]:
    with ExitStack() as stop:
        a = ApacheLab(tmp_path / "a", modwsgi=modwsgi)
        stop.callback(a.stop)
        start(a)
        b = ApacheLab(tmp_path / "b", modwsgi=modwsgi)
        stop.callback(b.stop)
        start(b)
        haproxy = HAProxyLab(
            tmp_path / "haproxy",
            [("a", "127.0.0.1", a.port), ("b", "127.0.0.1", b.port)],
            pin={"/slow": "a"},
        )
        stop.callback(haproxy.stop)
        start(haproxy)
        yield Stack(a, b, haproxy, tmp_path / "state")


@pytest.fixture
def apache(tmp_path: Path, modwsgi: ModWsgi) -> Iterator[ApacheLab]:
    lab = ApacheLab(tmp_path / "a", modwsgi=modwsgi)
    try:
        start(lab)
        yield lab
    finally:
        lab.stop()
