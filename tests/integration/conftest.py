"""Real stacks for the integration tests: Apache + mod_wsgi (Debian's or PyPI's)
behind a real HAProxy on loopback, and a way to run the installed command.

Missing Apache, HAProxy or the PyPI module skips a test on a workstation and
fails it under CI (CI=true): a skipped integration test would hide a broken
install step.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import lab
from lab import (
    ApacheLab,
    HAProxyLab,
    LabUnavailable,
    ModWsgi,
    Stack,
    skip_or_fail,
    two_hosts,
)

VARIANTS: list[ModWsgi] = ["debian", "pypi"]


def wsgi_drain_command() -> list[str]:
    """The installed `wsgi-drain` command (missing: skip, or fail under CI)."""
    try:
        return lab.wsgi_drain_command()
    except LabUnavailable as err:
        skip_or_fail(str(err))


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.stdout)
        return data


def run_cli(*args: str, timeout: float = 120.0, env: Mapping[str, str] | None = None) -> Run:
    """The installed command with `args`; `env` is added to this process's environment."""
    done = subprocess.run(
        [*wsgi_drain_command(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **env} if env else None,
    )
    return Run(done.returncode, done.stdout, done.stderr)


def start(lab: ApacheLab | HAProxyLab) -> None:
    try:
        lab.start()
    except LabUnavailable as err:
        skip_or_fail(str(err))


def restart_args(stack: Stack, *extra: str, haproxy: bool = True) -> list[str]:
    """`restart` of host a's group, with its health URL and the test's state dir."""
    words = [
        "restart", "--group", "myapp", "--apache-pidfile", str(stack.a.pid_file),
        "--health-url", f"{stack.a.url}/health", "--state-dir", str(stack.state_dir),
    ]  # fmt: skip
    if haproxy:
        words += ["--haproxy", f"{stack.haproxy.admin_socket}:be_app/a"]
    return [*words, *extra]


@pytest.fixture(params=VARIANTS)
def modwsgi(request: pytest.FixtureRequest) -> ModWsgi:
    variant: ModWsgi = request.param
    return variant


@pytest.fixture
def stack(tmp_path: Path, modwsgi: ModWsgi) -> Iterator[Stack]:
    with ExitStack() as stop:
        try:
            running = stop.enter_context(two_hosts(tmp_path, modwsgi))
        except LabUnavailable as err:
            skip_or_fail(str(err))
        yield running


@pytest.fixture
def apache(tmp_path: Path, modwsgi: ModWsgi) -> Iterator[ApacheLab]:
    lab = ApacheLab(tmp_path / "a", modwsgi=modwsgi)
    try:
        start(lab)
        yield lab
    finally:
        lab.stop()


# What a checkout has that a clean clone does not: never copied into a build.
_NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "tmp"
)


@pytest.fixture(scope="session")
def dist() -> Iterator[Path]:
    """sdist and wheel of the checkout, built by `python -m build` in a temporary copy.

    A copy, so the tree under test is never written to (setuptools builds in
    the source directory).
    """
    repo = Path(__file__).resolve().parents[2]
    work = Path(tempfile.mkdtemp(prefix="wsgi-drain-wheel-", dir="/tmp"))
    try:
        shutil.copytree(repo, work / "src", ignore=_NOT_SOURCE)
        done = subprocess.run(
            [sys.executable, "-m", "build", "--outdir", str(work / "dist"), str(work / "src")],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            cwd="/",
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        yield work / "dist"
    finally:
        shutil.rmtree(work, ignore_errors=True)
