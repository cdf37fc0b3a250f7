"""Installed like an ops tool: a wheel built, installed, and driven by its full path.

One module-scoped build (`python -m build`, sdist then the wheel from the
sdist, as a packager does) from a copy of the checkout, so the tree under test
is never written to.  Then the two installs the README recommends for
production, each with the distribution's own /usr/bin/python3 (Debian 12
refuses `pip install` into it as root, PEP 668): a plain virtualenv under an
/opt-like directory with a symlink in a bin directory, and pipx with its home
and bin directory moved.  Every command is run by full path with a minimal
environment (no virtualenv on PATH), as cron, systemd or Ansible run it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import LabUnavailable, LoadLoop, Outcome, Stack, skip_or_fail, slow_request, two_hosts
from wsgi_drain import __version__

# One worker runs the whole module: its module- or session-wide fixture is built once.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("test_wheel")]

REPO = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = Path("/usr/bin/python3")
CLEAN_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8"}


def _run(argv: list[str], *, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd="/",  # never the checkout: `import wsgi_drain` must find the installed copy
        env={**CLEAN_ENV, "HOME": os.environ.get("HOME", "/root"), **env},
    )


def _ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"{done.args} exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture
def place() -> Iterator[Path]:
    """A world-traversable directory (www-data never reads it, but /opt is 755)."""
    path = Path(tempfile.mkdtemp(prefix="wsgi-drain-opt-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _wheel(dist: Path) -> Path:
    (wheel,) = dist.glob("wsgi_drain-*-py3-none-any.whl")
    return wheel


def test_wheel_carries_the_package_only_and_the_sdist_the_docs_and_examples(dist: Path) -> None:
    names = zipfile.ZipFile(_wheel(dist)).namelist()
    tops = {n.split("/", 1)[0] for n in names}
    assert tops == {"wsgi_drain", f"wsgi_drain-{__version__}.dist-info"}, tops
    assert "wsgi_drain/cli/__init__.py" in names
    assert not [n for n in names if n.startswith(("lab/", "tests/", "wsgi_drain/lab/"))]
    assert any(n.endswith("LICENSE") for n in names), "the licence is not in the wheel"

    (sdist,) = dist.glob("wsgi_drain-*.tar.gz")
    with tarfile.open(sdist) as tar:
        members = {m.name.split("/", 1)[1] for m in tar.getmembers() if "/" in m.name}
    for wanted in (
        "LICENSE",
        "CHANGELOG.md",
        "docs/mod_wsgi.md",
        "docs/install.md",
        "apache-conf/myapp-daemon.conf",
        "scripts/cron.d-wsgi-drain",
        "scripts/systemd/wsgi-drain-check@.service",
        "scripts/systemd/wsgi-drain-check@.timer",
        "scripts/logrotate.d-apache2",
        "scripts/certbot-deploy-hook",
        "ansible/rolling-restart.yml",
        "ansible/collections/ansible_collections/wsgi_drain/apache/roles/wsgi_drain/tasks/restart.yml",
        "lab/apache.py",
        "tests/integration/test_wheel.py",
    ):
        assert wanted in members, f"{wanted} missing from the sdist"


def _drive(command: Path, stack: Stack, state: Path) -> None:
    """A real restart through HAProxy by `command`'s full path, under load: nothing lost."""
    load = LoadLoop(stack.haproxy.url + "/", max_requests=3000, max_seconds=40)
    load.start()
    try:
        time.sleep(0.5)
        slow = slow_request(stack.haproxy.url + "/slow?s=2", 2)
        time.sleep(0.3)
        done = _run(
            [
                str(command), "restart", "--group", "myapp",
                "--apache-pidfile", str(stack.a.pid_file),
                "--haproxy", f"{stack.haproxy.admin_socket}:be_app/a",
                "--health-url", f"{stack.a.url}/health", "--state-dir", str(state),
            ],
            timeout=120,
        )  # fmt: skip
        time.sleep(0.3)
    finally:
        load.stop()
    out = _ok(done)
    assert out.startswith("wsgi-drain: OK - group 'myapp' restarted"), out
    assert slow.result(timeout=30).status == 200
    summary = load.summary()
    failed = {k: v for k, v in summary.counts.items() if k != Outcome.OK and v}
    assert summary.total > 20 and not failed, summary


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    try:
        with two_hosts(tmp_path) as running:
            yield running
    except LabUnavailable as err:
        skip_or_fail(str(err))


def test_wheel_in_a_fresh_virtualenv_runs_by_full_path_from_a_symlink(
    dist: Path, place: Path, stack: Stack, tmp_path: Path
) -> None:
    if not SYSTEM_PYTHON.exists():
        skip_or_fail(f"{SYSTEM_PYTHON} not found: apt-get install python3-venv")
    venv = place / "opt" / "wsgi-drain"
    _ok(_run([str(SYSTEM_PYTHON), "-m", "venv", str(venv)]))
    _ok(_run([str(venv / "bin" / "pip"), "install", "-q", str(_wheel(dist))]))
    link = place / "usr-local-bin" / "wsgi-drain"
    link.parent.mkdir()
    link.symlink_to(venv / "bin" / "wsgi-drain")

    version = _ok(_run([str(link), "--version"]))
    assert __version__ in version
    # The installed copy, not the checkout, answers.
    where = _ok(
        _run([str(venv / "bin" / "python"), "-c", "import wsgi_drain; print(wsgi_drain.__file__)"])
    )
    assert where.startswith(str(venv)), where
    # Shell completion is click's: the script prints its bash completion function.
    completion = _ok(_run([str(link)], _WSGI_DRAIN_COMPLETE="bash_source"))
    assert "complete -o nosort -F _wsgi_drain_completion wsgi-drain" in completion
    _drive(link, stack, tmp_path / "state")


def test_wheel_installed_with_pipx_runs_by_full_path(
    dist: Path, place: Path, stack: Stack, tmp_path: Path
) -> None:
    pipx = shutil.which("pipx", path=CLEAN_ENV["PATH"])
    if pipx is None:
        skip_or_fail("pipx not found: apt-get install pipx")
    home, bin_dir = place / "pipx", place / "bin"
    _ok(
        _run(
            [pipx, "install", str(_wheel(dist))],
            PIPX_HOME=str(home),
            PIPX_BIN_DIR=str(bin_dir),
            PIPX_DEFAULT_PYTHON=str(SYSTEM_PYTHON),
        )
    )
    command = bin_dir / "wsgi-drain"
    assert __version__ in _ok(_run([str(command), "--version"]))
    _drive(command, stack, tmp_path / "state")
