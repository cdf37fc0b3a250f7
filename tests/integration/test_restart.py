"""`wsgi-drain restart` end to end: real Apache + mod_wsgi behind real HAProxy, under load.

Every test drives the installed `wsgi-drain` command and counts failures at
the client, where they really show (HAProxy closes a reused connection
silently when a server dies mid-request).
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from lab import ApacheLab, LoadLoop, Outcome, Stack, slow_request
from tests.integration.conftest import restart_args, run_cli, wsgi_drain_command
from wsgi_drain.state import Journal, group_lock

pytestmark = pytest.mark.integration


def assert_no_failures(load: LoadLoop) -> None:
    summary = load.summary()
    failed = {k: v for k, v in summary.counts.items() if k != Outcome.OK and v}
    assert summary.total > 50, f"load loop sent too little to mean anything: {summary}"
    assert not failed, f"failed requests: {failed} of {summary.total}"


def test_drain_restart_under_load_loses_nothing(stack: Stack) -> None:
    old = set(stack.a.daemon_pids())
    load = LoadLoop(stack.haproxy.url + "/", max_requests=3000, max_seconds=30)
    load.start()
    try:
        time.sleep(0.5)
        # Pinned to `a` by the lab's HAProxy: in flight there when the command starts.
        slow = slow_request(stack.haproxy.url + "/slow?s=4", 4)
        time.sleep(0.5)
        run = run_cli(*restart_args(stack, "--json"))
        time.sleep(0.5)
    finally:
        load.stop()
    report = run.json()
    assert run.returncode == 0, run.stderr
    assert report["verdict"] == "success"
    assert report["mode"] == "drain"
    assert slow.result(timeout=30).status == 200
    assert_no_failures(load)

    new = set(stack.a.daemon_pids())
    assert len(new) == 3 and not new & old
    assert {p["old_pid"] for p in report["processes"]} == old
    assert set(report["new_pids"]) == new
    assert all(p["ending"] in ("drained", "exited") for p in report["processes"])
    assert [r["diverted"] and r["restored"] for r in report["routers"]] == [True]
    assert report["routers"][0]["sessions_at_signal"] == 0
    assert report["health"]["status"] == 200
    assert stack.haproxy.server_states()["a"].status.startswith("UP")
    assert not Journal.path_for(stack.state_dir, "myapp").exists()


def test_rolling_restart_without_router_loses_nothing(stack: Stack) -> None:
    old = set(stack.a.daemon_pids())
    # Straight at Apache: no router can hide a failure here.
    load = LoadLoop(stack.a.url + "/", max_requests=3000, max_seconds=40, clients=3)
    load.start()
    try:
        time.sleep(0.5)
        slow = slow_request(stack.a.url + "/slow?s=4", 4)
        time.sleep(0.5)
        run = run_cli(*restart_args(stack, "--mode", "rolling", "--json", haproxy=False))
    finally:
        load.stop()
    report = run.json()
    assert run.returncode == 0, run.stderr
    assert report["mode"] == "rolling"
    assert slow.result(timeout=30).status == 200
    assert_no_failures(load)
    new = set(stack.a.daemon_pids())
    assert len(new) == 3 and not new & old
    assert {p["old_pid"] for p in report["processes"]} == old
    assert all(p["new_pid"] in new for p in report["processes"])
    # SIGTERM after 2 s busy is ours: "stopped", never "forced", unless aborted.
    assert all(p["ending"] in ("drained", "stopped", "exited") for p in report["processes"])


def test_only_server_in_backend_restarts_in_place(tmp_path: Path, apache: ApacheLab) -> None:
    from lab import HAProxyLab
    from tests.integration.conftest import start

    haproxy = HAProxyLab(tmp_path / "haproxy", [("a", "127.0.0.1", apache.port)])
    try:
        start(haproxy)
        old = set(apache.daemon_pids())
        load = LoadLoop(haproxy.url + "/", max_requests=2000, max_seconds=30, clients=3)
        load.start()
        try:
            time.sleep(0.5)
            run = run_cli(
                "restart",
                "--group",
                "myapp",
                "--apache-pidfile",
                str(apache.pid_file),
                "--haproxy",
                f"{haproxy.admin_socket}:be_app/a",
                "--state-dir",
                str(tmp_path / "state"),
                "--json",
            )
        finally:
            load.stop()
        report = run.json()
        assert run.returncode == 0, run.stderr
        assert report["requested_mode"] == "drain"
        assert report["mode"] == "rolling"
        assert any("would fail every request" in w for w in report["warnings"])
        assert report["routers"][0]["diverted"] is False
        assert_no_failures(load)
        assert not set(apache.daemon_pids()) & old
    finally:
        haproxy.stop()


def test_unknown_group_exits_3_naming_the_groups(stack: Stack) -> None:
    run = run_cli(
        "restart",
        "--group",
        "nosuch",
        "--apache-pidfile",
        str(stack.a.pid_file),
        "--state-dir",
        str(stack.state_dir),
    )
    assert run.returncode == 3
    # The verdict with the error, once, on stdout (issue 22: not on both streams).
    assert "group 'nosuch' not found" in run.stdout and "nosuch" not in run.stderr
    assert "myapp" in run.stdout
    assert "Traceback" not in run.stdout + run.stderr


def test_sigusr2_is_refused_and_nothing_is_signalled(stack: Stack) -> None:
    old = set(stack.a.daemon_pids())
    run = run_cli(*restart_args(stack, "--signal", "SIGUSR2"))
    assert run.returncode == 2
    assert "SIGUSR2 is not a restart signal" in run.stderr
    assert set(stack.a.daemon_pids()) == old


def test_missing_haproxy_socket_exits_4_and_signals_nothing(stack: Stack) -> None:
    old = set(stack.a.daemon_pids())
    missing = stack.state_dir.parent / "no-such.sock"
    run = run_cli(
        "restart",
        "--group",
        "myapp",
        "--apache-pidfile",
        str(stack.a.pid_file),
        "--haproxy",
        f"{missing}:be_app/a",
        "--state-dir",
        str(stack.state_dir),
        "--json",
    )
    assert run.returncode == 4, run.stderr
    assert run.json()["verdict"] == "router"
    assert str(missing) in run.stdout
    time.sleep(0.5)
    assert set(stack.a.daemon_pids()) == old


def test_second_concurrent_run_exits_7(stack: Stack) -> None:
    old = set(stack.a.daemon_pids())
    # The first run waits in its divert phase for this request to finish.
    slow = slow_request(stack.haproxy.url + "/slow?s=4", 4)
    time.sleep(0.5)
    first = subprocess.Popen(
        [*wsgi_drain_command(), *restart_args(stack, "--json")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while not Journal.path_for(stack.state_dir, "myapp").exists():
            assert time.monotonic() < deadline, "first run never started"
            time.sleep(0.05)
        second = run_cli(*restart_args(stack))
        assert second.returncode == 7
        assert "another wsgi-drain run holds the lock" in second.stdout
        _out, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, err
    assert slow.result(timeout=30).status == 200
    assert not set(stack.a.daemon_pids()) & old


def test_lock_held_in_process_also_exits_7(stack: Stack) -> None:
    with group_lock(stack.state_dir, "myapp"):
        run = run_cli(*restart_args(stack, "--json"))
    assert run.returncode == 7
    assert run.json()["verdict"] == "locked"


def test_dry_run_changes_nothing(stack: Stack) -> None:
    old = set(stack.a.daemon_pids())
    run = run_cli(*restart_args(stack, "--dry-run", "--json"))
    assert run.returncode == 0, run.stderr
    report = run.json()
    assert report["dry_run"] is True
    assert any(line.startswith("divert haproxy") for line in report["plan"])
    assert any("SIGUSR1" in line for line in report["plan"])
    time.sleep(0.5)
    assert set(stack.a.daemon_pids()) == old
    assert stack.haproxy.server_states()["a"].status.startswith("UP")
    assert not stack.state_dir.exists() or not any(stack.state_dir.glob("*.journal.json"))


def test_unhealthy_after_restart_stays_diverted_until_undrain(stack: Stack) -> None:
    stack.a.set_healthy(False)
    run = run_cli(*restart_args(stack, "--json"), timeout=120)
    report = run.json()
    assert run.returncode == 6, run.stderr
    assert report["left_diverted"] is True
    assert stack.haproxy.server_states()["a"].status in ("DRAIN", "DOWN")
    journal = Journal.load(stack.state_dir, "myapp")
    assert journal is not None and journal.phase == "left-diverted"

    stack.a.set_healthy(True)
    undo = run_cli(
        "undrain",
        "--group",
        "myapp",
        "--state-dir",
        str(stack.state_dir),
    )
    assert undo.returncode == 0, undo.stderr
    assert Journal.load(stack.state_dir, "myapp") is None
    stack.haproxy.wait_status("a", "UP", timeout=10)


def test_sigint_during_divert_restores_the_router(stack: Stack) -> None:
    old = set(stack.a.daemon_pids())
    slow = slow_request(stack.haproxy.url + "/slow?s=6", 6)
    time.sleep(0.5)
    proc = subprocess.Popen(
        [*wsgi_drain_command(), *restart_args(stack, "--json")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stack.haproxy.wait_status("a", "DRAIN", timeout=10)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert stack.haproxy.server_states()["a"].status.startswith("UP")
    assert set(stack.a.daemon_pids()) == old
    assert slow.result(timeout=30).status == 200
    assert not Journal.path_for(stack.state_dir, "myapp").exists()


def warm_up(lab: ApacheLab, pids: set[int]) -> None:
    load = LoadLoop(lab.url + "/slow?s=0.3", max_requests=300, max_seconds=20, clients=6, pause=0)
    load.start()
    deadline = time.monotonic() + 20
    while not pids <= {s.pid for s in load.results()} and time.monotonic() < deadline:
        time.sleep(0.1)
    load.stop()
    assert pids <= {s.pid for s in load.results()}, "not every daemon served a request"


def test_stuck_process_is_reported_and_killed_only_with_force(tmp_path: Path) -> None:
    from lab import HAProxyLab
    from tests.integration.conftest import start

    # An app thread that never exits, and no shutdown-timeout to abort it:
    # after SIGUSR1 the daemons stop accepting and never leave on their own.
    a = ApacheLab(
        tmp_path / "a", hang=True, daemon_options={"graceful-timeout": 1, "shutdown-timeout": 0}
    )
    b = ApacheLab(tmp_path / "b")
    haproxy: HAProxyLab | None = None
    try:
        start(a)
        start(b)
        haproxy = HAProxyLab(
            tmp_path / "h", [("a", "127.0.0.1", a.port), ("b", "127.0.0.1", b.port)]
        )
        start(haproxy)
        old = set(a.daemon_pids())
        # mod_wsgi loads the app on a process's first request: only a
        # process that served one has the never-ending thread.
        warm_up(a, old)
        args = [
            "restart",
            "--group",
            "myapp",
            "--apache-pidfile",
            str(a.pid_file),
            "--haproxy",
            f"{haproxy.admin_socket}:be_app/a",
            "--health-url",
            f"{a.url}/health",
            "--health-timeout",
            "2",
            "--state-dir",
            str(tmp_path / "st"),
            "--timeout",
            "4",
            "--json",
        ]
        run = run_cli(*args)
        report = run.json()
        assert run.returncode == 5, run.stderr
        assert "did not exit by the deadline" in report["message"]
        stuck = [p for p in report["processes"] if p["ending"] == "stuck"]
        assert {p["old_pid"] for p in stuck} == old
        assert all(p["threads"] and p["threads"] >= 2 for p in stuck)
        # py-spy names the culprit thread in the report.
        assert all("lab-hang" in (p["stack"] or "") for p in stuck), stuck[0]["stack"]
        # Every process has stopped accepting: the app is down, so the
        # backend stays out of rotation.
        assert report["left_diverted"] is True
        assert set(a.daemon_pids()) == old

        forced = run_cli(*args, "--force")
        report = forced.json()
        assert forced.returncode == 0, forced.stderr
        assert {p["ending"] for p in report["processes"]} == {"killed"}
        assert all("SIGKILL" in p["signals"] for p in report["processes"])
        new = set(a.daemon_pids())
        assert len(new) == 3 and not new & old
        assert report["routers"][0]["restored"] is True
    finally:
        if haproxy is not None:
            haproxy.stop()
        b.stop()
        a.stop()


def test_several_apache_instances_need_a_choice(stack: Stack) -> None:
    run = run_cli("restart", "--group", "myapp", "--state-dir", str(stack.state_dir), "--dry-run")
    assert run.returncode == 3
    # Both define myapp (issue 22: the one that defines it is used, else a short fix).
    assert "group 'myapp' is defined by " in run.stdout
    assert f"pid {stack.a.parent_pid}: --apache-pidfile {stack.a.pid_file}" in run.stdout
    assert f"pid {stack.b.parent_pid}: --apache-pidfile {stack.b.pid_file}" in run.stdout
    assert "-k start" not in run.stdout + run.stderr  # not their command lines


def test_apache_config_finds_the_instance_by_its_pidfile(stack: Stack) -> None:
    run = run_cli(
        "restart", "--group", "myapp", "--apache-config", str(stack.a.conf_path),
        "--state-dir", str(stack.state_dir), "--dry-run", "--json",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    report = run.json()
    assert report["apache"] == {"pid": stack.a.parent_pid, "config": str(stack.a.conf_path)}
    assert any(str(p) in " ".join(report["plan"]) for p in stack.a.daemon_pids())
