"""Never change what the operator set, and never lose track of what wsgi-drain changed.

Real Apache + mod_wsgi behind a real HAProxy (Debian's module: none of this
depends on the mod_wsgi build).  The review's findings, each reproduced here
first: MAINT and DRAIN set before a restart were turned into READY; an undrain
during a restart put the backend back mid-restart; a divert whose answer was
lost was forgotten; two groups behind one server undid each other's drain.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import (
    ApacheLab,
    HAProxyLab,
    LabUnavailable,
    LoadLoop,
    Outcome,
    Stack,
    skip_or_fail,
    slow_request,
    two_hosts,
)
from tests.integration.conftest import restart_args, run_cli, start, wsgi_drain_command
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


def server_admin(stack: Stack) -> str:
    """Server a's administrative state as HAProxy has it (ready / drain / maint)."""
    return stack.haproxy.admin_state("a")


def undrain(stack: Stack, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*wsgi_drain_command(), "undrain", "--group", "myapp", "--state-dir", str(stack.state_dir),
         "--haproxy", f"{stack.haproxy.admin_socket}:be_app/a", *extra],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def no_failures(load: LoadLoop) -> None:
    summary = load.summary()
    failed = {k: v for k, v in summary.counts.items() if k != Outcome.OK and v}
    assert summary.total > 20, summary
    assert not failed, f"failed requests: {failed} of {summary.total}"


@pytest.mark.parametrize("state", ["maint", "drain"])
def test_operator_state_before_restart_is_kept_after_it(stack: Stack, state: str) -> None:
    stack.haproxy.command(f"set server be_app/a state {state}")
    old = set(stack.a.daemon_pids())
    load = LoadLoop(stack.haproxy.url + "/", max_requests=2000, max_seconds=30)
    load.start()
    try:
        run = run_cli(*restart_args(stack, "--json"))
    finally:
        load.stop()
    report = run.json()
    assert run.returncode == 0, run.stderr
    assert server_admin(stack) == state  # not READY: the operator's choice stands
    router = report["routers"][0]
    assert (router["diverted"], router["restored"]) == (False, False)
    assert any(f"in {state} before the restart" in w for w in report["warnings"])
    assert not set(stack.a.daemon_pids()) & old  # the group was still restarted
    no_failures(load)


def test_operator_state_maint_is_left_by_undrain(stack: Stack) -> None:
    stack.haproxy.command("set server be_app/a state maint")
    done = undrain(stack)
    assert done.returncode == 0, done.stderr
    assert "left in maint, which wsgi-drain never sets" in done.stdout
    assert server_admin(stack) == "maint"


def test_operator_state_set_after_a_failed_run_is_left_by_undrain(stack: Stack) -> None:
    # The run leaves the backend diverted (app unhealthy); then an operator
    # puts the server in MAINT for their own work.  undrain must not undo it.
    stack.a.set_healthy(False)
    run = run_cli(*restart_args(stack, "--json"), timeout=120)
    assert run.returncode == 6, run.stderr
    journal = Journal.load(stack.state_dir, "myapp")
    assert journal is not None and journal.still_diverted
    stack.haproxy.command("set server be_app/a state maint")
    stack.a.set_healthy(True)
    done = undrain(stack)
    assert done.returncode == 0, done.stderr
    assert "someone set it after wsgi-drain diverted it" in done.stdout
    assert server_admin(stack) == "maint"


def test_operator_state_undrain_restores_the_recorded_ready(stack: Stack) -> None:
    stack.a.set_healthy(False)
    run = run_cli(*restart_args(stack, "--json"), timeout=120)
    assert run.returncode == 6, run.stderr
    assert server_admin(stack) == "drain"
    stack.a.set_healthy(True)
    done = undrain(stack)
    assert done.returncode == 0, done.stderr
    assert "ready (its state before wsgi-drain diverted it)" in done.stdout
    assert server_admin(stack) == "ready"
    assert Journal.load(stack.state_dir, "myapp") is None


def test_operator_state_undrain_is_refused_while_a_restart_runs(stack: Stack) -> None:
    # The review: undrain during a restart's watch put the backend back
    # mid-restart and deleted the running run's journal.
    slow = slow_request(stack.haproxy.url + "/slow?s=4", 4)
    time.sleep(0.5)
    first = subprocess.Popen(
        [*wsgi_drain_command(), *restart_args(stack, "--json")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        stack.haproxy.wait_status("a", "DRAIN", timeout=10)
        done = undrain(stack)
        assert done.returncode == 7, done.stdout + done.stderr
        assert "(restart)" in done.stdout and "held by pid" in done.stdout
        assert server_admin(stack) == "drain"
        assert Journal.path_for(stack.state_dir, "myapp").exists()
        _out, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, err
    assert slow.result(timeout=30).status == 200
    assert server_admin(stack) == "ready"


def test_operator_state_left_by_an_earlier_run_is_taken_over(stack: Stack) -> None:
    # Review: a new run overwrote a left-behind journal silently -- and, now
    # that a non-READY server is left alone, would never put it back.
    stack.a.set_healthy(False)
    assert run_cli(*restart_args(stack, "--json"), timeout=120).returncode == 6
    stack.a.set_healthy(True)
    run = run_cli(*restart_args(stack, "--json"))
    report = run.json()
    assert run.returncode == 0, run.stderr
    assert any("takes it over" in w for w in report["warnings"])
    assert report["routers"][0]["restored"] is True
    assert server_admin(stack) == "ready"
    assert Journal.load(stack.state_dir, "myapp") is None


class LosingRelay:
    """A unix socket in front of HAProxy's that forwards everything but withholds
    the answer to `set server ... state drain` until the client has given up.

    HAProxy itself carries the command out: this is a reply lost on the way,
    which the OS cannot produce on demand.
    """

    def __init__(self, path: Path, target: Path, hold: float = 3.0) -> None:
        self.path, self.target, self.hold = path, target, hold
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(8)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.server.settimeout(0.2)
        while not self.stopped.is_set():
            try:
                conn, _ = self.server.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(5)
                line = conn.recv(4096)
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as upstream:
                    upstream.settimeout(5)
                    upstream.connect(str(self.target))
                    upstream.sendall(line)
                    reply = b"".join(iter(lambda: upstream.recv(65536), b""))
                if b"state drain" in line:
                    self.stopped.wait(self.hold)
                    continue  # closed without an answer
                conn.sendall(reply)

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(5)
        self.server.close()


def test_lost_divert_answer_is_treated_as_applied_and_put_back(stack: Stack) -> None:
    # Review: HAProxy applied the drain but answered after the timeout; the
    # run said "untouched", left the server in DRAIN and deleted the journal.
    relay = LosingRelay(stack.state_dir.parent / "relay.sock", stack.haproxy.admin_socket)
    old = set(stack.a.daemon_pids())
    try:
        run = run_cli(
            *restart_args(stack, "--json", haproxy=False), "--haproxy", f"{relay.path}:be_app/a"
        )
    finally:
        relay.close()
    report = run.json()
    assert run.returncode == 4, run.stderr
    router = report["routers"][0]
    assert router["diverted"] is True and router["restored"] is True
    assert server_admin(stack) == "ready"
    assert set(stack.a.daemon_pids()) == old  # nothing was signalled
    assert not Journal.path_for(stack.state_dir, "myapp").exists()


def test_two_groups_behind_one_server_cannot_divert_at_once(tmp_path: Path) -> None:
    # Review: two groups behind one HAProxy server undo each other's drain --
    # the first to finish puts the server back while the other restarts.
    other = "WSGIDaemonProcess other processes=1 threads=2 display-name=%{GROUP}\n"
    a = ApacheLab(tmp_path / "a", extra_config=other)
    b = ApacheLab(tmp_path / "b")
    haproxy = HAProxyLab(
        tmp_path / "h",
        [("a", "127.0.0.1", a.port or 0), ("b", "127.0.0.1", 0)],
        pin={"/slow": "a"},
    )
    try:
        start(a)
        start(b)
        haproxy.servers = [("a", "127.0.0.1", a.port), ("b", "127.0.0.1", b.port)]
        start(haproxy)
        common = ["--apache-pidfile", str(a.pid_file), "--state-dir", str(tmp_path / "st"),
                  "--haproxy", f"{haproxy.admin_socket}:be_app/a", "--json"]  # fmt: skip
        slow = slow_request(haproxy.url + "/slow?s=4", 4)
        time.sleep(0.5)
        first = subprocess.Popen(
            [*wsgi_drain_command(), "restart", "--group", "myapp", *common],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            haproxy.wait_status("a", "DRAIN", timeout=10)
            second = run_cli("restart", "--group", "other", *common)
            assert second.returncode == 7, second.stderr
            assert "being diverted by another wsgi-drain run (group 'myapp'" in second.stdout
            _out, err = first.communicate(timeout=60)
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()
        assert first.returncode == 0, err
        assert slow.result(timeout=30).status == 200
    finally:
        haproxy.stop()
        b.stop()
        a.stop()


def test_no_health_url_stuck_processes_leave_the_backend_diverted(tmp_path: Path) -> None:
    # Review: without --health-url, stuck processes restored the router.
    a = ApacheLab(
        tmp_path / "a",
        hang=True,
        preload=True,
        daemon_options={"graceful-timeout": 1, "shutdown-timeout": 0},
    )
    b = ApacheLab(tmp_path / "b")
    haproxy: HAProxyLab | None = None
    try:
        start(a)
        a.wait_loaded(a.daemon_pids())  # every process holds the never-ending thread
        start(b)
        haproxy = HAProxyLab(
            tmp_path / "h", [("a", "127.0.0.1", a.port), ("b", "127.0.0.1", b.port)]
        )
        start(haproxy)
        run = run_cli(
            "restart", "--group", "myapp", "--apache-pidfile", str(a.pid_file),
            "--haproxy", f"{haproxy.admin_socket}:be_app/a", "--state-dir", str(tmp_path / "st"),
            "--timeout", "3", "--json",
        )  # fmt: skip
        report = run.json()
        assert run.returncode == 5, run.stderr
        assert report["left_diverted"] is True
        assert haproxy.server_states()["a"].status in ("DRAIN", "DOWN")
        journal = Journal.load(tmp_path / "st", "myapp")
        assert journal is not None and journal.phase == "left-diverted"
    finally:
        if haproxy is not None:
            haproxy.stop()
        b.stop()
        a.stop()


def hand_drain(stack: Stack, server: str, *extra: str) -> list[str]:
    """`drain` of one server of be_app, as the role runs it on the load balancer's host."""
    return [
        *wsgi_drain_command(), "drain", "--group", "myapp", "--state-dir", str(stack.state_dir),
        "--haproxy", f"{stack.haproxy.admin_socket}:be_app/{server}", "--drain-timeout", "2",
        *extra,
    ]  # fmt: skip


def undrain_server(stack: Stack, server: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*wsgi_drain_command(), "undrain", "--group", "myapp", "--state-dir", str(stack.state_dir),
         "--haproxy", f"{stack.haproxy.admin_socket}:be_app/{server}"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_operator_state_undrain_of_one_server_puts_back_only_that_one(stack: Stack) -> None:
    # The load balancer's host: one group, many app servers, one journal naming them.
    for server in ("a", "b"):
        done = subprocess.run(
            hand_drain(stack, server, "--min-peers", "0"),
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    journal = Journal.load(stack.state_dir, "myapp", "drain")
    assert journal is not None and len(journal.still_diverted) == 2
    done = undrain_server(stack, "a")
    assert done.returncode == 0, done.stderr
    assert (stack.haproxy.admin_state("a"), stack.haproxy.admin_state("b")) == ("ready", "drain")
    assert "left out, as asked" in done.stdout and "be_app/b" in done.stdout
    journal = Journal.load(stack.state_dir, "myapp", "drain")
    assert journal is not None and [s.rsplit("/", 1)[1] for s in journal.still_diverted] == ["b"]
    done = undrain_server(stack, "b")
    assert done.returncode == 0, done.stderr
    assert stack.haproxy.admin_state("b") == "ready"
    assert Journal.load(stack.state_dir, "myapp", "drain") is None


def test_operator_state_two_drains_of_different_servers_at_once_take_turns(stack: Stack) -> None:
    # serial >= 2 on the load balancer's host: both drains take the group's
    # lock there.  The second exited 7 at once; now both succeed, one after
    # the other's server is back (--min-peers all: never both out).
    drains = {
        server: subprocess.Popen(
            hand_drain(stack, server, "--min-peers", "all", "--peer-wait", "60"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for server in ("a", "b")
    }
    try:
        first = None
        for _ in range(600):
            first = next((s for s, p in drains.items() if p.poll() is not None), None)
            if first is not None:
                break
            time.sleep(0.1)
        assert first is not None, "neither drain finished"
        out, err = drains[first].communicate()
        assert drains[first].returncode == 0, (first, out, err)
        second = "b" if first == "a" else "a"
        assert drains[second].poll() is None, drains[second].communicate()
        assert stack.haproxy.admin_state(second) == "ready"  # waiting its turn, not out
        assert undrain_server(stack, first).returncode == 0  # the first host is done
        out, err = drains[second].communicate(timeout=90)
        assert drains[second].returncode == 0, (second, out, err)
        assert stack.haproxy.admin_state(second) == "drain"
        assert stack.haproxy.admin_state(first) == "ready"
    finally:
        for proc in drains.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


def test_operator_state_second_restart_is_told_the_lock_holder_not_an_operators_drain(
    stack: Stack,
) -> None:
    slow = slow_request(stack.haproxy.url + "/slow?s=4", 4)
    time.sleep(0.5)
    first = subprocess.Popen(
        [*wsgi_drain_command(), *restart_args(stack, "--json")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        stack.haproxy.wait_status("a", "DRAIN", timeout=10)
        second = run_cli(*restart_args(stack, "--json"))
        assert second.returncode == 7, (second.stdout, second.stderr)
        message = str(second.json()["message"])
        assert f"held by pid {first.pid} (restart)" in message, message
        assert "not by wsgi-drain" not in second.stdout + second.stderr
        _out, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, err
    assert slow.result(timeout=30).status == 200
    assert server_admin(stack) == "ready"


def _drain_cli(stack: Stack, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*wsgi_drain_command(), "drain", "--group", "myapp", "--state-dir", str(stack.state_dir),
         "--drain-timeout", "5", *extra],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_operator_state_undrain_moves_a_broken_journal_aside_and_restores_the_server(
    stack: Stack,
) -> None:
    """A journal that cannot be read blocks nothing when the router is named (issue 25)."""
    drained = _drain_cli(stack, "--haproxy", f"{stack.haproxy.admin_socket}:be_app/a")
    assert drained.returncode == 0, drained.stderr
    assert server_admin(stack) == "drain"
    path = Journal.path_for(stack.state_dir, "myapp", "drain")
    path.write_text("{ this is not a journal")
    run = undrain(stack, "--json")
    assert run.returncode == 0, (run.stdout, run.stderr)
    assert server_admin(stack) == "ready"
    assert not path.exists()
    aside = list(path.parent.glob(path.name + ".broken-*"))
    assert len(aside) == 1 and aside[0].read_text() == "{ this is not a journal"
    assert str(aside[0]) in run.stdout, run.stdout


def test_operator_state_drain_refused_at_a_later_router_leaves_nothing_half_drained(
    stack: Stack,
) -> None:
    """a goes out first; then b would leave no server UP: refused, and a is put back."""
    sock = stack.haproxy.admin_socket
    run = _drain_cli(
        stack, "--haproxy", f"{sock}:be_app/a", "--haproxy", f"{sock}:be_app/b",
        "--min-peers", "1",
    )  # fmt: skip
    assert run.returncode == 4, (run.stdout, run.stderr)
    assert stack.haproxy.admin_state("a") == "ready"
    assert stack.haproxy.admin_state("b") == "ready"
    journal = Journal.load(stack.state_dir, "myapp", "drain")
    assert journal is None or not journal.still_diverted, journal
