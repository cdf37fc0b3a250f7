"""Several groups of one host in one run (`restart --group A --group B`, `--all-groups`).

Two groups (myapp at /, admin at /admin/) on each of two Apaches behind one
HAProxy; load through HAProxy on both groups' paths and a 4 s request in
flight on host a when the command starts.  HAProxy's state of server a is
sampled every 50 ms during the run, as the fleet tests do: one run must take
the host out of rotation exactly once.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import psutil
import pytest

from lab import LabUnavailable, LoadLoop, ModWsgi, Outcome, Stack, skip_or_fail, slow_request
from lab.fleet import Fleet, StateSampler
from lab.stack import two_hosts
from tests.integration.conftest import run_cli, wsgi_drain_command
from wsgi_drain.state import Journal

pytestmark = pytest.mark.integration

GROUPS = ("myapp", "admin")


@pytest.fixture
def two_groups(tmp_path: Path, modwsgi: ModWsgi) -> Iterator[Stack]:
    with ExitStack() as stop:
        try:
            running = stop.enter_context(two_hosts(tmp_path, modwsgi, extra_groups=("admin",)))
        except LabUnavailable as err:
            skip_or_fail(str(err))
        yield running


def host_args(stack: Stack, *extra: str) -> list[str]:
    """`restart` of host a (no --group: the caller names them), each group's health URL."""
    return [
        "restart", "--apache-pidfile", str(stack.a.pid_file),
        "--haproxy", f"{stack.haproxy.admin_socket}:be_app/a",
        "--state-dir", str(stack.state_dir),
        "--health-url", f"myapp={stack.a.url}/health",
        "--health-url", f"admin={stack.a.url}/admin/health",
        *extra,
    ]  # fmt: skip


def out_spans(sampler: StateSampler, name: str) -> int:
    """How many separate times server `name` was out of rotation (not "ready") in the samples."""
    spans, out = 0, False
    for _t, states in sampler.samples:
        now_out = states[name] != "ready"
        spans += now_out and not out
        out = now_out
    return spans


def restart_under_load(stack: Stack, *groups: str) -> None:
    """Restart host a's groups under load on both paths; prove one divert and nothing lost."""
    old = {g: set(stack.a.group_pids(g)) for g in GROUPS}
    loads = [
        LoadLoop(stack.haproxy.url + path, max_requests=3000, max_seconds=40)
        for path in ("/", "/admin/")
    ]
    for load in loads:
        load.start()
    with StateSampler(Fleet({"a": stack.a, "b": stack.b}, stack.haproxy, stack.state_dir)) as s:
        try:
            time.sleep(0.5)
            # Pinned to `a` by the lab's HAProxy: in flight there when the command starts.
            slow = slow_request(stack.haproxy.url + "/slow?s=4", 4)
            time.sleep(0.5)
            run = run_cli(*host_args(stack, *groups, "--json"))
            time.sleep(0.5)
        finally:
            for load in loads:
                load.stop()
    assert run.returncode == 0, run.stdout + run.stderr
    report = run.json()
    assert report["schema"] == "wsgi-drain/restart/v2"
    assert report["verdict"] == "success" and report["mode"] == "drain"
    assert [g["group"] for g in report["groups"]] == list(GROUPS)
    assert all(g["verdict"] == "success" for g in report["groups"])
    assert [g["health"]["status"] for g in report["groups"]] == [200, 200]
    assert [(r["diverted"], r["restored"]) for r in report["routers"]] == [(True, True)]
    assert [p["name"] for p in report["phases"]].count("divert") == 1
    assert slow.result(timeout=30).status == 200
    for load in loads:
        summary = load.summary()
        failed = {k: v for k, v in summary.counts.items() if k != Outcome.OK and v}
        assert summary.total > 50, f"{load.url}: too little load to mean anything: {summary}"
        assert not failed, f"{load.url}: failed requests: {failed} of {summary.total}"
    for group in GROUPS:
        new = set(stack.a.group_pids(group))
        assert len(new) == 3 and not new & old[group], (group, old[group], new)
        (section,) = [g for g in report["groups"] if g["group"] == group]
        assert {p["old_pid"] for p in section["processes"]} == old[group]
        assert set(section["new_pids"]) == new
    assert s.samples and out_spans(s, "a") == 1, s.out_counts()
    assert out_spans(s, "b") == 0
    assert stack.haproxy.server_states()["a"].status.startswith("UP")
    assert not any(Journal.path_for(stack.state_dir, g).exists() for g in GROUPS)


def test_several_groups_restart_in_one_divert_under_load_loses_nothing(two_groups: Stack) -> None:
    restart_under_load(two_groups, "--group", "myapp", "--group", "admin")


def test_all_groups_restart_in_one_divert_under_load_loses_nothing(two_groups: Stack) -> None:
    restart_under_load(two_groups, "--all-groups")


def test_several_groups_killed_run_is_repaired_by_one_undrain(two_groups: Stack) -> None:
    stack = two_groups
    # The run waits in its divert for this request: killed there, the host is out.
    slow = slow_request(stack.haproxy.url + "/slow?s=4", 4)
    time.sleep(0.5)
    run = subprocess.Popen(
        [*wsgi_drain_command(), *host_args(stack, "--group", "myapp", "--group", "admin")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while stack.haproxy.admin_state("a") != "drain":
            assert time.monotonic() < deadline, "the run never diverted"
            time.sleep(0.05)
        run.send_signal(signal.SIGKILL)
        run.wait(10)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    journals = [Journal.load(stack.state_dir, g) for g in GROUPS]
    assert all(j is not None and j.groups == list(GROUPS) for j in journals), journals
    status = run_cli("status", "--state-dir", str(stack.state_dir))
    assert "a run of groups myapp, admin" in status.stdout, status.stdout
    check = run_cli(
        "check", "--group", "admin", "--apache-pidfile", str(stack.a.pid_file),
        "--state-dir", str(stack.state_dir),
    )  # fmt: skip
    assert check.returncode == 2 and "groups myapp, admin" in check.stdout, check.stdout

    router = ["--haproxy", f"{stack.haproxy.admin_socket}:be_app/a"]
    first = run_cli("undrain", "--group", "admin", *router, "--state-dir", str(stack.state_dir))
    assert first.returncode == 0, first.stderr
    assert stack.haproxy.admin_state("a") == "ready"
    assert not any(Journal.path_for(stack.state_dir, g).exists() for g in GROUPS)
    second = run_cli("undrain", "--group", "myapp", *router, "--state-dir", str(stack.state_dir))
    assert second.returncode == 0, second.stderr
    assert "ready (already)" in second.stdout + second.stderr
    assert slow.result(timeout=30).status == 200


def test_several_groups_one_unhealthy_group_keeps_the_host_out(two_groups: Stack) -> None:
    stack = two_groups
    # admin's health URL answers 404: that group is not proven healthy.
    run = run_cli(
        "restart", "--group", "myapp", "--group", "admin",
        "--apache-pidfile", str(stack.a.pid_file),
        "--haproxy", f"{stack.haproxy.admin_socket}:be_app/a",
        "--state-dir", str(stack.state_dir),
        "--health-url", f"myapp={stack.a.url}/health",
        "--health-url", f"admin={stack.a.url}/admin/no-such-page", "--json",
    )  # fmt: skip
    assert run.returncode == 6, run.stdout + run.stderr
    report = run.json()
    assert report["failed_groups"] == ["admin"] and report["left_diverted"] is True
    assert [g["verdict"] for g in report["groups"]] == ["success", "unhealthy"]
    assert stack.haproxy.admin_state("a") == "drain"
    kept = [Journal.load(stack.state_dir, g) for g in GROUPS]
    assert all(j is not None and j.phase == "left-diverted" for j in kept), kept
    assert kept[0] is not None and "admin" in kept[0].note


def test_several_groups_bench_compares_one_run_with_two(tmp_path: Path) -> None:
    """bench/several_groups.py cannot rot: both methods measured, counted, and consistent."""
    from bench import several_groups

    try:
        path = several_groups.run("debian", reps=1, out_dir=tmp_path)
    except LabUnavailable as err:
        skip_or_fail(str(err))
    data = json.loads(path.read_text())["several_groups"]
    assert [t["method"] for t in data["trials"]] == ["one run", "two runs"]
    for t in data["trials"]:
        assert t["requests"] > 50 and t["replaced"] and t["exit_statuses"], t
        assert t["slow_status"] is not None
    one, two = data["trials"]
    assert len(one["exit_statuses"]) == 1 and len(two["exit_statuses"]) == 2
    assert one["out_spans"] >= 1 and two["out_spans"] >= 1
    assert "| one run |" in several_groups.tables({"several_groups": data})


def test_several_groups_interrupted_before_the_signal_restores_the_host_once(
    two_groups: Stack,
) -> None:
    stack = two_groups
    old = {g: set(stack.a.group_pids(g)) for g in GROUPS}
    # The run waits in its divert for this request: SIGINT arrives there.
    slow = slow_request(stack.haproxy.url + "/slow?s=4", 4)
    time.sleep(0.5)
    run = subprocess.Popen(
        [*wsgi_drain_command(), *host_args(stack, "--all-groups", "--json")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while stack.haproxy.admin_state("a") != "drain":
            assert time.monotonic() < deadline, "the run never diverted"
            time.sleep(0.05)
        run.send_signal(signal.SIGINT)
        out, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 130, out + err
    report = json.loads(out)
    assert report["verdict"] == "interrupted"
    assert [g["signalled"] for g in report["groups"]] == [False, False]
    assert [(r["diverted"], r["restored"]) for r in report["routers"]] == [(True, True)]
    assert stack.haproxy.admin_state("a") == "ready"
    assert {g: set(stack.a.group_pids(g)) for g in GROUPS} == old
    assert not any(Journal.path_for(stack.state_dir, g).exists() for g in GROUPS)
    assert slow.result(timeout=30).status == 200


def test_several_groups_dry_run_shows_the_whole_plan_and_changes_nothing(
    two_groups: Stack,
) -> None:
    stack = two_groups
    old = {g: set(stack.a.group_pids(g)) for g in GROUPS}
    run = run_cli(*host_args(stack, "--all-groups", "--dry-run", "--json"))
    assert run.returncode == 0, run.stdout + run.stderr
    report = run.json()
    assert report["dry_run"] is True
    assert any(
        "divert" in line and "once for groups myapp, admin" in line for line in report["plan"]
    )
    assert any(line.startswith("restore") for line in report["plan"])
    for section in report["groups"]:
        pids = " ".join(map(str, sorted(old[section["group"]])))
        assert any(pids in line for line in section["plan"]), section["plan"]
        assert any("probe" in line for line in section["plan"])
    assert {g: set(stack.a.group_pids(g)) for g in GROUPS} == old
    assert stack.haproxy.admin_state("a") == "ready"


def test_several_groups_rolling_restarts_the_groups_one_after_the_other(
    two_groups: Stack,
) -> None:
    stack = two_groups
    old = {g: set(stack.a.group_pids(g)) for g in GROUPS}
    # Straight at Apache: no router hides a failure.
    loads = [
        LoadLoop(stack.a.url + path, max_requests=3000, max_seconds=40, clients=2)
        for path in ("/", "/admin/")
    ]
    for load in loads:
        load.start()
    try:
        time.sleep(0.5)
        run = run_cli(*host_args(stack, "--all-groups", "--mode", "rolling", "--json"))
    finally:
        for load in loads:
            load.stop()
    assert run.returncode == 0, run.stdout + run.stderr
    report = run.json()
    assert report["mode"] == "rolling"
    assert [(r["diverted"], r["restored"]) for r in report["routers"]] == [(False, False)]
    for load in loads:
        summary = load.summary()
        assert summary.total > 50 and summary.failures == 0, summary
    started = {}
    for group in GROUPS:
        new = set(stack.a.group_pids(group))
        assert len(new) == 3 and not new & old[group]
        started[group] = sorted(psutil.Process(pid).create_time() for pid in new)
    # One after the other: every new myapp process was up before admin's first
    # was signalled (after myapp's verify), so before admin's first replacement.
    assert started["myapp"][-1] < started["admin"][0], started
    assert [g["verdict"] for g in report["groups"]] == ["success", "success"]
