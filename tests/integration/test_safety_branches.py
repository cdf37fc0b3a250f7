"""The restart's safety branches that need a real HAProxy (issue 25).

Real Apache + mod_wsgi behind a real HAProxy (Debian's module: the branches
are the router's, not the build's).  The unit suite reaches every branch on a
scripted router (tests/unit/test_safety_branches.py); these show the ones a
real load balancer can take by itself: the server put back in rotation behind
wsgi-drain's back during the drain (what a HAProxy reload without a state
file does), and the operator's MAINT set in the middle of a run.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import LabUnavailable, Stack, skip_or_fail, slow_request, two_hosts
from tests.integration.conftest import restart_args, wsgi_drain_command
from wsgi_drain.state import Journal

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with contextlib.ExitStack() as stop:
        try:
            running = stop.enter_context(
                two_hosts(tmp_path, "debian", daemon_options={"graceful-timeout": 5})
            )
        except LabUnavailable as err:
            skip_or_fail(str(err))
        yield running


def start_restart(stack: Stack, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*wsgi_drain_command(), *restart_args(stack, "--json", *extra)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str]) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_back_in_rotation_before_the_signal_is_exit_4_with_nothing_signalled(
    stack: Stack,
) -> None:
    old = set(stack.a.daemon_pids())
    # A request in flight holds the drain open while the server is put back.
    slow = slow_request(stack.haproxy.url + "/slow", 4)
    stack.haproxy.wait_status("a", "UP", timeout=10)
    proc = start_restart(stack, "--drain-timeout", "30")
    stack.haproxy.wait_status("a", "DRAIN", timeout=20)
    # What a reload without a server-state file does: the server is READY again.
    assert stack.haproxy.command("set server be_app/a state ready").strip() == ""
    out, err = finish(proc)
    assert proc.returncode == 4, (out, err)
    report = json.loads(out)
    assert report["exit_status"] == 4
    assert "the server is back in rotation" in report["message"], report["message"]
    assert "nothing was signalled" in report["message"]
    assert set(stack.a.daemon_pids()) == old, "a process was signalled"
    assert slow.result(timeout=30).status == 200
    assert stack.haproxy.admin_state("a") == "ready"
    assert not Journal.path_for(stack.state_dir, "myapp").exists()


def test_operator_maint_set_during_the_run_is_left_by_the_restore(stack: Stack) -> None:
    old = set(stack.a.daemon_pids())
    slow = slow_request(stack.haproxy.url + "/slow", 3)
    stack.haproxy.wait_status("a", "UP", timeout=10)
    proc = start_restart(stack, "--drain-timeout", "30")
    stack.haproxy.wait_status("a", "DRAIN", timeout=20)
    # The operator takes the server out for maintenance while wsgi-drain drains it.
    assert stack.haproxy.command("set server be_app/a state maint").strip() == ""
    out, err = finish(proc)
    assert proc.returncode == 0, (out, err)
    server = f"haproxy {stack.haproxy.admin_socket} be_app/a"
    warnings = json.loads(out)["warnings"]
    assert f"{server} was set to maint by someone during the run: left so" in warnings, warnings
    assert stack.haproxy.admin_state("a") == "maint"
    new = set(stack.a.daemon_pids())
    assert new and not new & old, "the restart itself went on"
    assert slow.result(timeout=30).status == 200
