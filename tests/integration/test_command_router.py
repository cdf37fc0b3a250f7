"""The command router: the operator's own program diverts and restores, no shell.

Proven by driving a real HAProxy through its runtime socket from an external
program, as an F5 or cloud CLI would be driven; plus the failures: a program
that hangs is killed at its timeout, a second router that fails rolls the
first back, and nothing is signalled.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import LabUnavailable, LoadLoop, Outcome, Stack, skip_or_fail, slow_request, two_hosts
from lab.hooks import write_haproxy_hook
from tests.integration.conftest import restart_args, run_cli

pytestmark = pytest.mark.integration


def hook(tmp_path: Path) -> Path:
    return write_haproxy_hook(tmp_path / "lb-hook")


def command_router(stack: Stack, program: Path, timeout: str = "") -> str:
    prefix = f"timeout={timeout}:" if timeout else ""
    return f"command:{prefix}{program} {stack.haproxy.admin_socket} be_app/a"


def test_command_router_diverts_through_the_operators_program_and_loses_nothing(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "hook.log"
    monkeypatch.setenv("HOOK_LOG", str(log))
    old = set(stack.a.daemon_pids())
    load = LoadLoop(stack.haproxy.url + "/", max_requests=3000, max_seconds=40)
    load.start()
    try:
        time.sleep(0.5)
        slow = slow_request(stack.haproxy.url + "/slow?s=4", 4)
        time.sleep(0.5)
        run = run_cli(
            *restart_args(stack, "--json", haproxy=False),
            "--router", command_router(stack, hook(tmp_path)),
        )  # fmt: skip
        time.sleep(0.5)
    finally:
        load.stop()
    report = run.json()
    assert run.returncode == 0, run.stderr
    assert report["mode"] == "drain"
    assert slow.result(timeout=30).status == 200
    summary = load.summary()
    failed = {k: v for k, v in summary.counts.items() if k != Outcome.OK and v}
    assert summary.total > 20 and not failed, summary
    assert not set(stack.a.daemon_pids()) & old
    actions = log.read_text().split("\n")
    assert "myapp divert" in actions and "myapp restore" in actions
    assert [r["diverted"] and r["restored"] for r in report["routers"]] == [True]
    # The drain was waited for through the program's sessions= count: the
    # 4 s request had finished before the signal.
    assert report["routers"][0]["sessions_at_signal"] == 0
    assert stack.haproxy.server_states()["a"].status.startswith("UP")


def test_command_router_that_hangs_is_killed_at_its_timeout_and_nothing_is_signalled(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "hook.log"
    monkeypatch.setenv("HOOK_LOG", str(log))
    monkeypatch.setenv("HANG_ON", "divert")
    old = set(stack.a.daemon_pids())
    run = run_cli(
        *restart_args(stack, "--json", haproxy=False),
        "--router", command_router(stack, hook(tmp_path), timeout="1"),
    )  # fmt: skip
    report = run.json()
    assert run.returncode == 4, run.stderr
    assert "did not finish within 1 s and was killed" in str(report["message"])
    assert set(stack.a.daemon_pids()) == old, "a process was signalled"
    assert all(not p["signals"] for p in report["processes"])  # type: ignore[union-attr]
    child = int((tmp_path / "hook.log.child").read_text())
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{child}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{child}"), "the program's own child was left running"


def test_command_router_failing_second_puts_the_first_back_and_signals_nothing(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "hook.log"
    monkeypatch.setenv("HOOK_LOG", str(log))
    monkeypatch.setenv("FAIL_ON", "divert")
    old = set(stack.a.daemon_pids())
    # The first router is the HAProxy itself; the second, the program, refuses.
    run = run_cli(
        *restart_args(stack, "--json"),
        "--router", command_router(stack, hook(tmp_path)),
    )  # fmt: skip
    report = run.json()
    assert run.returncode == 4, run.stderr
    assert "the load balancer said no" in str(report["message"])
    assert set(stack.a.daemon_pids()) == old
    first = report["routers"][0]
    assert first["diverted"] and first["restored"], report["routers"]
    assert stack.haproxy.server_states()["a"].status.startswith("UP")


@pytest.fixture
def one_stack(tmp_path: Path) -> Iterator[Stack]:
    """Hosts a and b behind one real HAProxy (one mod_wsgi build: the router is the subject)."""
    with contextlib.ExitStack() as stop:
        try:
            running = stop.enter_context(two_hosts(tmp_path, "debian"))
        except LabUnavailable as err:
            skip_or_fail(str(err))
        yield running


def test_command_router_min_peers_all_refuses_when_the_program_cannot_name_the_servers_out(
    one_stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The hook prints peers_up= but no peers_out=: with b already out, "all"
    # was computed as 0 >= 0 and the last server went out.
    stack = one_stack
    log = tmp_path / "hook.log"
    monkeypatch.setenv("HOOK_LOG", str(log))
    stack.haproxy.command("set server be_app/b state drain")
    run = run_cli(
        "drain", "--group", "myapp", "--state-dir", str(stack.state_dir), "--json",
        "--router", command_router(stack, hook(tmp_path)), "--min-peers", "all",
    )  # fmt: skip
    assert run.returncode == 4, (run.stdout, run.stderr)
    assert "cannot name the servers out, so --min-peers all cannot be checked" in run.stdout
    assert "myapp divert" not in log.read_text().split("\n")
    assert stack.haproxy.admin_state("a") == "ready"
    # A count is still checked against peers_up: 0 UP, --min-peers 1 refuses too.
    run = run_cli(
        "drain", "--group", "myapp", "--state-dir", str(stack.state_dir),
        "--router", command_router(stack, hook(tmp_path)), "--min-peers", "1",
    )  # fmt: skip
    assert run.returncode == 4 and "0 other server(s) UP" in run.stdout, run.stdout
    assert stack.haproxy.admin_state("a") == "ready"
