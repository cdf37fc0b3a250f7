"""Restart under real load: a saturated group, requests longer than the drain window.

Each test asserts the promise (no failed request; the long request gets its
200 where it can be saved, and the plan says so where it cannot), never a
speed: bench/load_cases.py measures the times side by side with the raw
methods.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import LabUnavailable, LoadLoop, Outcome, Stack, skip_or_fail, slow_request, two_hosts
from tests.integration.conftest import restart_args, run_cli

pytestmark = pytest.mark.integration

# Short windows so a "long" request (8 s) outlives drain window + shutdown (3 + 2 s).
SHORT = {"graceful-timeout": 3, "shutdown-timeout": 2}
LONG = 8.0


def _stack(tmp_path: Path, options: dict[str, int]) -> Iterator[Stack]:
    try:
        with two_hosts(tmp_path, daemon_options=options) as stack:
            yield stack
    except LabUnavailable as err:
        skip_or_fail(str(err))


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    yield from _stack(tmp_path, {"graceful-timeout": 15, "shutdown-timeout": 5})


@pytest.fixture
def short_stack(tmp_path: Path) -> Iterator[Stack]:
    yield from _stack(tmp_path, SHORT)


def _failed(load: LoadLoop) -> dict[str, int]:
    return {k: v for k, v in load.summary().counts.items() if k != Outcome.OK and v}


def test_saturated_rolling_restart_loses_nothing_and_stops_busy_processes(stack: Stack) -> None:
    """Every thread busy, straight at Apache (no router): rolling mode, zero failures."""
    old = set(stack.a.daemon_pids())
    # 20 clients on 3 x 5 threads, each request 0.2 s: every thread always busy.
    load = LoadLoop(
        stack.a.url + "/slow?s=0.2", max_requests=6000, max_seconds=60, clients=20, pause=0.0
    )
    load.start()
    try:
        time.sleep(1.0)
        run = run_cli(*restart_args(stack, "--json", "--mode", "rolling", haproxy=False))
        time.sleep(0.5)
    finally:
        load.stop()
    assert run.returncode == 0, run.stdout + run.stderr
    report = run.json()
    summary = load.summary()
    assert summary.total > 100 and not _failed(load), summary
    processes = report["processes"]
    assert {p["old_pid"] for p in processes} == old  # type: ignore[union-attr]
    assert not set(stack.a.daemon_pids()) & old
    # Requests were counted on the host for each process when it was signalled,
    # and a busy one was stopped from accepting once its own requests were done.
    assert all(p["in_flight_at_signal"] is not None for p in processes)  # type: ignore[union-attr]
    busy = [p for p in processes if p["in_flight_at_signal"]]  # type: ignore[union-attr]
    assert busy, "the load kept no process busy: not a saturated group"
    assert all(p["signals"] == ["SIGUSR1", "SIGTERM"] for p in busy), processes


def test_long_request_through_the_router_survives_drain_mode(short_stack: Stack) -> None:
    stack = short_stack
    long_one = slow_request(stack.haproxy.url + "/slow", LONG)
    time.sleep(0.5)
    run = run_cli(*restart_args(stack, "--json"))
    assert run.returncode == 0, run.stdout + run.stderr
    assert long_one.result(timeout=60).status == 200


def test_long_request_that_bypassed_the_router_is_found_on_the_host_and_waited_for(
    short_stack: Stack,
) -> None:
    """An internal call straight to Apache: HAProxy cannot see it, the daemons' sockets can."""
    stack = short_stack
    old = set(stack.a.daemon_pids())
    long_one = slow_request(stack.a.url + "/slow", LONG)
    load = LoadLoop(stack.haproxy.url + "/", max_requests=3000, max_seconds=40)
    load.start()
    try:
        time.sleep(0.5)
        run = run_cli(*restart_args(stack, "--json"))
        time.sleep(0.3)
    finally:
        load.stop()
    assert run.returncode == 0, run.stdout + run.stderr
    report = run.json()
    assert long_one.result(timeout=60).status == 200, "the request that bypassed HAProxy was cut"
    assert report["host_in_flight_at_signal"] == 0
    assert report["routers"][0]["sessions_at_signal"] == 0  # type: ignore[index]
    assert not _failed(load), load.summary()
    assert not set(stack.a.daemon_pids()) & old


def test_long_request_in_rolling_mode_is_named_as_unsavable_before_signalling(
    short_stack: Stack,
) -> None:
    stack = short_stack
    long_one = slow_request(stack.a.url + "/slow", LONG)
    time.sleep(0.5)
    old = set(stack.a.daemon_pids())
    dry = run_cli(*restart_args(stack, "--dry-run", "--mode", "rolling", haproxy=False))
    assert dry.returncode == 0, dry.stderr
    plan = dry.stdout + dry.stderr
    assert "no router: a request running when its process is signalled gets at most" in plan
    assert "(3 + 2 s)" in plan and "Only a router (drain mode) lets it finish" in plan
    # One process holds the long request, and the plan counts it.
    assert "idle first, by requests in flight now" in plan
    assert set(stack.a.daemon_pids()) == old, "--dry-run changed something"
    assert long_one.result(timeout=60).status == 200


IMPORT = 3.0  # seconds the app takes to import in each new process


def _load_every_process(stack: Stack) -> None:
    """Make each of host a's current processes import the app (concurrent slow requests)."""
    pids = stack.a.daemon_pids()
    pending = [slow_request(stack.a.url + "/slow", 0.5) for _ in range(15)]
    for request in pending:
        assert request.result(timeout=30).status == 200
    stack.a.wait_loaded(pids)


def test_lazy_app_replacements_are_warmed_before_traffic_returns(stack: Stack) -> None:
    _load_every_process(stack)
    old = set(stack.a.daemon_pids())
    stack.a.set_import_delay(IMPORT)
    load = LoadLoop(stack.haproxy.url + "/", max_requests=4000, max_seconds=60)
    load.start()
    try:
        time.sleep(0.5)
        began = time.monotonic()
        run = run_cli(*restart_args(stack, "--json"))
        time.sleep(5.0)  # the 5 s after the restore, when cold processes would show
    finally:
        load.stop()
    assert run.returncode == 0, run.stdout + run.stderr
    report = run.json()
    new = set(stack.a.daemon_pids())
    assert len(new) == 3 and not new & old
    # No user request waited for a new process's import: each began after the
    # process that answered it had loaded the app (X-Loaded-At, on the same
    # monotonic clock).  How long the tail takes is bench/load_cases.py's figure.
    served_new = [s for s in load.results() if s.start >= began and s.pid in new]
    assert served_new, "no user request reached a new process: nothing was shown"
    assert all(s.loaded_at is not None for s in served_new), served_new[:3]
    waited = [s for s in served_new if s.start < (s.loaded_at or 0.0)]
    assert not waited, (
        f"{len(waited)} user request(s) waited for a new process's import: {waited[:3]}"
    )
    warm = report["warm"]
    assert warm is not None and set(warm["warmed"]) == new and warm["missed"] == [], warm  # type: ignore[index]
    assert any("loads the app lazily" in w for w in report["warnings"])  # type: ignore[union-attr]
    assert not _failed(load), load.summary()


def test_lazy_app_trap_is_named_with_its_fix_before_signalling(stack: Stack) -> None:
    dry = run_cli(*restart_args(stack, "--dry-run", "--mode", "rolling", haproxy=False))
    assert dry.returncode == 0, dry.stderr
    assert "group 'myapp' loads the app lazily" in dry.stderr
    assert (
        "add process-group=myapp application-group=%{GLOBAL} to its WSGIScriptAlias" in dry.stderr
    )
    assert "[trap lazy-load: if deliberate, --ack-trap lazy-load]" in dry.stderr


def test_preloaded_app_is_not_lazy_so_not_warmed_nor_warned(tmp_path: Path) -> None:
    try:
        with two_hosts(tmp_path, preload=True) as stack:
            run = run_cli(*restart_args(stack, "--json"))
            assert run.returncode == 0, run.stdout + run.stderr
            report = run.json()
    except LabUnavailable as err:
        skip_or_fail(str(err))
    assert report["warm"] is None
    assert not any("lazily" in w for w in report["warnings"])  # type: ignore[union-attr]


def test_saturated_peer_going_down_during_the_drain_puts_the_server_back_at_once(
    stack: Stack,
) -> None:
    """The peer cannot carry the load (here: its checks fail) while `a` drains: undo, in place."""
    old = set(stack.a.daemon_pids())
    long_one = slow_request(stack.haproxy.url + "/slow", 4)  # holds the drain open
    time.sleep(0.5)

    def peer_fails() -> None:
        time.sleep(1.0)
        stack.b.set_healthy(False)

    threading.Thread(target=peer_fails, daemon=True).start()
    run = run_cli(*restart_args(stack, "--json"))
    assert run.returncode == 0, run.stdout + run.stderr
    report = run.json()
    assert report["mode"] == "rolling"
    assert any("went out of rotation during the drain" in w for w in report["warnings"])  # type: ignore[union-attr]
    assert stack.haproxy.admin_state("a") == "ready"
    assert long_one.result(timeout=60).status == 200
    assert not set(stack.a.daemon_pids()) & old
    stack.b.set_healthy(True)
