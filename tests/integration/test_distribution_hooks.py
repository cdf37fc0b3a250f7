"""The distribution's own restarts, made safe: logrotate, certbot, and the systemd check unit.

Debian's logrotate and certbot hooks reload Apache, and any Apache reload
stops every mod_wsgi daemon (SIGTERM, SIGKILL ~3 s later): the first test
shows that on the real stack.  The shipped examples are then run for real:
scripts/logrotate.d-apache2 (postrotate: `wsgi-drain reload`) by the real
logrotate, scripts/certbot-deploy-hook (`wsgi-drain reload`) under load
through HAProxy, the ExecReload= of the systemd drop-in
(scripts/systemd/apache2.service.d/wsgi-drain.conf) under load with a 4 s
request in flight, and the ExecStart of scripts/systemd/wsgi-drain-check@.service.
Settings the examples read from /etc/wsgi-drain.toml come from WSGI_DRAIN_*
variables or a WSGI_DRAIN_CONFIG file here, so the test never touches /etc.
"""

from __future__ import annotations

import configparser
import os
import shlex
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import (
    ApacheLab,
    LabUnavailable,
    LoadLoop,
    Outcome,
    Stack,
    skip_or_fail,
    slow_request,
    two_hosts,
    wsgi_drain_command,
)
from tests.integration.conftest import run_cli, start

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"
TIMEOUTS = {"graceful-timeout": 5, "shutdown-timeout": 5}


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    try:
        with two_hosts(tmp_path, daemon_options=TIMEOUTS) as running:
            yield running
    except LabUnavailable as err:
        skip_or_fail(str(err))


def _env(stack: Stack, state: Path) -> dict[str, str]:
    """What /etc/wsgi-drain.toml would say for host a, as WSGI_DRAIN_* variables."""
    return {
        "WSGI_DRAIN_APACHE_PIDFILE": str(stack.a.pid_file),
        "WSGI_DRAIN_HAPROXY": f"{stack.haproxy.admin_socket}:be_app/a",
        "WSGI_DRAIN_HEALTH_URL": f"{stack.a.url}/health",
        "WSGI_DRAIN_STATE_DIR": str(state),
    }


def _host_toml(lab: ApacheLab, state: Path, path: Path, haproxy: str | None = None) -> Path:
    """What /etc/wsgi-drain.toml says for host `lab` (0600, as root's file must be)."""
    text = f'apache_pidfile = "{lab.pid_file}"\nstate_dir = "{state}"\n'
    if haproxy is not None:
        text += f'haproxy = ["{haproxy}"]\n'
    path.write_text(text + f'[groups.myapp]\nhealth_url = "{lab.url}/health"\n')
    path.chmod(0o600)
    return path


def _exec_reload(unit: Path) -> str:
    """The ExecReload= a drop-in leaves: it must reset the unit's own first (an empty one)."""
    values = []
    section = ""
    for line in unit.read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and line.startswith("ExecReload="):
            values.append(line.partition("=")[2])
    assert values[:1] == [""], f"{unit} does not reset the unit's ExecReload= first: {values}"
    assert len(values) == 2, values
    return values[1]


def _get(url: str) -> None:
    with urllib.request.urlopen(url, timeout=10) as response:  # loopback only
        assert response.status == 200
        response.read()


def _wait_lines(path: Path, count: int) -> None:
    """Apache logs a request just after answering it: wait (bounded) for `count` lines."""
    deadline = time.monotonic() + 10
    while path.read_bytes().count(b"\n") < count and time.monotonic() < deadline:
        time.sleep(0.05)


def _failed(load: LoadLoop) -> dict[Outcome, int]:
    return {k: v for k, v in load.summary().counts.items() if k != Outcome.OK and v}


def test_apache_reload_without_the_hook_cuts_the_request_in_flight(stack: Stack) -> None:
    old = set(stack.a.daemon_pids())
    slow = slow_request(stack.haproxy.url + "/slow?s=5", 5)
    time.sleep(0.5)
    stack.a.apachectl_graceful()
    result = slow.result(timeout=30)
    # The daemon serving it was stopped mid-request: mod_wsgi answers 500 for a daemon
    # that closes before its response ("Truncated or oversized response headers").
    # Any other failure (refused, timeout, a 503) is not this premise.
    assert result.status == 500, f"the reload did not cut the request in flight: {result}"
    deadline = time.monotonic() + 20
    while set(stack.a.daemon_pids()) & old and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not set(stack.a.daemon_pids()) & old, "the reload did not restart the daemons"


def test_certbot_deploy_hook_reloads_apache_without_losing_a_request(
    stack: Stack, tmp_path: Path
) -> None:
    old, parent = set(stack.a.daemon_pids()), stack.a.parent_pid
    conf = _host_toml(
        stack.a, tmp_path / "state", tmp_path / "wsgi-drain.toml",
        f"{stack.haproxy.admin_socket}:be_app/a",
    )  # fmt: skip
    env = {**os.environ, "WSGI_DRAIN": wsgi_drain_command()[0], "WSGI_DRAIN_CONFIG": str(conf)}
    load = LoadLoop(stack.haproxy.url + "/", max_requests=3000, max_seconds=40)
    load.start()
    try:
        time.sleep(0.5)
        slow = slow_request(stack.haproxy.url + "/slow?s=3", 3)
        time.sleep(0.3)
        hook = subprocess.run(
            [str(SCRIPTS / "certbot-deploy-hook")],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        time.sleep(0.5)
    finally:
        load.stop()
    assert hook.returncode == 0, hook.stdout + hook.stderr
    assert slow.result(timeout=30).status == 200
    assert load.summary().total > 20 and not _failed(load), load.summary()
    # Apache did reload (same parent, every daemon new) and the host is back in rotation.
    new = set(stack.a.daemon_pids())
    assert len(new) == 3 and not new & old and stack.a.parent_pid == parent
    assert stack.haproxy.server_states()["a"].status.startswith("UP")
    assert hook.stdout.startswith("wsgi-drain: OK - Apache pid"), hook.stdout


def test_systemd_drop_in_exec_reload_is_a_reload_that_loses_nothing(
    stack: Stack, tmp_path: Path
) -> None:
    for unit in ("apache2", "httpd"):
        command = _exec_reload(SCRIPTS / "systemd" / f"{unit}.service.d" / "wsgi-drain.conf")
        assert command == "/usr/local/bin/wsgi-drain reload --quiet --or-graceful", unit
    argv = shlex.split(command)
    argv[0] = wsgi_drain_command()[0]
    conf = _host_toml(
        stack.a, tmp_path / "state", tmp_path / "wsgi-drain.toml",
        f"{stack.haproxy.admin_socket}:be_app/a",
    )  # fmt: skip
    old, parent = set(stack.a.daemon_pids()), stack.a.parent_pid
    load = LoadLoop(stack.haproxy.url + "/", max_requests=3000, max_seconds=40)
    load.start()
    try:
        time.sleep(0.5)
        slow = slow_request(stack.haproxy.url + "/slow?s=4", 4)
        time.sleep(0.5)
        # systemd runs ExecReload= without a shell, with the unit's environment.
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            env={**os.environ, "WSGI_DRAIN_CONFIG": str(conf)},
            timeout=120,
            check=False,
        )
        time.sleep(0.5)
    finally:
        load.stop()
    assert done.returncode == 0, done.stdout + done.stderr
    assert slow.result(timeout=30).status == 200
    assert load.summary().total > 50 and not _failed(load), load.summary()
    new = set(stack.a.daemon_pids())
    assert len(new) == 3 and not new & old and stack.a.parent_pid == parent
    assert stack.haproxy.admin_state("a") == "ready"


def test_undrain_wait_ready_keeps_an_unhealthy_group_out_of_rotation(
    stack: Stack, tmp_path: Path
) -> None:
    env = _env(stack, tmp_path / "state")
    drained = run_cli("drain", "--group", "myapp", env=env)
    assert drained.returncode == 0, drained.stderr
    stack.a.set_healthy(False)
    run = run_cli("undrain", "--group", "myapp", "--wait-ready", "1.5", env=env)
    assert run.returncode == 6, run.stdout + run.stderr
    assert "not ready 1.5 s after undrain began" in run.stdout
    assert "HTTP 503" in run.stdout and "wsgi-drain undrain --group myapp" in run.stdout
    assert stack.haproxy.admin_state("a") == "drain"
    stack.a.set_healthy(True)
    run = run_cli("undrain", "--group", "myapp", "--wait-ready", "10", env=env)
    assert run.returncode == 0, run.stderr
    assert stack.haproxy.admin_state("a") == "ready"
    # HAProxy's own checks marked it DOWN while /health failed; they bring it back.
    stack.haproxy.wait_status("a", "UP", timeout=15)


@pytest.fixture
def logged(tmp_path: Path) -> Iterator[ApacheLab]:
    """Host with an access log beside its error log, as /var/log/apache2 has."""
    logs = tmp_path / "a"
    config = f'LogFormat "%h %t \\"%r\\" %>s" common\nCustomLog "{logs / "access.log"}" common\n'
    lab = ApacheLab(logs, extra_config=config)
    start(lab)
    try:
        yield lab
    finally:
        lab.stop()


def test_logrotate_postrotate_reloads_through_wsgi_drain(logged: ApacheLab, tmp_path: Path) -> None:
    logrotate = shutil.which("logrotate", path="/usr/sbin:/usr/bin:/sbin:/bin")
    if logrotate is None:
        skip_or_fail("logrotate not found: apt-get install logrotate")
    access = logged.root / "access.log"
    _wait_lines(access, 1)  # the lab's own start-up probe of /
    started = access.read_bytes().count(b"\n")
    for _ in range(5):
        _get(logged.url + "/")
    _wait_lines(access, started + 5)
    before = access.read_bytes()
    parent, daemons = logged.parent_pid, set(logged.daemon_pids())

    snippet = (SCRIPTS / "logrotate.d-apache2").read_text()
    conf = tmp_path / "logrotate.conf"
    conf.write_text(
        snippet.replace("/var/log/apache2/*.log", f"{logged.root}/access.log").replace(
            "/usr/local/bin/wsgi-drain", wsgi_drain_command()[0]
        )
    )
    conf.chmod(0o644)
    toml = _host_toml(logged, tmp_path / "state", tmp_path / "wsgi-drain.toml")
    done = subprocess.run(
        [logrotate, "-f", "-s", str(tmp_path / "logrotate.state"), str(conf)],
        capture_output=True,
        text=True,
        env={**os.environ, "WSGI_DRAIN_CONFIG": str(toml)},
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (logged.root / "access.log.1").read_bytes() == before
    # Reloaded by wsgi-drain: the same parent, every daemon new, the new log reopened.
    assert logged.parent_pid == parent
    new = set(logged.daemon_pids())
    assert len(new) == 3 and not new & daemons
    for _ in range(3):
        _get(logged.url + "/")
    _wait_lines(access, 3)
    assert access.read_bytes().count(b"\n") >= 3


def test_systemd_check_unit_runs_the_check_and_writes_the_textfile(
    stack: Stack, tmp_path: Path
) -> None:
    unit = configparser.ConfigParser(interpolation=None, strict=True)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(SCRIPTS / "systemd" / "wsgi-drain-check@.service")
    service = unit["Service"]
    assert service["Type"] == "oneshot"
    ok_statuses = {0, *(int(s) for s in service["SuccessExitStatus"].split())}
    textdir = tmp_path / "node-exporter"
    textdir.mkdir()
    command = (
        service["ExecStart"]
        .replace("%i", "myapp")
        .replace("/usr/local/bin/wsgi-drain", wsgi_drain_command()[0])
        .replace("/var/lib/prometheus/node-exporter", str(textdir))
    )
    timer = configparser.ConfigParser(interpolation=None)
    timer.read(SCRIPTS / "systemd" / "wsgi-drain-check@.timer")
    assert timer["Install"]["WantedBy"] == "timers.target"

    done = subprocess.run(
        shlex.split(command),
        capture_output=True,
        text=True,
        env={**os.environ, **_env(stack, tmp_path / "state")},
        timeout=60,
        check=False,
    )
    assert done.returncode in ok_statuses, done.stdout + done.stderr
    assert done.stdout.startswith("WSGI-DRAIN OK"), done.stdout
    metrics = (textdir / "wsgi_drain_myapp.prom").read_text()
    assert 'wsgi_drain_check_status{group="myapp"} 0' in metrics
