"""The restart's failure policy on real Apache + mod_wsgi: stop early, never cut grace short.

Each test is a review finding reproduced first: rolling mode moved on when a
replacement never came and never checked health between steps; `--force`
sent SIGUSR1, SIGTERM and SIGKILL back to back once the deadline was used;
SIGHUP killed a run mid-drain; Ctrl-C during discovery still signalled; an
ErrorLog that is not a file aborted the run with a traceback.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from lab import ApacheLab, ModWsgi, Stack, slow_request
from tests.integration.conftest import restart_args, run_cli, start, wsgi_drain_command
from wsgi_drain.config import Settings
from wsgi_drain.restart import restart
from wsgi_drain.state import Journal

pytestmark = pytest.mark.integration


def rolling(lab: ApacheLab, tmp_path: Path, *extra: str) -> tuple[int, dict[str, object]]:
    run = run_cli(
        "restart", "--group", "myapp", "--apache-pidfile", str(lab.pid_file),
        "--state-dir", str(tmp_path / "state"), "--mode", "rolling", "--json", *extra,
    )  # fmt: skip
    report: dict[str, object] = run.json()
    return run.returncode, report


def alive(pids: set[int]) -> set[int]:
    return {pid for pid in pids if os.path.exists(f"/proc/{pid}")}


def test_rolling_stops_when_a_replacement_crashes_at_start(
    tmp_path: Path, modwsgi: ModWsgi
) -> None:
    lab = ApacheLab(tmp_path / "a", modwsgi=modwsgi, preload=True)
    try:
        start(lab)
        old = set(lab.daemon_pids())
        lab.wait_loaded(sorted(old))
        lab.set_crash(True)  # the "new code" kills every process that imports it
        status, report = rolling(lab, tmp_path)
        assert status == 5, report
        signalled = [p for p in report["processes"] if p["signals"]]  # type: ignore[union-attr]
        assert len(signalled) == 1
        message = str(report["message"])
        assert "exited right after it started; stopped after 0 of 3" in message, message
        assert len(alive(old)) == 2, "a bad deploy spread past the first process"
    finally:
        lab.stop()


def test_rolling_stops_when_health_fails_between_steps(tmp_path: Path) -> None:
    lab = ApacheLab(tmp_path / "a")
    try:
        start(lab)
        old = set(lab.daemon_pids())
        lab.set_healthy(False)
        status, report = rolling(lab, tmp_path, "--health-url", f"{lab.url}/health",
                                 "--health-timeout", "1")  # fmt: skip
        assert status == 6, report
        assert "stopped after 1 of 3 processes" in str(report["message"])
        assert len(alive(old)) == 2
    finally:
        lab.stop()


def test_rolling_force_never_kills_without_grace(tmp_path: Path) -> None:
    # An app thread holds every process at interpreter shutdown until mod_wsgi's
    # shutdown-timeout (2 s) aborts it; the whole run gets --timeout 1.  The
    # first process must still get SIGUSR1, then SIGTERM and its full 2 s --
    # never SIGKILL -- and the run stop before the next process.
    lab = ApacheLab(
        tmp_path / "a",
        hang=True,
        preload=True,
        daemon_options={"graceful-timeout": 1, "shutdown-timeout": 2},
    )
    try:
        start(lab)
        old = set(lab.daemon_pids())
        lab.wait_loaded(sorted(old))
        status, report = rolling(lab, tmp_path, "--timeout", "1", "--force")
        assert status == 5, report
        assert "deadline (1 s) ran out after 1 of 3" in str(report["message"])
        signals = [p["signals"] for p in report["processes"]]  # type: ignore[union-attr]
        assert signals == [["SIGUSR1", "SIGTERM"]]
        assert len(alive(old)) == 2
    finally:
        lab.stop()


def test_sighup_during_divert_restores_the_router(stack: Stack) -> None:
    # A dropped SSH session: SIGHUP used to end the run at once, mid-drain.
    old = set(stack.a.daemon_pids())
    slow = slow_request(stack.haproxy.url + "/slow?s=6", 6)
    time.sleep(0.5)
    proc = subprocess.Popen(
        [*wsgi_drain_command(), *restart_args(stack, "--json")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        stack.haproxy.wait_status("a", "DRAIN", timeout=10)
        proc.send_signal(signal.SIGHUP)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "SIGHUP" in out
    assert stack.haproxy.server_states()["a"].status.startswith("UP")
    assert set(stack.a.daemon_pids()) == old
    assert slow.result(timeout=30).status == 200
    assert not Journal.path_for(stack.state_dir, "myapp").exists()


def test_interrupt_during_discovery_signals_nothing_in_rolling_mode(tmp_path: Path) -> None:
    # Review: Ctrl-C during discovery in rolling mode still signalled one process.
    lab = ApacheLab(tmp_path / "a")
    try:
        start(lab)
        old = set(lab.daemon_pids())
        sent: list[str] = []

        def progress(phase: str, message: str) -> None:
            # The first progress line comes from discovery (a pre-flight warning).
            if not sent:
                sent.append(phase)
                os.kill(os.getpid(), signal.SIGINT)

        settings = Settings(
            group="myapp", apache_pidfile=lab.pid_file, mode="rolling",
            state_dir=tmp_path / "state",
        )  # fmt: skip
        outcome = restart(settings, progress=progress)
        assert sent == ["warning"]
        assert outcome.status == 130
        assert not any(p.signals for p in outcome.processes)
        time.sleep(0.5)
        assert set(lab.daemon_pids()) == old
    finally:
        lab.stop()


@pytest.mark.parametrize("error_log", ["/dev/stderr", "|/usr/bin/tee -a /dev/null"])
def test_error_log_that_is_not_a_file_still_restarts(tmp_path: Path, error_log: str) -> None:
    # Review: ErrorLog /dev/stderr or a piped log aborted restart with a traceback.
    lab = ApacheLab(tmp_path / "a", error_log=error_log)
    try:
        start(lab)
        old = set(lab.daemon_pids())
        status, report = rolling(lab, tmp_path)
        assert status == 0, report
        assert any("ending is only 'exited'" in w for w in report["warnings"])  # type: ignore[union-attr]
        assert not set(lab.daemon_pids()) & old
    finally:
        lab.stop()
