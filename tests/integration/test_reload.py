"""`wsgi-drain reload` end to end: Apache's own graceful restart made safe, on the real stack.

Two Apaches with two groups each (lab/groups.py) behind HAProxy, load on
both groups' paths and a 4 s request in flight on host `a` when the command
starts.  Failures are counted at the client.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, suppress
from pathlib import Path

import pytest

from lab import LabUnavailable, LoadLoop, ModWsgi, Stack, skip_or_fail, slow_request
from lab.groups import SECOND, SECOND_PROCESSES, TwoGroupsLab, two_group_hosts
from tests.integration.conftest import run_cli
from tests.integration.test_restart import assert_no_failures
from wsgi_drain.state import HOST, Journal

pytestmark = pytest.mark.integration


@pytest.fixture
def groups_stack(tmp_path: Path, modwsgi: ModWsgi) -> Iterator[Stack]:
    """Both builds (Debian's mod_wsgi 4.9, PyPI's 6.x), as the restart's tests run."""
    with ExitStack() as stop:
        try:
            running = stop.enter_context(two_group_hosts(tmp_path, modwsgi))
        except LabUnavailable as err:
            skip_or_fail(str(err))
        yield running


def host_config(stack: Stack, path: Path) -> Path:
    """The TOML a host with two groups is configured by: the routers, each group's health URL."""
    a = stack.a
    path.write_text(
        f'apache_pidfile = "{a.pid_file}"\n'
        f'state_dir = "{stack.state_dir}"\n'
        f'haproxy = ["{stack.haproxy.admin_socket}:be_app/a"]\n'
        "lb_up_timeout = 30\n"
        f'[groups.myapp]\nhealth_url = "{a.url}/health"\n'
        f'[groups.{SECOND}]\nhealth_url = "{a.url}/{SECOND}/health"\n'
    )
    path.chmod(0o600)
    return path


def loads(stack: Stack) -> list[LoadLoop]:
    """Load through HAProxy on both groups' paths."""
    return [
        LoadLoop(stack.haproxy.url + path, max_requests=3000, max_seconds=40, clients=2)
        for path in ("/", f"/{SECOND}/")
    ]


def test_reload_under_load_loses_nothing_and_replaces_every_group(
    groups_stack: Stack, tmp_path: Path
) -> None:
    stack = groups_stack
    a = stack.a
    assert isinstance(a, TwoGroupsLab)
    parent = a.parent_pid
    old = a.all_daemon_pids()
    conf = host_config(stack, tmp_path / "wsgi-drain.toml")
    running = loads(stack)
    for load in running:
        load.start()
    try:
        time.sleep(0.5)
        slow = slow_request(stack.haproxy.url + "/slow?s=4", 4)
        time.sleep(0.5)
        run = run_cli("reload", "--config", str(conf), "--json")
        time.sleep(0.5)
    finally:
        for load in running:
            load.stop()
    assert run.returncode == 0, run.stdout + run.stderr
    report = run.json()
    assert report["schema"] == "wsgi-drain/reload/v1"
    assert report["verdict"] == "success"
    assert slow.result(timeout=30).status == 200
    for load in running:
        assert_no_failures(load)
    # Apache's own restart: the parent stays, every daemon of every group is new.
    assert a.parent_pid == parent and report["apache_pid_after"] == parent
    assert report["generation_after"] != report["generation_before"]
    new_main, new_second = set(a.daemon_pids()), set(a.second_pids())
    assert len(new_main) == a.processes and len(new_second) == SECOND_PROCESSES
    assert not (new_main | new_second) & old
    groups = {g["name"]: g for g in report["groups"]}
    assert set(groups) == {"myapp", SECOND}
    assert set(groups["myapp"]["new_pids"]) == new_main
    assert set(groups[SECOND]["new_pids"]) == new_second
    assert all(g["change"] == "kept" and g["health"]["status"] == 200 for g in groups.values())
    assert groups["myapp"]["warm"] is not None  # lazily loaded: warmed before traffic returned
    assert [(r["diverted"], r["restored"]) for r in report["routers"]] == [(True, True)]
    assert stack.haproxy.server_states()["a"].status.startswith("UP")
    assert not Journal.path_for(stack.state_dir, HOST, "reload").exists()


def test_reload_with_a_syntax_error_reloads_nothing_and_restores_the_router(
    groups_stack: Stack, tmp_path: Path
) -> None:
    stack = groups_stack
    a = stack.a
    assert isinstance(a, TwoGroupsLab)
    parent = a.parent_pid
    old = a.all_daemon_pids()
    conf = host_config(stack, tmp_path / "wsgi-drain.toml")
    with a.conf_path.open("a") as f:
        f.write("\nThisIsNotADirective on\n")
    load = LoadLoop(stack.haproxy.url + "/", max_requests=2000, max_seconds=30, clients=2)
    load.start()
    try:
        time.sleep(0.5)
        run = run_cli("reload", "--config", str(conf))
        time.sleep(2.5)  # the test fails fast: load before and after the router is back
    finally:
        load.stop()
    assert run.returncode == 3, run.stdout + run.stderr
    # Apache's own words, as it printed them.
    assert "Invalid command 'ThisIsNotADirective'" in run.stdout + run.stderr
    assert "nothing was reloaded" in run.stderr
    assert a.parent_pid == parent
    assert a.all_daemon_pids() == old
    assert_no_failures(load)
    assert stack.haproxy.admin_state("a") == "ready"
    assert stack.haproxy.server_states()["a"].status.startswith("UP")
    assert not Journal.path_for(stack.state_dir, HOST, "reload").exists()


def test_graceful_stop_under_load_loses_nothing_then_undrain_wait_ready_puts_it_back(
    groups_stack: Stack, tmp_path: Path
) -> None:
    import psutil

    from lab import procs

    stack = groups_stack
    a = stack.a
    assert isinstance(a, TwoGroupsLab)
    parent = a.parent_pid
    instance = {parent, *(k.pid for k in a.children())}
    conf = host_config(stack, tmp_path / "wsgi-drain.toml")
    running = loads(stack)
    for load in running:
        load.start()
    try:
        time.sleep(0.5)
        slow = slow_request(stack.haproxy.url + "/slow?s=4", 4)
        time.sleep(0.5)
        run = run_cli("stop", "--config", str(conf), "--json")
        time.sleep(0.5)
    finally:
        for load in running:
            load.stop()
    assert run.returncode == 0, run.stdout + run.stderr
    report = run.json()
    assert report["schema"] == "wsgi-drain/stop/v1"
    assert slow.result(timeout=30).status == 200
    for load in running:
        assert_no_failures(load)
    # Apache and every process it ran are gone (a zombie nobody reaps counts as gone).
    assert instance <= set(report["processes"]) and report["still_running"] == []
    for pid in instance:
        with suppress(psutil.NoSuchProcess):
            assert procs.is_gone(psutil.Process(pid)), f"pid {pid} of the instance still runs"
    assert stack.haproxy.admin_state("a") == "drain"
    assert report["left_diverted"] is True
    journal = Journal.load(stack.state_dir, HOST, "stop")
    assert journal is not None and journal.phase == "stopped-for-maintenance"
    assert "maintenance" in journal.note

    check = run_cli("check", "--group", "myapp", "--config", str(conf))
    assert check.returncode == 1, check.stdout  # WARNING, not a bare CRITICAL
    assert "stopped for maintenance" in check.stdout.splitlines()[0]

    # The maintenance done: Apache started again, undrain waits until it is ready.
    a.start_again()
    load = LoadLoop(stack.haproxy.url + "/", max_requests=3000, max_seconds=30, clients=2)
    load.start()
    try:
        time.sleep(0.5)
        back = run_cli("undrain", "--group", "myapp", "--config", str(conf), "--wait-ready", "60")
        stack.haproxy.wait_status("a", "UP", timeout=15)
        time.sleep(1.0)
    finally:
        load.stop()
    assert back.returncode == 0, back.stdout + back.stderr
    assert stack.haproxy.admin_state("a") == "ready"
    assert_no_failures(load)
    assert not Journal.path_for(stack.state_dir, HOST, "stop").exists()


def test_reload_leaves_an_unhealthy_host_out_and_undrain_repairs_the_reload(
    groups_stack: Stack, tmp_path: Path
) -> None:
    stack = groups_stack
    a = stack.a
    conf = host_config(stack, tmp_path / "wsgi-drain.toml")
    a.set_healthy(False)  # the new generation will not answer its health URL
    run = run_cli("reload", "--config", str(conf), "--json")
    assert run.returncode == 6, run.stdout + run.stderr
    report = run.json()
    assert report["left_diverted"] is True
    assert stack.haproxy.admin_state("a") == "drain"
    journal = Journal.load(stack.state_dir, HOST, "reload")
    assert journal is not None and journal.phase == "left-diverted"
    status = run_cli("status", "--state-dir", str(stack.state_dir))
    assert "journal: the host's reload" in status.stdout, status.stdout
    assert "undrain --group GROUP --wait-ready 60" in status.stdout

    a.set_healthy(True)
    back = run_cli("undrain", "--group", SECOND, "--config", str(conf), "--wait-ready", "30")
    assert back.returncode == 0, back.stdout + back.stderr
    assert stack.haproxy.admin_state("a") == "ready"
    assert not Journal.path_for(stack.state_dir, HOST, "reload").exists()


def test_reload_benchmark_measures_both_methods_in_one_run() -> None:
    """bench/reload_methods.py, one short repetition: complete figures, never speed."""
    from bench import reload_methods

    try:
        section = reload_methods.run(
            "debian",
            1,
            timing=reload_methods.Timing(steady=1.0, slow=2.0, slow_lead=0.3, tail=0.5),
            log=lambda _line: None,
        )
    except LabUnavailable as err:
        skip_or_fail(str(err))
    methods = section["methods"]
    assert set(methods) == {"graceful", "reload"}
    for data in methods.values():
        (trial,) = data["trials"]
        assert trial["errors"] == [], trial["errors"]
        assert sum(trial["counts"].values()) == trial["total"] > 0
        assert trial["wall_replaced"] is not None and trial["parent_kept"]
        assert not set(trial["old_pids"]) & set(trial["new_pids"])
    (ours,) = methods["reload"]["trials"]
    assert ours["exit_status"] == 0 and ours["report"]["verdict"] == "success"
    assert ours["failed"] == 0 and ours["in_flight"]["status"] == 200
    assert "| wsgi-drain reload (HAProxy) |" in "\n".join(reload_methods.markdown(section))


@pytest.mark.parametrize("repair", ["undrain", "reload"])
def test_reload_killed_outright_leaves_its_journal_and_undrain_repairs_it(
    groups_stack: Stack, tmp_path: Path, repair: str
) -> None:
    """Repaired by `undrain`, or taken over by the next reload (which puts the router back)."""
    import signal
    import subprocess

    from tests.integration.conftest import wsgi_drain_command

    stack = groups_stack
    conf = host_config(stack, tmp_path / "wsgi-drain.toml")
    # A request in flight holds the reload in its wait, after the divert.
    slow = slow_request(stack.haproxy.url + "/slow?s=6", 6)
    time.sleep(0.5)
    proc = subprocess.Popen(
        [*wsgi_drain_command(), "reload", "--config", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        while stack.haproxy.admin_state("a") != "drain" and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)  # ours: the reload this test started
    finally:
        proc.wait(timeout=30)
    journal = Journal.load(stack.state_dir, HOST, "reload")
    assert journal is not None and journal.diverted, "the killed reload left no journal"
    assert stack.haproxy.admin_state("a") == "drain"
    assert slow.result(timeout=30).status == 200

    if repair == "undrain":
        run = run_cli("undrain", "--group", "myapp", "--config", str(conf), "--wait-ready", "30")
        assert run.returncode == 0, run.stdout + run.stderr
        assert "the reload of pid" in run.stderr + run.stdout
    else:
        run = run_cli("reload", "--config", str(conf), "--json")
        assert run.returncode == 0, run.stdout + run.stderr
        report = run.json()
        assert [(r["adopted"], r["restored"]) for r in report["routers"]] == [(True, True)]
        assert any("earlier reload or stop" in w for w in report["warnings"])
    assert stack.haproxy.admin_state("a") == "ready"
    assert not Journal.path_for(stack.state_dir, HOST, "reload").exists()


@pytest.mark.parametrize("command", ["reload", "stop"])
def test_reload_and_stop_dry_run_print_the_whole_plan_and_change_nothing(
    groups_stack: Stack, tmp_path: Path, command: str
) -> None:
    stack = groups_stack
    a = stack.a
    assert isinstance(a, TwoGroupsLab)
    parent, old = a.parent_pid, a.all_daemon_pids()
    conf = host_config(stack, tmp_path / "wsgi-drain.toml")
    run = run_cli(command, "--config", str(conf), "--dry-run", "--json")
    assert run.returncode == 0, run.stdout + run.stderr
    plan = " | ".join(run.json()["plan"])
    assert "divert haproxy" in plan and "restore" not in plan.split("|")[0]
    if command == "reload":
        assert "test the configuration: /usr/sbin/apache2 -f" in plan
        assert f"SIGUSR1 (graceful restart) to the Apache parent pid {parent}" in plan
        assert f"probe group {SECOND} at" in plan and "it loads lazily" in plan
    else:
        assert f"SIGWINCH (graceful-stop) to the Apache parent pid {parent}" in plan
        assert "leave the host out of rotation" in plan
    assert a.parent_pid == parent and a.all_daemon_pids() == old
    assert stack.haproxy.admin_state("a") == "ready"
    assert not Journal.path_for(stack.state_dir, HOST, command).exists()
