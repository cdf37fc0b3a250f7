"""Parallel restarts behind one real HAProxy take turns: never two hosts out.

Two hosts restarted at the same moment (two plays, `serial: 2`, two
operators) both count their peers before either diverts.  With
`--min-peers all --peer-wait` each run counts again after its own divert
and backs off when the other went out too, then waits for its turn
(wsgi_drain/peers.py).  Judged by the runs' own reports: the spans each
host spent out of rotation (`routers[].out_at` .. `back_at`) never overlap,
and a load loop through HAProxy loses nothing.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab import LabUnavailable, LoadLoop, Outcome, skip_or_fail
from lab.fleet import Fleet, fleet, host_args
from tests.integration.conftest import wsgi_drain_command

pytestmark = pytest.mark.integration

TIMEOUTS = {"graceful-timeout": 15, "shutdown-timeout": 5}


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[Fleet]:
    try:
        with fleet(tmp_path, 3, daemon_options=TIMEOUTS) as running:
            yield running
    except LabUnavailable as err:
        skip_or_fail(str(err))


def spans(reports: dict[str, dict[str, Any]]) -> list[tuple[float, float, str]]:
    """(out_at, back_at, host) of every host that went out of rotation, in time order."""
    found = []
    for name, report in reports.items():
        for router in report["routers"]:
            if router["out_at"] is not None:
                assert router["back_at"] is not None, (name, router)
                found.append((router["out_at"], router["back_at"], name))
    return sorted(found)


def assert_one_at_a_time(reports: dict[str, dict[str, Any]], expected: int) -> None:
    """No two spans overlap, and there are `expected` of them: none reported passes nothing."""
    out = spans(reports)
    assert len(out) == expected, f"expected {expected} spans out of rotation, got {out}"
    for (_, back, first), (went, _, second) in zip(out, out[1:]):
        assert back <= went, f"{first} and {second} were out of rotation at once: {out}"


def restart_at_once(hosts: Fleet, name: str) -> subprocess.Popen[str]:
    """`wsgi-drain restart` on host `name`, fleet-safe, started without waiting for it."""
    return subprocess.Popen(
        [*wsgi_drain_command(), "restart", "--group", "myapp", "--json", "--quiet",
         "--min-peers", "all", "--peer-wait", "60", "--if-few-peers", "refuse",
         *host_args(hosts, name)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_two_restarts_at_once_with_min_peers_all_take_turns_losing_nothing(
    hosts: Fleet,
) -> None:
    before = {n: set(lab.daemon_pids()) for n, lab in hosts.hosts.items()}
    load = LoadLoop(hosts.haproxy.url + "/", max_requests=20_000, max_seconds=180)
    load.start()
    try:
        time.sleep(0.5)
        runs = {name: restart_at_once(hosts, name) for name in ("h1", "h2")}
        results = {name: run.communicate(timeout=170) for name, run in runs.items()}
        time.sleep(0.5)
    finally:
        load.stop()
    for name, run in runs.items():
        assert run.returncode == 0, (name, results[name])
    reports = {name: json.loads(out) for name, (out, _err) in results.items()}
    # Every host restarted (exit 0), so each went out of rotation once.
    assert_one_at_a_time(reports, expected=len(reports))
    # They started together and a restart takes seconds: one of them had to
    # wait for the other (counted before diverting) or back off (after).
    assert any(r["peer_wait"] > 0 or r["backoffs"] for r in reports.values()), reports
    for name in ("h1", "h2"):
        assert not set(hosts.hosts[name].daemon_pids()) & before[name], name
    assert set(hosts.hosts["h3"].daemon_pids()) == before["h3"]
    assert all(hosts.haproxy.admin_state(n) == "ready" for n in hosts.hosts)
    summary = load.summary()
    failed = {k: v for k, v in summary.counts.items() if k != Outcome.OK and v}
    assert summary.total > 50 and not failed, summary


def drain_by_hand(hosts: Fleet, name: str) -> None:
    """An operator's `wsgi-drain drain` of host `name` (it stays out until undrained)."""
    drain = subprocess.run(
        [*wsgi_drain_command(), "drain", "--group", "myapp", "--router", hosts.router(name),
         "--state-dir", str(hosts.state_dir(name)), "--drain-timeout", "2"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert drain.returncode == 0, drain.stderr


def test_min_peers_all_refuses_while_another_host_is_out_and_names_it(hosts: Fleet) -> None:
    # An operator's drain of h3 (or a failed run's) holds; h1 must not go out too.
    drain_by_hand(hosts, "h3")
    before = set(hosts.hosts["h1"].daemon_pids())
    run = subprocess.run(
        [*wsgi_drain_command(), "restart", "--group", "myapp", "--json", "--quiet",
         "--min-peers", "all", "--peer-wait", "2", "--if-few-peers", "refuse",
         *host_args(hosts, "h1")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 4, run.stderr
    report = json.loads(run.stdout)
    assert "h3 (drain)" in report["message"] and "--min-peers all" in report["message"], report
    assert "after waiting 2 s (--peer-wait)" in report["message"], report
    assert report["peer_wait"] >= 1.5, report
    assert set(hosts.hosts["h1"].daemon_pids()) == before
    assert hosts.haproxy.admin_state("h1") == "ready"
    assert hosts.haproxy.admin_state("h3") == "drain"


def test_drain_at_once_on_two_hosts_takes_turns(hosts: Fleet) -> None:
    def drain(name: str, wait: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*wsgi_drain_command(), "drain", "--group", "myapp", "--json",
             "--router", hosts.router(name), "--state-dir", str(hosts.state_dir(name)),
             "--min-peers", "all", "--peer-wait", wait, "--drain-timeout", "2"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    first, second = drain("h1", "30"), drain("h2", "30")
    # Whichever won its turn is drained; the other waits for it to come back.
    limit = time.monotonic() + 60
    while first.poll() is None and second.poll() is None and time.monotonic() < limit:
        time.sleep(0.1)
    done, waiting = (first, second) if first.poll() is not None else (second, first)
    winner = "h1" if done is first else "h2"
    other = "h2" if winner == "h1" else "h1"
    said = done.communicate(timeout=30)
    assert done.returncode == 0, said
    time.sleep(1.0)
    assert waiting.poll() is None, waiting.communicate(timeout=30)
    assert hosts.haproxy.admin_state(winner) == "drain"
    assert hosts.haproxy.admin_state(other) == "ready"
    undrain = subprocess.run(
        [*wsgi_drain_command(), "undrain", "--group", "myapp", "--router",
         hosts.router(winner), "--state-dir", str(hosts.state_dir(winner))],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert undrain.returncode == 0, undrain.stderr
    _out, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, err
    assert hosts.haproxy.admin_state(other) == "drain"
    assert hosts.haproxy.admin_state(winner) == "ready"


def test_peer_wait_then_if_few_peers_rolling_restarts_in_place_without_diverting(
    hosts: Fleet,
) -> None:
    drain_by_hand(hosts, "h3")
    before = set(hosts.hosts["h1"].daemon_pids())
    run = subprocess.run(
        [*wsgi_drain_command(), "restart", "--group", "myapp", "--json", "--quiet",
         "--min-peers", "all", "--peer-wait", "1", *host_args(hosts, "h1")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["mode"] == "rolling" and report["peer_wait"] >= 0.5, report
    assert any("restarting in place" in w for w in report["warnings"]), report["warnings"]
    assert report["routers"][0]["out_at"] is None and not report["routers"][0]["diverted"]
    assert not set(hosts.hosts["h1"].daemon_pids()) & before
    assert hosts.haproxy.admin_state("h1") == "ready"
