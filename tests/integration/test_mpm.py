"""The core restart on every Apache MPM: event, worker and prefork.

The group's daemons are the same under each MPM, but the MPM's own children
differ (prefork: one process per connection, many of them); discovery must
tell the daemons from them by socket, and the restart must lose nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import LabUnavailable, LoadLoop, Outcome, Stack, skip_or_fail, slow_request
from lab.stack import two_hosts
from tests.integration.conftest import restart_args, run_cli

pytestmark = pytest.mark.integration


@pytest.fixture(params=["event", "worker", "prefork"])
def mpm_stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    try:
        with two_hosts(tmp_path, mpm=request.param) as stack:
            yield stack
    except LabUnavailable as err:
        skip_or_fail(str(err))


@pytest.mark.parametrize("mode", ["drain", "rolling"])
def test_mpm_restart_under_load_loses_nothing(mpm_stack: Stack, mode: str) -> None:
    stack = mpm_stack
    old = set(stack.a.daemon_pids())
    workers = {p.pid for p in stack.a.children()} - old
    assert workers, "the MPM started no children of its own: nothing to tell apart"
    # Rolling mode has no router: load straight at Apache, where nothing can hide a failure.
    url = stack.haproxy.url if mode == "drain" else stack.a.url
    load = LoadLoop(url + "/", max_requests=3000, max_seconds=40)
    load.start()
    try:
        time.sleep(0.5)
        slow = slow_request(url + "/slow?s=3", 3)
        time.sleep(0.5)
        extra = ("--json",) if mode == "drain" else ("--json", "--mode", "rolling")
        run = run_cli(*restart_args(stack, *extra, haproxy=mode == "drain"))
        time.sleep(0.5)
    finally:
        load.stop()
    report = run.json()
    assert run.returncode == 0, run.stderr
    assert report["mode"] == mode
    assert slow.result(timeout=30).status == 200
    summary = load.summary()
    failed = {k: v for k, v in summary.counts.items() if k != Outcome.OK and v}
    assert summary.total > 20 and not failed, summary
    # Exactly the daemons were restarted: no MPM child was taken for one.
    assert {p["old_pid"] for p in report["processes"]} == old  # type: ignore[union-attr]
    assert not workers & {p["old_pid"] for p in report["processes"]}  # type: ignore[union-attr]
    new = set(stack.a.daemon_pids())
    assert len(new) == 3 and not new & old
