"""mod_wsgi-express as its users run it: the real `mod_wsgi-express` from the test extras.

`setup-server … --server-root DIR` + `DIR/apachectl start`, or `start-server` in the
foreground as the test's child; express's default group name (HOST:PORT) or
`--process-group NAME`.  The deploy habit first: `setup-server` run again with the same
arguments while Apache runs (every file rewritten, nothing changed), then `restart` under
load, rolling (straight at Apache) or drain (through HAProxy): exit 0, no failed request,
the request in flight kept, no lazy-load warning, and `check` OK with no --ack-trap.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from lab import HAProxyLab, LabUnavailable, LoadLoop, Outcome, skip_or_fail, slow_request
from lab.express import ExpressLab
from tests.integration.conftest import run_cli, start, wsgi_drain_command

pytestmark = pytest.mark.integration

# (foreground start-server?, --process-group) for each restart mode: every launch and
# every naming is met in each mode, without running all eight.
ROLLING = [(False, None), (True, "shop")]
DRAIN = [(False, "shop"), (True, None)]


def _id(case: tuple[bool, str | None]) -> str:
    foreground, group = case
    return ("start-server" if foreground else "apachectl") + "-" + ("named" if group else "default")


def express(root: Path, **kw: object) -> ExpressLab:
    lab = ExpressLab(root, **kw)  # type: ignore[arg-type]
    try:
        lab.start()
    except LabUnavailable as err:
        lab.stop()
        skip_or_fail(str(err))
    return lab


def assert_no_failures(load: LoadLoop) -> None:
    summary = load.summary()
    failed = {k: v for k, v in summary.counts.items() if k != Outcome.OK and v}
    assert summary.total > 50, f"load loop sent too little to mean anything: {summary}"
    assert not failed, f"failed requests: {failed} of {summary.total}"


def assert_check_ok(lab: ExpressLab) -> None:
    run = run_cli("check", "--group", lab.group, "--apache-pidfile", str(lab.pid_file))
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.startswith(f"WSGI-DRAIN OK - {lab.group}: 3/3 processes up"), run.stdout


def restart_words(lab: ExpressLab, state: Path, *extra: str) -> list[str]:
    return [
        "restart", "--group", lab.group, "--apache-pidfile", str(lab.pid_file),
        "--health-url", f"{lab.url}/health", "--state-dir", str(state), "--json", *extra,
    ]  # fmt: skip


def assert_restarted(run_stdout: str, stderr: str, lab: ExpressLab, old: set[int]) -> Any:
    report = json.loads(run_stdout)
    assert report["verdict"] == "success", stderr
    assert not any("lazily" in w for w in report["warnings"]), report["warnings"]
    assert not any("--ack-trap" in w for w in report["warnings"]), report["warnings"]
    # Identified by express's own title, although setup-server rewrote every file.
    assert f"processes titled {lab.title!r}" in report["phases"][0]["detail"], report["phases"]
    assert any("setup-server run again" in w for w in report["warnings"]), report["warnings"]
    new = set(lab.daemon_pids())
    assert len(new) == 3 and not new & old
    assert {p["old_pid"] for p in report["processes"]} == old
    return report


@pytest.mark.parametrize("case", ROLLING, ids=_id)
def test_express_setup_server_again_then_rolling_restart_under_load_loses_nothing(
    tmp_path: Path, case: tuple[bool, str | None]
) -> None:
    foreground, group = case
    with ExitStack() as stop:
        lab = express(tmp_path / "express", foreground=foreground, process_group=group)
        stop.callback(lab.stop)
        lab.setup_server()  # the deploy habit: the same arguments, while Apache runs
        old = set(lab.daemon_pids())
        load = LoadLoop(lab.url + "/", max_requests=3000, max_seconds=40)
        load.start()
        try:
            time.sleep(0.5)
            slow = slow_request(lab.url + "/slow?s=3", 3)
            time.sleep(0.5)
            run = run_cli(*restart_words(lab, tmp_path / "state", "--mode", "rolling"))
            time.sleep(0.5)
        finally:
            load.stop()
        assert run.returncode == 0, run.stdout + run.stderr
        report = assert_restarted(run.stdout, run.stderr, lab, old)
        assert report["mode"] == "rolling"
        assert slow.result(timeout=30).status == 200
        assert_no_failures(load)
        assert_check_ok(lab)


@pytest.mark.parametrize("case", DRAIN, ids=_id)
def test_express_setup_server_again_then_drain_restart_through_haproxy_loses_nothing(
    tmp_path: Path, case: tuple[bool, str | None]
) -> None:
    foreground, group = case
    with ExitStack() as stop:
        a = express(tmp_path / "a", foreground=foreground, process_group=group)
        stop.callback(a.stop)
        b = express(tmp_path / "b", process_group=group)
        stop.callback(b.stop)
        lb = HAProxyLab(
            tmp_path / "haproxy",
            [("a", "127.0.0.1", a.port), ("b", "127.0.0.1", b.port)],
            pin={"/slow": "a"},
        )
        stop.callback(lb.stop)
        start(lb)
        a.setup_server()
        old = set(a.daemon_pids())
        load = LoadLoop(lb.url + "/", max_requests=3000, max_seconds=40)
        load.start()
        try:
            time.sleep(0.5)
            slow = slow_request(lb.url + "/slow?s=4", 4)  # pinned to a
            time.sleep(0.5)
            run = run_cli(
                *restart_words(a, tmp_path / "state", "--haproxy", f"{lb.admin_socket}:be_app/a")
            )
            time.sleep(0.5)
        finally:
            load.stop()
        assert run.returncode == 0, run.stdout + run.stderr
        report = assert_restarted(run.stdout, run.stderr, a, old)
        assert report["mode"] == "drain"
        assert [r["diverted"] and r["restored"] for r in report["routers"]] == [True]
        assert slow.result(timeout=30).status == 200
        assert_no_failures(load)
        lb.wait_status("a", "UP", timeout=10)
        assert_check_ok(a)


def test_express_default_log_level_explains_exited_once_per_run(tmp_path: Path) -> None:
    # express's own default: --log-level warn; reloading off so nothing else moves.
    with ExitStack() as stop:
        lab = express(tmp_path / "express", log_level=None)
        stop.callback(lab.stop)
        run = run_cli(*restart_words(lab, tmp_path / "state", "--mode", "rolling"))
        assert run.returncode == 0, run.stdout + run.stderr
        report = run.json()
        assert all(p["ending"] == "exited" for p in report["processes"]), report["processes"]
        # Said once for the run (the report's message), not once per process.
        message = report["message"]
        assert message.count("ended as 'exited'") == 1, message
        assert "3 old process(es) ended as 'exited'" in message, message
        assert "--log-level info" in message, message
        # The trap says the express option too, not a LogLevel directive.
        (trap,) = [w for w in report["warnings"] if "[trap log-level" in w]
        assert "--log-level info" in trap and "LogLevel" not in trap


def test_express_reloading_on_is_said_first_in_restart_check_and_status(tmp_path: Path) -> None:
    # express's own default: script reloading on.  setup-server run again then
    # rewrites handler.wsgi, and every daemon restarts on its next request, undrained.
    with ExitStack() as stop:
        lab = express(tmp_path / "express", disable_reloading=False)
        stop.callback(lab.stop)
        check = run_cli("check", "--group", lab.group, "--apache-pidfile", str(lab.pid_file))
        assert check.returncode == 1, check.stdout
        first = check.stdout.splitlines()[0]
        assert first.startswith(f"WSGI-DRAIN WARNING - {lab.group}: script reloading on: ")
        assert "--disable-reloading" in first.split(" | ")[0]
        assert "WSGIScriptReloading" not in check.stdout

        status = run_cli("status", "--apache-pidfile", str(lab.pid_file))
        lines = status.stdout.splitlines()
        header = next(i for i, line in enumerate(lines) if line.startswith(f"  group {lab.group}"))
        assert lines[header + 1].startswith("    warning: script reloading on: "), lines
        assert "--disable-reloading" in lines[header + 1]

        plan = run_cli(*restart_words(lab, tmp_path / "state", "--dry-run"))
        assert plan.returncode == 0, plan.stdout + plan.stderr
        warnings = plan.json()["warnings"]
        assert "--disable-reloading" in warnings[0] and "undrained" in warnings[0], warnings

        # What the warning says happens: a rerun restarts every daemon by itself.
        old = set(lab.daemon_pids())
        lab.setup_server()
        for _ in range(3):
            subprocess.run(["curl", "-s", "-o", "/dev/null", lab.url + "/"], check=False)
        deadline = time.monotonic() + 20
        while set(lab.daemon_pids()) & old and time.monotonic() < deadline:
            subprocess.run(["curl", "-s", "-o", "/dev/null", lab.url + "/"], check=False)
            time.sleep(0.2)
        assert not set(lab.daemon_pids()) & old, "reloading did not restart the daemons"


def test_express_unknown_group_is_told_in_express_terms(tmp_path: Path) -> None:
    with ExitStack() as stop:
        lab = express(tmp_path / "express")
        stop.callback(lab.stop)
        run = run_cli(*restart_words(lab, tmp_path / "state"))
        assert run.returncode == 0, run.stdout + run.stderr  # the right name works
        wrong = run_cli(
            "restart", "--group", "myapp", "--apache-pidfile", str(lab.pid_file),
            "--state-dir", str(tmp_path / "state"),
        )  # fmt: skip
        assert wrong.returncode == 3, wrong.stdout + wrong.stderr
        # The error is the verdict line on stdout (printed once, decision 59).
        assert lab.group in wrong.stdout and "--process-group NAME" in wrong.stdout


# -- containers: express as the first process of its own PID namespace ---------------


def _pid_namespaces_allowed() -> bool:
    if shutil.which("unshare") is None or shutil.which("nsenter") is None:
        return False
    done = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", "true"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    return done.returncode == 0


@pytest.fixture
def marker_dir() -> Iterator[Path]:
    where = Path(tempfile.mkdtemp(prefix="wsgi-drain-express-health-", dir="/tmp"))
    where.chmod(0o755)
    try:
        yield where
    finally:
        shutil.rmtree(where, ignore_errors=True)


# Docker's default capabilities have no CAP_SYS_PTRACE: root in there may not read the
# www-data daemons' fds, only their titles.
DOCKER_CAPS = ["setpriv", "--inh-caps=-sys_ptrace", "--bounding-set=-sys_ptrace", "--"]


# An entrypoint shell that stays PID 1 and swallows SIGTERM, express its child.
SHELL_PID_1 = ["sh", "-c", 'trap "" TERM; "$@"; exit $?', "entrypoint"]


@pytest.mark.parametrize(
    "router", ["health-file", "command", "health-file-docker-caps", "command-shell-pid-1"]
)
def test_express_in_its_own_pid_namespace_restarts_from_inside(
    tmp_path: Path, marker_dir: Path, router: str
) -> None:
    if not _pid_namespaces_allowed():
        # Containers without CAP_SYS_ADMIN cannot make one; say so, never pass silently.
        skip_or_fail("this machine does not allow `unshare --pid --fork --mount-proc`")
    caps = DOCKER_CAPS if router.endswith("docker-caps") else []
    shell = SHELL_PID_1 if router.endswith("shell-pid-1") else []
    with ExitStack() as stop:
        lab = express(
            tmp_path / "express",
            foreground=True,
            process_group="shop",
            wrapper=["unshare", "--pid", "--fork", "--mount-proc", *caps, *shell],
        )
        stop.callback(lab.stop)
        # Inside, Apache is PID 1 (its pid file says so) unless a shell is, and nothing
        # outside is seen.
        apache_pid = int(lab.pid_file.read_text().strip())
        assert (apache_pid == 1) == (not shell), apache_pid
        if not shell:
            outside = run_cli("status", "--apache-pidfile", str(lab.pid_file))
            assert "run wsgi-drain inside the container" in outside.stdout + outside.stderr
        inside = ["nsenter", "--target", str(lab.parent_pid), "--pid", "--mount", "--", *caps]
        if router.startswith("health-file"):
            spec = ["--router", f"health-file:{marker_dir / 'shop.down'}", "--lb-detect", "0.5"]
        else:
            script = marker_dir / "lb.sh"
            state = marker_dir / "admin"
            state.write_text("ready\n")
            script.write_text(
                "#!/bin/sh\n"
                f'case "$1" in divert) echo drain > {state} ;; restore) echo ready > {state} ;;\n'
                f'state) echo "admin=$(cat {state}) sessions=0 queued=0 peers_up=1" ;; esac\n'
            )
            script.chmod(0o755)
            spec = ["--router", f"command:{script}"]
        old = set(lab.daemon_pids())
        load = LoadLoop(lab.url + "/", max_requests=1500, max_seconds=40, clients=2, pause=0.1)
        load.start()
        try:
            time.sleep(0.5)
            slow = slow_request(lab.url + "/slow?s=2", 2)
            time.sleep(0.3)
            words = [
                *inside, *wsgi_drain_command(), "restart", "--group", "shop",
                "--apache-pidfile", str(lab.pid_file), "--health-url", f"{lab.url}/health",
                "--state-dir", str(tmp_path / "state"), "--json", *spec,
            ]  # fmt: skip
            done = subprocess.run(words, capture_output=True, text=True, timeout=120, check=False)
            time.sleep(0.3)
        finally:
            load.stop()
        assert done.returncode == 0, done.stdout + done.stderr
        report = json.loads(done.stdout)
        assert report["mode"] == "drain" and report["verdict"] == "success"
        assert report["apache"]["pid"] == apache_pid
        assert slow.result(timeout=30).status == 200
        assert_no_failures(load)
        new = set(lab.daemon_pids())
        assert len(new) == 3 and not new & old
        assert not (marker_dir / "shop.down").exists()
        # With Docker's capabilities the daemons were told by express's whole title.
        assert ("(by title)" in report["phases"][0]["detail"]) == bool(caps), report["phases"]
