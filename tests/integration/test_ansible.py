"""A fleet rollout through Ansible: one host at a time, stop at the first bad one.

The real `ansible-playbook` runs ansible/rolling-restart.yml against an
inventory of four hosts that are four Apache + mod_wsgi instances on loopback
(connection local, each host's own pid file, state directory and HAProxy
server in its host vars) behind one HAProxy, reached over its TCP runtime API
as a central load balancer would be.  While it runs: continuous load through
HAProxy, a 4 s request held on every host (so one is in flight when the
host's turn comes), and a 50 ms sampler of HAProxy's view of the servers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab import LabUnavailable, LoadLoop, Outcome, Sample, skip_or_fail, slow_request
from lab.fleet import Fleet, StateSampler, fleet, host_args, run_playbook
from lab.stack import wsgi_drain_command
from tests.integration.conftest import run_cli

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "ansible" / "rolling-restart.yml"
REPAIR = REPO / "ansible" / "repair.yml"
TIMEOUTS = {"graceful-timeout": 15, "shutdown-timeout": 5}
LONG = 4.0


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[Fleet]:
    try:
        with fleet(tmp_path, 4, daemon_options=TIMEOUTS) as running:
            yield running
    except LabUnavailable as err:
        skip_or_fail(str(err))


def playbook(
    f: Fleet, tmp: Path, *extra: str, book: Path = PLAYBOOK, router_on_host: bool = True
) -> subprocess.CompletedProcess[str]:
    try:
        return run_playbook(
            f, tmp, book, wsgi_drain_command()[0], *extra, router_on_host=router_on_host
        )
    except LabUnavailable as err:
        skip_or_fail(str(err))


class LongRequests:
    """Keep a 4 s request pinned to every host in flight while the host is in rotation."""

    def __init__(self, f: Fleet) -> None:
        self.fleet = f
        self.results: dict[str, list[Sample]] = {n: [] for n in f.hosts}
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(n,), daemon=True) for n in f.hosts
        ]

    def _run(self, name: str) -> None:
        end = time.monotonic() + 600
        while not self._stop.is_set() and time.monotonic() < end:
            if self.fleet.haproxy.admin_state(name) != "ready":
                self._stop.wait(0.1)  # out of rotation: a pinned request would hold its drain
                continue
            url = f"{self.fleet.haproxy.url}/slow/{name}"
            self.results[name].append(slow_request(url, LONG).result(timeout=LONG + 60))

    def __enter__(self) -> LongRequests:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(LONG + 70)


def break_new_code(f: Fleet, name: str) -> None:
    """Deploy code that fails at import to host `name`: its running processes keep the old.

    mod_wsgi loads the app on a process's first request, so every current
    process is made to load it first; only replacements import the broken code.
    """
    lab = f.hosts[name]
    pids = lab.daemon_pids()
    pending = [slow_request(lab.url + "/slow", 0.5) for _ in range(3 * lab.threads)]
    for request in pending:
        assert request.result(timeout=30).status == 200
    lab.wait_loaded(pids)
    lab.set_broken(True)


def _pids(f: Fleet) -> dict[str, set[int]]:
    return {name: set(lab.daemon_pids()) for name, lab in f.hosts.items()}


def test_ansible_rolling_restart_replaces_every_host_one_at_a_time_losing_nothing(
    hosts: Fleet, tmp_path: Path
) -> None:
    before = _pids(hosts)
    load = LoadLoop(hosts.haproxy.url + "/", max_requests=40_000, max_seconds=300)
    load.start()
    try:
        with StateSampler(hosts) as sampler, LongRequests(hosts) as longs:
            time.sleep(1.0)
            run = playbook(hosts, tmp_path)
            time.sleep(0.5)
    finally:
        load.stop()
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    after = _pids(hosts)
    for name in hosts.hosts:
        assert len(after[name]) == 3 and not after[name] & before[name], name
    # Every host's 4 s requests got their 200, one of them in flight at its turn.
    for name, results in longs.results.items():
        assert results and all(r.status == 200 for r in results), (name, results)
    summary = load.summary()
    failed = {k: v for k, v in summary.counts.items() if k != Outcome.OK and v}
    assert summary.total > 100 and not failed, summary
    assert sampler.samples and sampler.most_out <= 1, [c for c in sampler.out_counts() if c[1] > 1]
    assert out.count("success in") == 4, out[-2000:]


def test_ansible_rollout_stops_at_the_broken_host_and_leaves_it_diverted(
    hosts: Fleet, tmp_path: Path
) -> None:
    break_new_code(hosts, "h2")
    before = _pids(hosts)
    load = LoadLoop(hosts.haproxy.url + "/", max_requests=40_000, max_seconds=300)
    load.start()
    try:
        run = playbook(hosts, tmp_path)
        time.sleep(0.5)
    finally:
        load.stop()
    out = run.stdout + run.stderr
    assert run.returncode != 0, out[-3000:]
    assert "ModuleNotFoundError" in out and "lab_missing_dependency" in out, out[-3000:]
    assert "wsgi-drain undrain --group myapp` on h2" in out, out[-3000:]
    after = _pids(hosts)
    assert not after["h1"] & before["h1"], "h1 was not restarted"
    assert after["h3"] == before["h3"] and after["h4"] == before["h4"], "the play went on"
    assert hosts.haproxy.admin_state("h2") == "drain"
    summary = load.summary()
    failed = {k: v for k, v in summary.counts.items() if k != Outcome.OK and v}
    assert summary.total > 20 and not failed, summary
    # `check` on h2 still shows it out of rotation.
    pidfile, state = host_args(hosts, "h2")[:2], str(hosts.state_dir("h2"))
    check = run_cli("check", "--group", "myapp", *pidfile, "--state-dir", state)
    assert check.returncode == 2 and "repair with: wsgi-drain undrain --group myapp" in check.stdout


def test_ansible_refuses_to_take_a_host_out_while_another_is_left_out(
    hosts: Fleet, tmp_path: Path
) -> None:
    # An earlier failed run left h3 out of rotation (its new code failed to load).
    break_new_code(hosts, "h3")
    earlier = run_cli("restart", "--group", "myapp", "--json", *host_args(hosts, "h3"))
    assert earlier.returncode == 6, earlier.stderr
    hosts.hosts["h3"].set_broken(False)
    assert hosts.haproxy.admin_state("h3") == "drain"
    before = _pids(hosts)
    run = playbook(hosts, tmp_path, "-e", "wsgi_drain_peer_wait=2")
    out = run.stdout + run.stderr
    assert run.returncode != 0, out[-3000:]
    assert "h3 (drain)" in out and "wsgi-drain undrain --group myapp" in out, out[-3000:]
    assert "after waiting 2 s (--peer-wait)" in out, out[-3000:]
    assert _pids(hosts) == before, "a host was restarted while h3 was out"
    assert [hosts.haproxy.admin_state(n) for n in ("h1", "h2", "h4")] == ["ready"] * 3


def reports_in(directory: Path) -> dict[str, dict[str, Any]]:
    """The JSON reports the role kept on the controller (wsgi_drain_report_dir), by host."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))}


def assert_one_host_out_at_a_time(reports: dict[str, dict[str, Any]]) -> None:
    """Each host's own report says when it went out and came back: no two spans overlap."""
    spans = sorted(
        (r["out_at"], r["back_at"], name)
        for name, report in reports.items()
        for r in report["routers"]
        if r["out_at"] is not None
    )
    assert len(spans) == len(reports), spans
    for (_, back, first), (went, _, second) in zip(spans, spans[1:]):
        assert back <= went, f"{first} and {second} were out of rotation at once: {spans}"


def test_ansible_two_plays_at_once_never_take_two_hosts_out(hosts: Fleet, tmp_path: Path) -> None:
    # Two deploys started together on halves of the same backend: each play
    # is serial 1, but only the load balancer sees both.
    before = _pids(hosts)
    halves = {"one": "h1,h2", "two": "h3,h4"}
    runs: dict[str, subprocess.CompletedProcess[str]] = {}

    def play(half: str) -> None:
        work = tmp_path / half
        work.mkdir()
        runs[half] = playbook(hosts, work, "--limit", halves[half],
                              "-e", f"wsgi_drain_report_dir={tmp_path / 'reports'}")  # fmt: skip

    (tmp_path / "reports").mkdir()
    load = LoadLoop(hosts.haproxy.url + "/", max_requests=40_000, max_seconds=300)
    load.start()
    try:
        threads = [threading.Thread(target=play, args=(half,)) for half in halves]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=620)
        time.sleep(0.5)
    finally:
        load.stop()
    for half, run in runs.items():
        assert run.returncode == 0, (half, (run.stdout + run.stderr)[-3000:])
    reports = reports_in(tmp_path / "reports")
    assert sorted(reports) == ["h1", "h2", "h3", "h4"]
    assert all(r["verdict"] == "success" for r in reports.values())
    assert_one_host_out_at_a_time(reports)
    after = _pids(hosts)
    assert all(not after[n] & before[n] for n in hosts.hosts), "a host was not restarted"
    summary = load.summary()
    failed = {k: v for k, v in summary.counts.items() if k != Outcome.OK and v}
    assert summary.total > 100 and not failed, summary


def test_ansible_serial_2_still_takes_one_host_out_at_a_time(hosts: Fleet, tmp_path: Path) -> None:
    reports_dir = tmp_path / "reports"
    reports_dir.mkdir()
    load = LoadLoop(hosts.haproxy.url + "/", max_requests=40_000, max_seconds=300)
    load.start()
    try:
        with StateSampler(hosts) as sampler:
            run = playbook(hosts, tmp_path, "-e", "wsgi_drain_serial=2",
                           "-e", f"wsgi_drain_report_dir={reports_dir}")  # fmt: skip
            time.sleep(0.5)
    finally:
        load.stop()
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-3000:]
    # The bound: never more than `serial` out at any sampled moment...
    assert sampler.samples and sampler.most_out <= 2, [c for c in sampler.out_counts() if c[1] > 2]
    # ...and the role's own rule, stricter: out for good one host at a time.
    reports = reports_in(reports_dir)
    assert sorted(reports) == ["h1", "h2", "h3", "h4"]
    assert_one_host_out_at_a_time(reports)
    # Two hosts per batch started together: in each batch one took its turn after the other.
    assert sum(1 for r in reports.values() if r["peer_wait"] > 0 or r["backoffs"]) >= 2, reports
    summary = load.summary()
    failed = {k: v for k, v in summary.counts.items() if k != Outcome.OK and v}
    assert summary.total > 100 and not failed, summary


def test_ansible_check_mode_runs_dry_run_everywhere_and_changes_nothing(
    hosts: Fleet, tmp_path: Path
) -> None:
    before = _pids(hosts)
    run = playbook(hosts, tmp_path, "--check")
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-3000:]
    assert _pids(hosts) == before
    assert out.count("success in") == 4, out[-2000:]
    assert all(hosts.haproxy.admin_state(n) == "ready" for n in hosts.hosts)
    assert "changed=0" in out


def test_ansible_lint_passes_on_the_shipped_playbook_and_role() -> None:
    lint = Path(sys.executable).parent / "ansible-lint"
    if not lint.exists():
        skip_or_fail(f"{lint} not found: pip install -e '.[test]' (ansible-lint)")
    done = subprocess.run(
        [str(lint), "--offline", str(REPO / "ansible")],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1", "NO_COLOR": "1"},
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_ansible_repair_playbook_puts_back_a_host_left_out(hosts: Fleet, tmp_path: Path) -> None:
    # A drain by hand (or a run killed outright) left h4 out of rotation.
    drained = run_cli("drain", "--group", "myapp", *host_args(hosts, "h4"))
    assert drained.returncode == 0, drained.stderr
    assert hosts.haproxy.admin_state("h4") == "drain"
    run = playbook(hosts, tmp_path, book=REPAIR)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-3000:]
    assert all(hosts.haproxy.admin_state(n) == "ready" for n in hosts.hosts)
    assert "changed=1" in out  # h4: its journal was removed; the others had nothing to undo


def test_ansible_installs_wsgi_drain_into_a_virtualenv_idempotently(
    hosts: Fleet, tmp_path: Path, dist: Path
) -> None:
    (wheel,) = dist.glob("wsgi_drain-*.whl")
    place = Path(tempfile.mkdtemp(prefix="wsgi-drain-ansible-opt-", dir="/tmp"))
    try:
        extra = [
            "--tags", "install", "-e", "wsgi_drain_install=true",
            "-e", f"wsgi_drain_package={wheel}", "-e", f"wsgi_drain_venv={place / 'venv'}",
            "-e", f"wsgi_drain_link={place / 'wsgi-drain'}", "--limit", "h1",
        ]  # fmt: skip
        first = playbook(hosts, tmp_path, *extra)
        assert first.returncode == 0, (first.stdout + first.stderr)[-3000:]
        assert "changed=2" in first.stdout
        version = subprocess.run(
            [str(place / "wsgi-drain"), "--version"], capture_output=True, text=True, check=False
        )
        assert version.returncode == 0 and "wsgi-drain" in version.stdout
        again = playbook(hosts, tmp_path, *extra)
        assert again.returncode == 0 and "changed=0" in again.stdout, again.stdout[-3000:]
    finally:
        shutil.rmtree(place, ignore_errors=True)


def test_ansible_router_step_delegated_to_the_load_balancers_host_loses_nothing(
    hosts: Fleet, tmp_path: Path
) -> None:
    """drain/undrain run on the LB's host (here: localhost, its unix admin socket)."""
    before = _pids(hosts)
    server = "be_app/{{ inventory_hostname }}"  # templated by Ansible, per host
    lb = {
        "wsgi_drain_lb_host": "localhost",
        "wsgi_drain_lb_router": f"haproxy:{hosts.haproxy.admin_socket}:{server}",
        "wsgi_drain_lb_args": ["--state-dir", str(tmp_path / "lb-state")],
    }
    load = LoadLoop(hosts.haproxy.url + "/", max_requests=40_000, max_seconds=300)
    load.start()
    try:
        with StateSampler(hosts) as sampler:
            run = playbook(hosts, tmp_path, "-e", json.dumps(lb), router_on_host=False)
            time.sleep(0.5)
    finally:
        load.stop()
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    after = _pids(hosts)
    for name in hosts.hosts:
        assert len(after[name]) == 3 and not after[name] & before[name], name
    # Each host was taken out on the load balancer, one at a time, and put back.
    drained = {n for _t, states in sampler.samples for n, st in states.items() if st == "drain"}
    assert drained == set(hosts.hosts), drained
    assert sampler.most_out <= 1
    assert all(hosts.haproxy.admin_state(n) == "ready" for n in hosts.hosts)
    summary = load.summary()
    failed = {k: v for k, v in summary.counts.items() if k != Outcome.OK and v}
    assert summary.total > 100 and not failed, summary
