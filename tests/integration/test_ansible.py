"""A fleet rollout through Ansible: one host at a time, stop at the first bad one.

The wsgi_drain.apache collection is built with `ansible-galaxy collection
build` and installed from its tarball into a temporary collections path; the
real `ansible-playbook` runs its rolling_restart playbook against an
inventory of four hosts that are four Apache + mod_wsgi instances on loopback
(connection local, each host's own pid file, state directory and HAProxy
server in its host vars, as the role's typed options) behind one HAProxy,
reached over its TCP runtime API as a central load balancer would be.  While
it runs: continuous load through HAProxy, a 4 s request held on every host
(so one is in flight when the host's turn comes), and a 50 ms sampler of
HAProxy's view of the servers.
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
from lab.fleet import (
    Collection,
    Fleet,
    StateSampler,
    ansible_env,
    ansible_tool,
    build_collection,
    fleet,
    host_args,
    run_playbook,
)
from lab.stack import wsgi_drain_command
from tests.integration.conftest import run_cli

# One worker runs the whole module: its module- or session-wide fixture is built once.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("test_ansible")]

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "ansible" / "collections" / "ansible_collections" / "wsgi_drain" / "apache"
PLAYBOOK = "wsgi_drain.apache.rolling_restart"
REPAIR = "wsgi_drain.apache.repair"
ROLE = "wsgi_drain.apache.wsgi_drain"
LEGACY_PLAYBOOK = REPO / "ansible" / "rolling-restart.yml"
TIMEOUTS = {"graceful-timeout": 15, "shutdown-timeout": 5}
LONG = 4.0


@pytest.fixture(scope="module")
def collection() -> Iterator[Collection]:
    """The collection as users get it: built, and installed from the tarball."""
    work = Path(tempfile.mkdtemp(prefix="wsgi-drain-collection-", dir="/tmp"))
    try:
        yield build_collection(SOURCE, work)
    except LabUnavailable as err:
        skip_or_fail(str(err))
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[Fleet]:
    try:
        with fleet(tmp_path, 4, daemon_options=TIMEOUTS) as running:
            yield running
    except LabUnavailable as err:
        skip_or_fail(str(err))


def playbook(
    f: Fleet,
    tmp: Path,
    collection: Collection | None,
    *extra: str,
    book: Path | str = PLAYBOOK,
    **options: Any,
) -> subprocess.CompletedProcess[str]:
    """`book` on the fleet, with the installed `collection` (None: the repository's, adjacent)."""
    path = None if collection is None else collection.path
    try:
        return run_playbook(
            f, tmp, book, wsgi_drain_command()[0], *extra, collections=path, **options
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
    hosts: Fleet, tmp_path: Path, collection: Collection
) -> None:
    before = _pids(hosts)
    load = LoadLoop(hosts.haproxy.url + "/", max_requests=40_000, max_seconds=300)
    load.start()
    try:
        with StateSampler(hosts) as sampler, LongRequests(hosts) as longs:
            time.sleep(1.0)
            run = playbook(hosts, tmp_path, collection)
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
    hosts: Fleet, tmp_path: Path, collection: Collection
) -> None:
    break_new_code(hosts, "h2")
    before = _pids(hosts)
    load = LoadLoop(hosts.haproxy.url + "/", max_requests=40_000, max_seconds=300)
    load.start()
    try:
        run = playbook(hosts, tmp_path, collection)
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


def test_ansible_rollback_puts_the_broken_host_back_on_the_old_code_and_stops_the_play(
    hosts: Fleet, tmp_path: Path, collection: Collection
) -> None:
    break_new_code(hosts, "h2")
    before = _pids(hosts)
    back = ["/bin/rm", "-f", str(hosts.hosts["h2"].app_dir / "broken")]
    load = LoadLoop(hosts.haproxy.url + "/", max_requests=40_000, max_seconds=300)
    load.start()
    try:
        run = playbook(hosts, tmp_path, collection, overrides={"h2": {"wsgi_drain_rollback": back}})
        time.sleep(0.5)
    finally:
        load.stop()
    out = run.stdout + run.stderr
    # Exit 8 is not success: the play stops at h2, saying it rolled back.
    assert run.returncode != 0, out[-3000:]
    assert "h2: rolled back" in out and "exit 8" in out, out[-3000:]
    after = _pids(hosts)
    assert after["h3"] == before["h3"] and after["h4"] == before["h4"], "the play went on"
    assert hosts.haproxy.admin_state("h2") == "ready"
    summary = load.summary()
    failed = {k: v for k, v in summary.counts.items() if k != Outcome.OK and v}
    assert summary.total > 20 and not failed, summary


def test_ansible_refuses_to_take_a_host_out_while_another_is_left_out(
    hosts: Fleet, tmp_path: Path, collection: Collection
) -> None:
    # An earlier failed run left h3 out of rotation (its new code failed to load).
    break_new_code(hosts, "h3")
    earlier = run_cli("restart", "--group", "myapp", "--json", *host_args(hosts, "h3"))
    assert earlier.returncode == 6, earlier.stderr
    hosts.hosts["h3"].set_broken(False)
    assert hosts.haproxy.admin_state("h3") == "drain"
    before = _pids(hosts)
    run = playbook(hosts, tmp_path, collection, "-e", "wsgi_drain_peer_wait=2")
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


def test_ansible_two_plays_at_once_never_take_two_hosts_out(
    hosts: Fleet, tmp_path: Path, collection: Collection
) -> None:
    # Two deploys started together on halves of the same backend: each play
    # is serial 1, but only the load balancer sees both.
    before = _pids(hosts)
    halves = {"one": "h1,h2", "two": "h3,h4"}
    runs: dict[str, subprocess.CompletedProcess[str]] = {}

    def play(half: str) -> None:
        work = tmp_path / half
        work.mkdir()
        runs[half] = playbook(hosts, work, collection, "--limit", halves[half],
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


def test_ansible_serial_2_still_takes_one_host_out_at_a_time(
    hosts: Fleet, tmp_path: Path, collection: Collection
) -> None:
    reports_dir = tmp_path / "reports"
    reports_dir.mkdir()
    load = LoadLoop(hosts.haproxy.url + "/", max_requests=40_000, max_seconds=300)
    load.start()
    try:
        with StateSampler(hosts) as sampler:
            run = playbook(hosts, tmp_path, collection, "-e", "wsgi_drain_serial=2",
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


def test_ansible_collection_check_mode_says_dry_run_with_the_plan_and_changes_nothing(
    hosts: Fleet, tmp_path: Path, collection: Collection
) -> None:
    before = _pids(hosts)
    run = playbook(hosts, tmp_path, collection, "--check")
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-3000:]
    assert _pids(hosts) == before
    for name in hosts.hosts:
        assert f"{name}: dry run: would restart group myapp in drain mode, plan: " in out, out[
            -3000:
        ]
    assert "success in" not in out, out[-3000:]  # a dry run is not reported as done
    assert "plan: divert" in out or "plan: take" in out or "send SIGUSR1" in out, out[-3000:]
    assert all(hosts.haproxy.admin_state(n) == "ready" for n in hosts.hosts)
    assert "changed=0" in out


def test_ansible_collection_legacy_paths_still_run_with_the_free_form_args(
    hosts: Fleet, tmp_path: Path
) -> None:
    """ansible/rolling-restart.yml (its collection found beside it, nothing installed) and
    wsgi_drain_args, the escape hatch, as existing users' inventories have them."""
    before = _pids(hosts)
    run = playbook(hosts, tmp_path, None, "--check", book=LEGACY_PLAYBOOK, typed=False)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-3000:]
    assert _pids(hosts) == before
    for name in hosts.hosts:
        assert f"{name}: dry run: would restart group myapp" in out, out[-3000:]
    assert "be_app/h1" in out, out[-3000:]  # the router came from wsgi_drain_args


def test_ansible_collection_lint_production_profile_passes_on_everything_shipped() -> None:
    lint = Path(sys.executable).parent / "ansible-lint"
    if not lint.exists():
        skip_or_fail(f"{lint} not found: pip install -e '.[test]' (ansible-lint)")
    config = REPO / "ansible" / ".ansible-lint"
    assert "profile: production" in config.read_text()
    done = subprocess.run(
        [str(lint), "-c", str(config), str(REPO / "ansible")],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={
            **os.environ,
            "ANSIBLE_NOCOLOR": "1",
            "NO_COLOR": "1",
            "ANSIBLE_COLLECTIONS_PATH": str(REPO / "ansible" / "collections"),
        },
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_collection_builds_installs_from_its_tarball_and_ansible_doc_shows_its_options(
    collection: Collection, tmp_path: Path
) -> None:
    manifest = collection.path / "ansible_collections" / "wsgi_drain" / "apache" / "MANIFEST.json"
    info = json.loads(manifest.read_text())["collection_info"]
    assert (info["namespace"], info["name"]) == ("wsgi_drain", "apache")
    assert collection.tarball.name == f"wsgi_drain-apache-{info['version']}.tar.gz"
    try:
        doc = ansible_tool("ansible-doc")
    except LabUnavailable as err:
        skip_or_fail(str(err))
    shown = subprocess.run(
        [str(doc), "-t", "role", ROLE],
        capture_output=True, text=True, timeout=120, check=False,
        env=ansible_env(tmp_path / "home", collection.path),
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr[-2000:]
    for option in ("wsgi_drain_group", "wsgi_drain_routers", "wsgi_drain_apache_pidfile",
                   "wsgi_drain_health_url", "wsgi_drain_min_peers", "wsgi_drain_peer_wait",
                   "wsgi_drain_mode", "wsgi_drain_args", "wsgi_drain_wheel"):  # fmt: skip
        assert option in shown.stdout, (option, shown.stdout[-3000:])
    assert "ENTRY POINT: *main*" in shown.stdout and "ENTRY POINT: *validate*" in shown.stdout
    assert "choices: [haproxy, nginx, health-file, command]" in shown.stdout, shown.stdout[-3000:]


def _untouched(hosts: Fleet, before: dict[str, set[int]]) -> None:
    assert _pids(hosts) == before, "a host was restarted"
    assert all(hosts.haproxy.admin_state(n) == "ready" for n in hosts.hosts)
    assert not any(hosts.state_dir(n).exists() for n in hosts.hosts), "wsgi-drain ran on a host"


def test_collection_wrong_or_missing_options_fail_before_any_host_is_touched(
    hosts: Fleet, tmp_path: Path, collection: Collection
) -> None:
    before = _pids(hosts)
    # The last host's peer wait is not a number: h1..h3 must not be restarted first.
    typo = playbook(hosts, tmp_path, collection, overrides={"h4": {"wsgi_drain_peer_wait": "soon"}})
    out = typo.stdout + typo.stderr
    assert typo.returncode != 0, out[-3000:]
    assert "wsgi_drain_peer_wait" in out and "float" in out, out[-3000:]
    _untouched(hosts, before)
    # No group at all.
    bare = playbook(hosts, tmp_path, collection, group=None)
    out = bare.stdout + bare.stderr
    assert bare.returncode != 0 and "missing required arguments: wsgi_drain_group" in out, out[
        -3000:
    ]
    _untouched(hosts, before)
    # A router of an unknown kind, and an haproxy router without its backend.
    socket = f"ipv4@{hosts.haproxy.admin_address}"
    odd = {"h3": {"wsgi_drain_routers": [{"kind": "f5", "server": "h3"}]}}
    kind = playbook(hosts, tmp_path, collection, overrides=odd)
    out = kind.stdout + kind.stderr
    assert kind.returncode != 0 and "kind" in out and "f5" in out, out[-3000:]
    _untouched(hosts, before)
    half = {"h3": {"wsgi_drain_routers": [{"kind": "haproxy", "socket": socket, "server": "h3"}]}}
    short = playbook(hosts, tmp_path, collection, overrides=half)
    out = short.stdout + short.stderr
    assert short.returncode != 0, out[-3000:]
    assert "wsgi_drain_routers[0] (kind haproxy) needs socket, backend, server" in out, out[-3000:]
    _untouched(hosts, before)


def test_ansible_repair_playbook_puts_back_a_host_left_out(
    hosts: Fleet, tmp_path: Path, collection: Collection
) -> None:
    # A drain by hand (or a run killed outright) left h4 out of rotation.
    drained = run_cli("drain", "--group", "myapp", *host_args(hosts, "h4"))
    assert drained.returncode == 0, drained.stderr
    assert hosts.haproxy.admin_state("h4") == "drain"
    run = playbook(hosts, tmp_path, collection, book=REPAIR)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-3000:]
    assert all(hosts.haproxy.admin_state(n) == "ready" for n in hosts.hosts)
    assert "changed=1" in out  # h4: its journal was removed; the others had nothing to undo


def test_ansible_repair_playbook_undrains_the_load_balancers_journal_in_delegated_mode(
    hosts: Fleet, tmp_path: Path, collection: Collection
) -> None:
    # An interrupted delegated rollout left h2 drained on the load balancer's host.
    lb_state = tmp_path / "lb-state"
    router = f"haproxy:{hosts.haproxy.admin_socket}:be_app/h2"
    drained = run_cli("drain", "--group", "myapp", "--router", router, "--state-dir", str(lb_state))
    assert drained.returncode == 0, drained.stderr
    assert hosts.haproxy.admin_state("h2") == "drain"
    lb = {
        "wsgi_drain_lb_host": "localhost",
        "wsgi_drain_lb_router": router.replace("/h2", "/{{ inventory_hostname }}"),
        "wsgi_drain_lb_args": ["--state-dir", str(lb_state)],
    }
    run = playbook(hosts, tmp_path, collection, "-e", json.dumps(lb), book=REPAIR,
                   router_on_host=False)  # fmt: skip
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-3000:]
    assert all(hosts.haproxy.admin_state(n) == "ready" for n in hosts.hosts), out[-3000:]
    assert "changed=1" in out  # h2's journal on the load balancer's host was removed


def _install(
    hosts: Fleet, tmp_path: Path, collection: Collection, place: Path, *source: str
) -> subprocess.CompletedProcess[str]:
    extra = [
        "--tags", "install", "-e", "wsgi_drain_install=true", *source,
        "-e", f"wsgi_drain_venv={place / 'venv'}",
        "-e", f"wsgi_drain_link={place / 'wsgi-drain'}", "--limit", "h1",
    ]  # fmt: skip
    return playbook(hosts, tmp_path, collection, *extra)


def test_collection_installs_from_a_copied_wheel_idempotently_and_refuses_without_a_source(
    hosts: Fleet, tmp_path: Path, collection: Collection, dist: Path
) -> None:
    (wheel,) = dist.glob("wsgi_drain-*.whl")
    version = wheel.name.split("-")[1]
    controller = tmp_path / "controller"
    controller.mkdir()
    shutil.copy(wheel, controller)  # the wheel sits on the controller; the role copies it over
    place = Path(tempfile.mkdtemp(prefix="wsgi-drain-ansible-opt-", dir="/tmp"))
    try:
        # No wheel and no source named: refused, nothing installed.
        refused = _install(hosts, tmp_path, collection, place)
        out = refused.stdout + refused.stderr
        assert refused.returncode != 0, out[-3000:]
        assert "set wsgi_drain_wheel" in out and "public package index" in out, out[-3000:]
        assert not (place / "venv").exists()
        source = ("-e", f"wsgi_drain_wheel={controller / wheel.name}")
        first = _install(hosts, tmp_path, collection, place, *source)
        assert first.returncode == 0, (first.stdout + first.stderr)[-3000:]
        assert "changed=4" in first.stdout, first.stdout[-3000:]  # dir, copy, pip, link
        assert (place / "venv-wheels" / wheel.name).read_bytes() == wheel.read_bytes()
        done = subprocess.run(
            [str(place / "wsgi-drain"), "--version"], capture_output=True, text=True, check=False
        )
        assert done.returncode == 0 and done.stdout.split()[-1] == version, done
        again = _install(hosts, tmp_path, collection, place, *source)
        assert again.returncode == 0 and "changed=0" in again.stdout, again.stdout[-3000:]
        # A version the wheel does not hold: the version check says so.
        wrong = _install(
            hosts, tmp_path, collection, place, *source, "-e", "wsgi_drain_version=9.9"
        )
        out = wrong.stdout + wrong.stderr
        assert wrong.returncode != 0 and f'says "wsgi-drain, version {version}", not 9.9' in out, (
            out[-3000:]
        )
    finally:
        shutil.rmtree(place, ignore_errors=True)


def test_ansible_router_step_delegated_to_the_load_balancers_host_loses_nothing(
    hosts: Fleet, tmp_path: Path, collection: Collection
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
            run = playbook(hosts, tmp_path, collection, "-e", json.dumps(lb), router_on_host=False)
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


def test_ansible_delegated_mode_refuses_two_hosts_per_batch_before_touching_any(
    hosts: Fleet, tmp_path: Path, collection: Collection
) -> None:
    """With the router step on the LB's host, serial 2 would deadlock the batch (issue 16).

    The second host's drain would wait for the first host's undrain, a later task of the
    same batch: the role refuses such a batch before anything is drained or signalled.
    """
    before = _pids(hosts)
    lb = {
        "wsgi_drain_lb_host": "localhost",
        "wsgi_drain_lb_router": f"haproxy:{hosts.haproxy.admin_socket}:"
        "be_app/{{ inventory_hostname }}",
        "wsgi_drain_lb_args": ["--state-dir", str(tmp_path / "lb-state")],
        "wsgi_drain_serial": 2,
    }
    run = playbook(hosts, tmp_path, collection, "-e", json.dumps(lb), router_on_host=False)
    out = run.stdout + run.stderr
    assert run.returncode != 0, out[-4000:]
    assert "one host per batch" in out and "serial 1" in out, out[-4000:]
    assert _pids(hosts) == before
    assert all(hosts.haproxy.admin_state(n) == "ready" for n in hosts.hosts)
    assert not (tmp_path / "lb-state").exists() or not any((tmp_path / "lb-state").iterdir())


def test_ansible_repair_playbook_leaves_an_operators_nginx_down_and_repairs_ours(
    hosts: Fleet, tmp_path: Path, collection: Collection
) -> None:
    """Issue 16: nginx has no MAINT; repair.yml puts back only wsgi-drain's own `down`."""
    from lab.nginx import NginxLab

    nginx = NginxLab(tmp_path / "nginx", [(n, "127.0.0.1", h.port) for n, h in hosts.hosts.items()])
    try:
        nginx.start()
    except LabUnavailable as err:
        skip_or_fail(str(err))
    try:

        def router(name: str) -> dict[str, object]:
            return {"kind": "nginx", "pid_file": str(nginx.pid_file),
                    "upstream_file": str(nginx.upstream_file),
                    "server": nginx.server_address(name)}  # fmt: skip

        # The operator took h3 out by hand (an unmarked `down`); a drain of ours left h2 out.
        h3 = nginx.server_address("h3")
        text = nginx.upstream_file.read_text().replace(f"server {h3} ", f"server {h3} down ")
        nginx.upstream_file.write_text(text)
        spec = f"nginx:pid={nginx.pid_file}:{nginx.upstream_file}:{nginx.server_address('h2')}"
        drained = run_cli("drain", "--group", "myapp", "--router", spec, "--min-peers", "0",
                          *host_args(hosts, "h2", router=False))  # fmt: skip
        assert drained.returncode == 0, drained.stderr
        assert "wsgi-drain" in next(
            x for x in nginx.upstream_file.read_text().splitlines() if "h2" in x
        )
        overrides = {n: {"wsgi_drain_routers": [router(n)]} for n in hosts.hosts}
        run = playbook(hosts, tmp_path, collection, book=REPAIR, router_on_host=False,
                       overrides=overrides)  # fmt: skip
        out = run.stdout + run.stderr
        assert run.returncode == 0, out[-3000:]
        lines = {n: next(x for x in nginx.upstream_file.read_text().splitlines()
                         if f"# host {n}" in x) for n in hosts.hosts}  # fmt: skip
        assert f"server {h3} down " in lines["h3"], lines
        assert all(" down" not in line for n, line in lines.items() if n != "h3"), lines
    finally:
        nginx.stop()
