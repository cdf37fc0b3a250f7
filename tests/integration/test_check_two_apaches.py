"""Two Apache instances on one host, no pid file given (issue 22).

`check` and `restart` use the one instance whose configuration defines the
group (as `status` lists them); a group both define is UNKNOWN for `check`
and exit 3 for `restart`, with a short fix (the pid file to pass), never a
false CRITICAL "Apache is not running" nor both command lines.

Other engineers' Apaches may run on the same machine: the groups here have
names no other lab uses, so "the one that defines it" stays this test's.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import ApacheLab
from tests.integration.conftest import run_cli, start

# alone: it looks at every Apache on the host, so no other test may run one meanwhile
# (scripts/test runs these after the parallel part).
pytestmark = [pytest.mark.integration, pytest.mark.alone]

TIMEOUTS = {"graceful-timeout": 5, "shutdown-timeout": 5}
SHARED = "shared22"
SHARED_LINE = f"WSGIDaemonProcess {SHARED} processes=1 threads=2 display-name=%{{GROUP}}"


@pytest.fixture
def two(tmp_path: Path) -> Iterator[tuple[ApacheLab, ApacheLab]]:
    first = ApacheLab(tmp_path / "one", group="one22", processes=2, daemon_options=TIMEOUTS,
                      before_config=SHARED_LINE)  # fmt: skip
    second = ApacheLab(tmp_path / "two", group="two22", processes=2, daemon_options=TIMEOUTS,
                       before_config=SHARED_LINE)  # fmt: skip
    try:
        start(first)
        start(second)
        yield first, second
    finally:
        second.stop()
        first.stop()


def test_check_and_restart_with_two_apache_instances_use_the_one_defining_the_group(
    two: tuple[ApacheLab, ApacheLab], tmp_path: Path
) -> None:
    first, second = two
    state = ["--state-dir", str(tmp_path / "state")]
    run = run_cli("check", "--group", "two22", *state)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.startswith("WSGI-DRAIN OK - two22: 2/2 processes up"), run.stdout

    untouched = set(first.daemon_pids())
    old = set(second.daemon_pids())
    run = run_cli("restart", "--group", "two22", "--json", *state)
    assert run.returncode == 0, run.stdout + run.stderr
    report = run.json()
    assert report["apache"]["pid"] == second.parent_pid  # type: ignore[index]
    assert {p["old_pid"] for p in report["processes"]} == old  # type: ignore[union-attr]
    assert set(first.daemon_pids()) == untouched, "the other instance's group was touched"


def test_check_of_a_group_two_apache_instances_define_is_unknown_with_the_fix(
    two: tuple[ApacheLab, ApacheLab], tmp_path: Path
) -> None:
    first, second = two
    run = run_cli("check", "--group", SHARED, "--state-dir", str(tmp_path / "state"))
    assert run.returncode == 3, run.stdout + run.stderr
    line = run.stdout.splitlines()[0]
    assert line.startswith(f"WSGI-DRAIN UNKNOWN - {SHARED}: group {SHARED!r} is defined by 2")
    assert "not running" not in run.stdout
    assert f"--apache-pidfile {first.pid_file}" in run.stdout
    assert f"--apache-pidfile {second.pid_file}" in run.stdout


def test_restart_check_of_a_group_two_apache_instances_define_exits_3_with_a_short_fix(
    two: tuple[ApacheLab, ApacheLab], tmp_path: Path
) -> None:
    first, second = two
    before = set(first.socket_holders().get(1, [])) | set(second.socket_holders().get(1, []))
    run = run_cli("restart", "--group", SHARED, "--state-dir", str(tmp_path / "state"))
    assert run.returncode == 3, run.stdout + run.stderr
    said = run.stdout + run.stderr
    assert f"--apache-pidfile {second.pid_file}" in said
    # Not both command lines (~700 characters): pid and pid file each.
    assert str(first.conf_path) not in said and "-DFOREGROUND" not in said
    assert len(run.stderr) < 400, run.stderr
    after = set(first.socket_holders().get(1, [])) | set(second.socket_holders().get(1, []))
    assert after == before, "a process of the ambiguous group was signalled"
