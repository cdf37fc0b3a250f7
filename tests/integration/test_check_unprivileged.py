"""`check` as the monitoring user: NRPE and Icinga agents run as `nagios`, not root.

The check runs as `nobody` with the distribution's Python (python3-click,
python3-psutil), the way an agent runs a plugin, against a real Apache whose
parent runs as root.  What it can read is evaluated; what it cannot is
UNKNOWN and named, never a CRITICAL it did not see; a CRITICAL it did see
still wins.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import ApacheLab, skip_or_fail
from tests.integration.conftest import start
from wsgi_drain.state import Journal

pytestmark = pytest.mark.integration

NOBODY = 65534
REPO = Path(__file__).resolve().parents[2]
TIMEOUTS = {"graceful-timeout": 5, "shutdown-timeout": 5}


@pytest.fixture
def world() -> Iterator[Path]:
    """A directory `nobody` can traverse (pytest's tmp_path is private), with a copy of
    the package for the system Python; removed afterwards."""
    if os.geteuid() != 0:
        skip_or_fail("needs root to run the check as another user (CI runs as root)")
    root = Path(tempfile.mkdtemp(prefix="wsgi-drain-unpriv-", dir="/tmp"))
    try:
        shutil.copytree(REPO / "wsgi_drain", root / "py" / "wsgi_drain")
        for directory, _dirs, _files in os.walk(root):
            os.chmod(directory, 0o755)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def check_as_nobody(world: Path, lab: ApacheLab, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
         "env", f"PYTHONPATH={world / 'py'}", "/usr/bin/python3", "-m", "wsgi_drain",
         "check", "--group", "myapp", "--apache-pidfile", str(lab.pid_file), *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_check_unprivileged_evaluates_what_it_can_read(world: Path) -> None:
    lab = ApacheLab(world / "a", daemon_options=TIMEOUTS)
    try:
        start(lab)
        done = check_as_nobody(
            world, lab, "--health-url", f"{lab.url}/health", "--state-dir", str(world / "state")
        )
    finally:
        lab.stop()
    first = done.stdout.splitlines()[0] if done.stdout else ""
    assert done.returncode == 0, done.stdout + done.stderr
    assert first.startswith("WSGI-DRAIN OK - myapp: 3/3 processes up, health HTTP 200"), first


def test_check_unprivileged_says_unknown_for_what_it_cannot_read(world: Path) -> None:
    lab = ApacheLab(world / "a", daemon_options=TIMEOUTS)
    state = world / "state"
    try:
        start(lab)
        # Root-only, as on a real host: the state directory (with a journal a
        # root check would call CRITICAL) and the error log.
        Journal(group="myapp", pid=1, started=0.0).save(state)
        lab.error_log.chmod(0o600)
        done = check_as_nobody(world, lab, "--state-dir", str(state))
        lab.set_healthy(False)
        worse = check_as_nobody(
            world, lab, "--state-dir", str(state), "--health-url", f"{lab.url}/health"
        )
    finally:
        lab.stop()
    assert done.returncode == 3, done.stdout + done.stderr
    assert done.stdout.startswith("WSGI-DRAIN UNKNOWN - myapp: cannot read"), done.stdout
    assert "CRITICAL" not in done.stdout
    assert f"the state directory {state}" in done.stdout
    assert f"the error log {lab.error_log}" in done.stdout
    assert "uid 65534" in done.stdout and "sudoers" in done.stdout
    # What it could read and found broken still wins over what it could not read.
    assert worse.returncode == 2, worse.stdout + worse.stderr
    assert worse.stdout.startswith("WSGI-DRAIN CRITICAL - myapp:"), worse.stdout
