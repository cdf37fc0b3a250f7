"""`wsgi-drain check` on a real Apache + mod_wsgi (+ HAProxy): each rule's condition
is created for real and the exit code and first line asserted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import ApacheLab, HAProxyLab, LoadLoop, ModWsgi, slow_request
from tests.integration.conftest import Run, run_cli, start
from wsgi_drain.state import Journal

pytestmark = pytest.mark.integration

# Explicit timeouts: the lab's defaults would (rightly) raise the trap warning.
TIMEOUTS = {"graceful-timeout": 15, "shutdown-timeout": 5}


def check(lab: ApacheLab, tmp_path: Path, *extra: str) -> Run:
    return run_cli(
        "check", "--group", "myapp", "--apache-pidfile", str(lab.pid_file),
        "--health-url", f"{lab.url}/health", "--state-dir", str(tmp_path / "state"), *extra,
    )  # fmt: skip


def first_line(run: Run) -> str:
    """The status line, under 200 characters with its perfdata, whatever the state (issue 22)."""
    line = run.stdout.splitlines()[0]
    assert len(line) < 200 and len(run.stdout.encode()) < 1024, run.stdout
    return line


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[ApacheLab]:
    a = ApacheLab(tmp_path / "a", daemon_options=TIMEOUTS)
    try:
        start(a)
        yield a
    finally:
        a.stop()


def test_healthy_group_is_ok_with_perfdata(lab: ApacheLab, tmp_path: Path) -> None:
    textfile = tmp_path / "wsgi_drain.prom"
    run = check(lab, tmp_path, "--textfile", str(textfile))
    assert run.returncode == 0, run.stdout
    line = first_line(run)
    assert line.startswith("WSGI-DRAIN OK - myapp: 3/3 processes up, health HTTP 200")
    # Thresholds as the rules apply them: WARNING below 3, CRITICAL below 1.
    assert " | processes=3;3:;1:;0;3 health_time=" in line
    metrics = textfile.read_text()
    assert 'wsgi_drain_check_status{group="myapp"} 0\n' in metrics
    assert 'wsgi_drain_processes{group="myapp"} 3\n' in metrics
    assert not list(tmp_path.glob(".wsgi_drain.prom.*"))  # no temporary left behind


def test_check_healthy_run_imports_neither_click_psutil_nor_http_client(
    lab: ApacheLab, tmp_path: Path
) -> None:
    """Issue 22: cron's healthy check pays no import it does not use (its 60 ms budget)."""
    modules = tmp_path / "modules.txt"
    code = (
        "import atexit, sys; from wsgi_drain.cli import main; "
        f"atexit.register(lambda: open({str(modules)!r}, 'w').write(' '.join(sys.modules))); "
        "main()"
    )
    args = [
        "check", "--group", "myapp", "--apache-pidfile", str(lab.pid_file),
        "--health-url", f"{lab.url}/health", "--state-dir", str(tmp_path / "state"),
    ]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("WSGI-DRAIN OK - myapp: 3/3 processes up, health HTTP 200")
    loaded = set(modules.read_text().split())
    assert "wsgi_drain.http1" in loaded  # the probe ran
    absent = {"click", "psutil", "http.client", "email", "ssl", "subprocess", "encodings.idna",
              "wsgi_drain.cli.group", "wsgi_drain.inventory"}  # fmt: skip
    assert not absent & loaded, sorted(absent & loaded)


def test_json_carries_the_same_verdict(lab: ApacheLab, tmp_path: Path) -> None:
    run = check(lab, tmp_path, "--json")
    data = json.loads(run.stdout)
    assert run.returncode == 0
    assert data["status"] == "OK" and data["exit_status"] == 0
    assert sorted(p["pid"] for p in data["processes"]) == sorted(lab.daemon_pids())


def test_stopped_daemon_is_critical(lab: ApacheLab, tmp_path: Path) -> None:
    pid = lab.daemon_pids()[0]
    os.kill(pid, signal.SIGSTOP)
    try:
        run = check(lab, tmp_path)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert run.returncode == 2, run.stdout
    assert first_line(run).startswith(f"WSGI-DRAIN CRITICAL - myapp: pid {pid} is stopped")


def test_killed_daemon_respawning_does_not_flap(lab: ApacheLab, tmp_path: Path) -> None:
    os.kill(lab.daemon_pids()[0], signal.SIGKILL)
    run = check(lab, tmp_path)
    assert run.returncode == 0, run.stdout
    assert first_line(run).startswith("WSGI-DRAIN OK - myapp: 3/3 processes up")


def test_missing_process_not_respawned_is_warning(lab: ApacheLab, tmp_path: Path) -> None:
    # A stopped parent cannot respawn: the shortfall outlasts the grace period.
    os.kill(lab.parent_pid, signal.SIGSTOP)
    try:
        os.kill(lab.daemon_pids()[0], signal.SIGKILL)
        run = check(lab, tmp_path)
    finally:
        os.kill(lab.parent_pid, signal.SIGCONT)
    assert run.returncode == 1, run.stdout
    assert first_line(run).startswith("WSGI-DRAIN WARNING - myapp: 2 of 3 processes running")


def test_apache_down_is_critical(lab: ApacheLab, tmp_path: Path) -> None:
    lab.stop()
    run = check(lab, tmp_path)
    assert run.returncode == 2, run.stdout
    assert first_line(run).startswith("WSGI-DRAIN CRITICAL - myapp: Apache is not running")


def test_unhealthy_is_critical_and_slow_is_warning(lab: ApacheLab, tmp_path: Path) -> None:
    slow = run_cli(
        "check", "--group", "myapp", "--apache-pidfile", str(lab.pid_file), "--health-url",
        f"{lab.url}/slow?s=0.4", "--health-warn", "0.1", "--state-dir", str(tmp_path / "s"),
    )  # fmt: skip
    assert slow.returncode == 1, slow.stdout
    # The first line gives way to perfdata (under 200 bytes); the finding is whole below it.
    assert first_line(slow).startswith("WSGI-DRAIN WARNING - myapp: "), slow.stdout
    assert "WARNING: " in slow.stdout and "slow:" in slow.stdout.split("\n", 1)[1]
    lab.set_healthy(False)
    run = check(lab, tmp_path)
    assert run.returncode == 2, run.stdout
    assert first_line(run).startswith("WSGI-DRAIN CRITICAL - myapp: ")
    assert "answered HTTP 503" in first_line(run)


def test_journal_left_behind_is_critical_with_the_repair(lab: ApacheLab, tmp_path: Path) -> None:
    Journal(group="myapp", pid=999_999, started=time.time() - 60, phase="divert").save(
        tmp_path / "state"
    )
    run = check(lab, tmp_path)
    assert run.returncode == 2, run.stdout
    assert first_line(run).startswith("WSGI-DRAIN CRITICAL - myapp: a restart (pid 999999, ")
    line = run.stdout  # in full on the line after the (short) first
    assert "s ago) was interrupted in phase 'divert'" in line
    assert "repair with: wsgi-drain undrain --group myapp" in line


def test_router_left_drained_is_warning(lab: ApacheLab, tmp_path: Path) -> None:
    b = ApacheLab(tmp_path / "b", daemon_options=TIMEOUTS)
    haproxy: HAProxyLab | None = None
    try:
        start(b)
        haproxy = HAProxyLab(
            tmp_path / "h", [("a", "127.0.0.1", lab.port), ("b", "127.0.0.1", b.port)]
        )
        start(haproxy)
        haproxy.command("set server be_app/a state drain")
        run = check(lab, tmp_path, "--haproxy", f"{haproxy.admin_socket}:be_app/a")
        assert run.returncode == 1, run.stdout
        assert first_line(run).startswith("WSGI-DRAIN WARNING - myapp: haproxy ")
        assert "is left in drain for" in run.stdout
    finally:
        if haproxy is not None:
            haproxy.stop()
        b.stop()


def test_configuration_traps_warn_once_each_with_the_fix(tmp_path: Path) -> None:
    lab = ApacheLab(tmp_path / "a", extra_config="WSGIScriptReloading On\nLogLevel warn\n")
    try:
        start(lab)
        run = check(lab, tmp_path)
    finally:
        lab.stop()
    assert run.returncode == 1, run.stdout
    assert first_line(run).startswith("WSGI-DRAIN WARNING - myapp: ")
    details = run.stdout.splitlines()[1:]
    warnings = [line for line in details if line.startswith("WARNING: ")]
    assert len(warnings) == 3
    assert any("set graceful-timeout" in w or "set it explicitly" in w for w in warnings)
    assert any("set WSGIScriptReloading Off" in w for w in warnings)
    assert any("use LogLevel warn wsgi:info" in w for w in warnings)


def test_forced_exit_in_the_log_is_warning(tmp_path: Path, modwsgi: ModWsgi) -> None:
    lab = ApacheLab(
        tmp_path / "a", modwsgi=modwsgi,
        daemon_options={"graceful-timeout": 1, "shutdown-timeout": 1},
    )  # fmt: skip
    try:
        start(lab)
        request = slow_request(f"{lab.url}/slow?s=6", 6)
        time.sleep(0.5)
        for pid in lab.daemon_pids():
            os.kill(pid, signal.SIGUSR1)
        request.result(timeout=30)  # cut off by the abort: any outcome
        time.sleep(1.5)
        run = check(lab, tmp_path)
    finally:
        lab.stop()
    assert run.returncode == 1, run.stdout
    assert first_line(run).startswith("WSGI-DRAIN WARNING - myapp: ")
    assert "forced out by a timeout in the last 600 s" in run.stdout


def test_process_alive_long_after_shutdown_is_critical(tmp_path: Path, modwsgi: ModWsgi) -> None:
    lab = ApacheLab(
        tmp_path / "a", modwsgi=modwsgi, hang=True,
        daemon_options={"graceful-timeout": 1, "shutdown-timeout": 0},
    )  # fmt: skip
    try:
        start(lab)
        # Only a process that loaded the app has the never-ending thread.
        pids = set(lab.daemon_pids())
        load = LoadLoop(lab.url + "/slow?s=0.3", max_requests=300, max_seconds=20, clients=6)
        load.start()
        deadline = time.monotonic() + 20
        while not pids <= {s.pid for s in load.results()} and time.monotonic() < deadline:
            time.sleep(0.1)
        load.stop()
        for pid in pids:
            os.kill(pid, signal.SIGUSR1)
        # drain window 1 s + shutdown 0 s + the check's 5 s margin
        time.sleep(7.5)
        run = check(lab, tmp_path)
    finally:
        lab.stop()
    assert run.returncode == 2, run.stdout
    assert first_line(run).startswith("WSGI-DRAIN CRITICAL - myapp: ")
    assert "was told to shut down" in run.stdout and "still alive" in run.stdout


def test_unknown_group_and_bad_usage_are_unknown(lab: ApacheLab, tmp_path: Path) -> None:
    run = run_cli(
        "check", "--group", "nosuch", "--apache-pidfile", str(lab.pid_file),
        "--state-dir", str(tmp_path / "s"),
    )  # fmt: skip
    assert run.returncode == 3
    assert first_line(run).startswith("WSGI-DRAIN UNKNOWN - nosuch: group 'nosuch' not found")
    bad = run_cli("check", "--group", "myapp", "--health-warn", "soon")
    assert bad.returncode == 3
    # Nagios shows the first stdout line: one UNKNOWN line, not click's usage on stderr.
    assert bad.stdout.startswith("WSGI-DRAIN UNKNOWN - usage: Invalid value for '--health-warn'")


def test_status_lists_groups_processes_and_journals(lab: ApacheLab, tmp_path: Path) -> None:
    Journal(group="myapp", pid=999_999, started=time.time(), phase="watch").save(tmp_path / "state")
    run = run_cli(
        "status", "--apache-pidfile", str(lab.pid_file), "--state-dir", str(tmp_path / "state"),
        "--json",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    (instance,) = data["instances"]
    assert instance["pid"] == lab.parent_pid
    (group,) = instance["groups"]
    assert group["name"] == "myapp" and group["identified_by"] == "socket"
    assert sorted(p["pid"] for p in group["processes"]) == sorted(lab.daemon_pids())
    assert group["options"]["graceful-timeout"] == "15"
    assert [j["phase"] for j in data["journals"]] == ["watch"]
    text = run_cli("status", "--apache-pidfile", str(lab.pid_file), "--state-dir", str(tmp_path))
    assert text.stdout.startswith(f"Apache pid {lab.parent_pid}  ")
    assert "group myapp  processes=3 threads=5 drain=15s shutdown=5s  (3/3 up, by socket)" in (
        text.stdout
    )


def test_check_acknowledged_trap_is_a_note_not_a_warning(tmp_path: Path) -> None:
    # No graceful-timeout: the no-drain-timeout trap, chosen on purpose here.
    lab = ApacheLab(tmp_path / "a", daemon_options={"shutdown-timeout": 5})
    try:
        start(lab)
        warned = check(lab, tmp_path)
        acked = check(lab, tmp_path, "--ack-trap", "no-drain-timeout")
        typo = check(lab, tmp_path, "--ack-trap", "no-drain-timeouts")
        lab.set_healthy(False)
        still = check(lab, tmp_path, "--ack-trap", "no-drain-timeout")
    finally:
        lab.stop()
    assert warned.returncode == 1 and "--ack-trap no-drain-timeout" in warned.stdout
    assert acked.returncode == 0, acked.stdout
    assert first_line(acked).startswith("WSGI-DRAIN OK - myapp: 3/3 processes up")
    assert "acknowledged: no-drain-timeout" in acked.stdout
    assert typo.returncode == 3 and "known: no-drain-timeout" in typo.stdout
    # The other rules still apply.
    assert still.returncode == 2, still.stdout


def test_check_dead_health_url_with_unwritable_textfile_stays_critical(
    lab: ApacheLab, tmp_path: Path
) -> None:
    # Issue 22: the UNKNOWN of a textfile it cannot write must not hide the CRITICAL.
    from lab.ports import free_port

    dead = f"http://127.0.0.1:{free_port()}/health"
    run = run_cli(
        "check", "--group", "myapp", "--apache-pidfile", str(lab.pid_file),
        "--health-url", dead, "--state-dir", str(tmp_path / "state"),
        "--textfile", str(tmp_path / "no-such-dir" / "wsgi_drain.prom"),
    )  # fmt: skip
    assert run.returncode == 2, run.stdout
    assert first_line(run).startswith("WSGI-DRAIN CRITICAL - myapp: health failed after")
    assert "CRITICAL: health failed after" in run.stdout and dead in run.stdout
    assert "UNKNOWN: cannot write --textfile" in run.stdout
