"""The host's runs (reload, stop): their pure rules, and undrain repairing them."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.children import SLEEPER, reap
from wsgi_drain.config import Settings
from wsgi_drain.divert import undrain
from wsgi_drain.errors import LockedError
from wsgi_drain.host.apachectl import configtest_argv
from wsgi_drain.host.settings import host_routers
from wsgi_drain.state import HOST, Journal


def test_configtest_keeps_the_instances_own_configuration_arguments() -> None:
    argv = [
        "/usr/sbin/apache2", "-d", "/etc/apache2-two", "-fconf/x.conf", "-D", "FOREGROUND",
        "-C", "Define X 1", "-c", "LogLevel info", "-k", "start", "-X",
    ]  # fmt: skip
    assert configtest_argv(argv) == [
        "-d", "/etc/apache2-two", "-f", "conf/x.conf", "-D", "FOREGROUND",
        "-C", "Define X 1", "-c", "LogLevel info", "-t",
    ]  # fmt: skip


def test_configtest_of_a_bare_httpd_is_just_dash_t() -> None:
    assert configtest_argv(["/usr/sbin/httpd"]) == ["-t"]


def test_host_routers_name_each_server_once_whichever_group_names_it() -> None:
    base = Settings(group=HOST, haproxy=("/s:be/web1",))
    a = Settings(group="a", haproxy=("/s:be/web1",), routers=("command:/bin/lb web1",))
    b = Settings(group="b", routers=("haproxy:/s:be/web1", "health-file:/run/down"))
    assert host_routers(base, [a, b], given=False) == [
        "haproxy:/s:be/web1",
        "command:/bin/lb web1",
        "health-file:/run/down",
    ]


def test_host_routers_given_replace_every_tables() -> None:
    base = Settings(group=HOST, routers=("command:/bin/lb web1",))
    a = Settings(group="a", haproxy=("/s:be/web1",))
    assert host_routers(base, [a], given=True) == ["command:/bin/lb web1"]


# -- undrain repairs a host run's journal, from any group ------------------------------------


@pytest.fixture
def hook(tmp_path: Path) -> str:
    """A command router (a real program) whose server state lives in a file; its spec."""
    state = tmp_path / "admin"
    state.write_text("drain")
    script = tmp_path / "lb-hook"
    script.write_text(
        "#!/bin/sh\n"
        f'S="{state}"\n'
        'case "$1" in\n'
        '  divert) echo drain > "$S" ;;\n'
        '  restore) echo ready > "$S" ;;\n'
        '  state) echo "admin=$(cat "$S") sessions=0 queued=0 peers_up=1" ;;\n'
        "esac\n"
    )
    script.chmod(0o700)
    return f"command:{script}"


@pytest.mark.parametrize("kind", ["reload", "stop"])
def test_undrain_of_any_group_repairs_an_interrupted_host_run(
    tmp_path: Path, hook: str, kind: str
) -> None:
    state_dir = tmp_path / "state"
    journal = Journal(
        group=HOST, pid=os.getpid() + 100000, started=0.0, kind=kind, routers=[hook],
        before={hook: "ready"}, diverted=[hook], phase="graceful",
    )  # fmt: skip
    journal.save(state_dir)
    said: list[str] = []
    result = undrain(Settings(group="two", state_dir=state_dir), lambda _p, m: said.append(m), None)
    assert (tmp_path / "admin").read_text().strip() == "ready"
    assert result.journal_removed
    assert not Journal.path_for(state_dir, HOST, kind).exists()
    assert any(f"the {kind} of pid" in m for m in said), said


def test_undrain_leaves_a_host_journal_naming_other_servers(tmp_path: Path, hook: str) -> None:
    state_dir = tmp_path / "state"
    other = "command:/bin/false other"
    Journal(
        group=HOST, pid=1, started=0.0, kind="stop", routers=[hook, other],
        before={hook: "ready", other: "ready"}, diverted=[hook, other],
    ).save(state_dir)  # fmt: skip
    undrain(Settings(group="myapp", routers=(hook,), state_dir=state_dir), lambda *_: None)
    left = json.loads(Journal.path_for(state_dir, HOST, "stop").read_text())
    assert left["diverted"] == [other]


HOST_LOCK = """
import sys, time
from pathlib import Path
from wsgi_drain import state
what = sys.argv[2]
with state.group_lock(Path(sys.argv[1]), state.HOST, what=what, shared=what == "undrain"):
    sys.stdout.write("held\\n"); sys.stdout.flush()
    time.sleep(60)
"""


@contextlib.contextmanager
def host_lock_held(state_dir: Path, what: str) -> Iterator[None]:
    """A child process holds the host's lock as a `what` run does, until the block ends."""
    child = subprocess.Popen(
        [sys.executable, "-c", HOST_LOCK, str(state_dir), what], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "held\n"
        yield
    finally:
        reap([child])


def left_by_a_reload(state_dir: Path, hook: str) -> None:
    Journal(
        group=HOST, pid=1, started=0.0, kind="reload", routers=[hook],
        before={hook: "ready"}, diverted=[hook], phase="graceful",
    ).save(state_dir)  # fmt: skip


def test_undrain_of_a_host_journal_is_refused_while_the_host_run_holds_its_lock(
    tmp_path: Path, hook: str
) -> None:
    # A reload still going (its lock held: it locks the host and its own groups) must
    # not have its server put back by an undrain of a group it does not lock.
    state_dir = tmp_path / "state"
    left_by_a_reload(state_dir, hook)
    refused = pytest.raises(LockedError, match=r"held by pid \d+ \(reload\)")
    with host_lock_held(state_dir, "reload"), refused:
        undrain(Settings(group="two", state_dir=state_dir), lambda *_: None)
    assert (tmp_path / "admin").read_text().strip() == "drain"
    assert Journal.path_for(state_dir, HOST, "reload").exists()


def test_undrains_of_two_groups_repair_a_host_journal_side_by_side(
    tmp_path: Path, hook: str
) -> None:
    # The host's lock is held shared by an undrain, as the group's lock is: another
    # group's undrain (this one) repairs the same host journal beside it.
    state_dir = tmp_path / "state"
    left_by_a_reload(state_dir, hook)
    with host_lock_held(state_dir, "undrain"):
        result = undrain(Settings(group="two", state_dir=state_dir), lambda *_: None)
    assert (tmp_path / "admin").read_text().strip() == "ready"
    assert result.journal_removed


# -- stop: confirmed gone by pid and start time; check says "stopped for maintenance" -------


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    reap(started)


def test_stop_counts_a_process_alive_until_it_is_gone(
    children: list[subprocess.Popen[bytes]],
) -> None:
    from wsgi_drain.host.stop import _alive, _instance_processes

    child = subprocess.Popen([sys.executable, "-c", SLEEPER])
    children.append(child)
    recorded = _instance_processes(os.getpid())
    assert child.pid in recorded
    assert child.pid in _alive(recorded)
    child.kill()
    child.wait()
    assert child.pid not in _alive(recorded)


def test_stop_does_not_wait_for_a_reused_pid(children: list[subprocess.Popen[bytes]]) -> None:
    from wsgi_drain.host.stop import _alive

    child = subprocess.Popen([sys.executable, "-c", SLEEPER])
    children.append(child)
    # Same pid, another start time: another process now, not one of the instance's.
    assert _alive({child.pid: 1.0}) == set()


def test_check_says_stopped_for_maintenance_not_a_bare_critical(tmp_path: Path) -> None:
    from wsgi_drain.check import Thresholds, run_check
    from wsgi_drain.status import NagiosStatus

    state_dir = tmp_path / "state"
    Journal(group=HOST, pid=1, started=0.0, kind="stop", phase="stopped-for-maintenance").save(
        state_dir
    )
    settings = Settings(group="myapp", apache_pidfile=tmp_path / "gone.pid", state_dir=state_dir)
    result = run_check(settings, Thresholds())
    assert result.status == NagiosStatus.WARNING
    assert any("stopped for maintenance" in f.message for f in result.findings)
    Journal.path_for(state_dir, HOST, "stop").unlink()
    assert run_check(settings, Thresholds()).status == NagiosStatus.CRITICAL


# -- reload --or-graceful: the plain reload only where wsgi-drain is not configured ---------


def test_reload_or_graceful_runs_the_plain_reload_when_unconfigured(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from wsgi_drain import config
    from wsgi_drain.cli import cli

    cli_reload = importlib.import_module("wsgi_drain.cli.reload")  # the name is the command

    monkeypatch.delenv("WSGI_DRAIN_CONFIG", raising=False)
    monkeypatch.setattr(config, "DEFAULT_CONFIG", tmp_path / "absent.toml")
    # Our own constant: `false` stands for apachectl, so its status must come back.
    monkeypatch.setattr(cli_reload, "PLAIN_RELOAD", ("false",))
    result = CliRunner().invoke(cli, ["reload", "--or-graceful"], catch_exceptions=False)
    assert result.exit_code == 1
    assert "not configured" in result.output


def test_reload_or_graceful_is_wsgi_drains_reload_once_configured(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from wsgi_drain.cli import cli

    cli_reload = importlib.import_module("wsgi_drain.cli.reload")  # the name is the command

    conf = tmp_path / "wsgi-drain.toml"
    conf.write_text(f'apache_pidfile = "{tmp_path / "gone.pid"}"\n')
    conf.chmod(0o600)
    monkeypatch.setattr(cli_reload, "PLAIN_RELOAD", ("false",))
    result = CliRunner().invoke(
        cli, ["reload", "--or-graceful", "--config", str(conf)], catch_exceptions=False
    )
    assert result.exit_code == 3  # wsgi-drain's own run: its Apache is not found
    assert "not configured" not in result.output
    assert "gone.pid does not exist" in result.output


@pytest.mark.parametrize("command", ["reload", "stop"])
def test_host_commands_refuse_a_router_chosen_under_sudo(
    monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    from click.testing import CliRunner

    from wsgi_drain.cli import cli

    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("the sudo rule applies to root only: run CI as root", pytrace=False)
        pytest.skip("the sudo rule applies to root only")
    monkeypatch.setenv("SUDO_USER", "mallory")
    result = CliRunner().invoke(
        cli, [command, "--router", "command:/tmp/x"], catch_exceptions=False
    )
    assert result.exit_code == 2
    assert "--router is refused when run as root through sudo" in result.output


def test_a_stop_without_routers_is_over_once_apache_runs_again(tmp_path: Path) -> None:
    from wsgi_drain.maintenance import stop_note

    Journal(group=HOST, pid=1, started=0.0, kind="stop", phase="stopped-for-maintenance").save(
        tmp_path
    )
    assert "stopped for maintenance" in (stop_note(tmp_path, "myapp") or "")
    assert stop_note(tmp_path, "myapp", apache_running=True) is None
    Journal(
        group=HOST, pid=1, started=0.0, kind="stop", routers=["command:/bin/lb"],
        before={"command:/bin/lb": "ready"}, diverted=["command:/bin/lb"],
    ).save(tmp_path)  # fmt: skip
    note = stop_note(tmp_path, "myapp", apache_running=True)
    assert note is not None and "undrain --group myapp --wait-ready 60" in note
