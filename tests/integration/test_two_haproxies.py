"""Two HAProxies in front of the same two hosts (active/active), one reached over TCP.

Every router is diverted and drained before any signal, and restored after;
the second HAProxy's runtime API is a TCP stats socket (`ipv4@...`), as on a
central load-balancer host.  Load goes through both at once.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from lab import HAProxyLab, LoadLoop, Outcome, Stack, slow_request
from tests.integration.conftest import restart_args, run_cli, start

pytestmark = pytest.mark.integration


def test_two_haproxies_restart_under_load_through_both_loses_nothing(
    stack: Stack, tmp_path: Path
) -> None:
    second = HAProxyLab(
        tmp_path / "haproxy2",
        [("a", "127.0.0.1", stack.a.port), ("b", "127.0.0.1", stack.b.port)],
        pin={"/slow": "a"},
        admin_tcp=True,
    )
    start(second)
    try:
        old = set(stack.a.daemon_pids())
        loads = [
            LoadLoop(h.url + "/", max_requests=2000, max_seconds=40)
            for h in (stack.haproxy, second)
        ]
        for load in loads:
            load.start()
        try:
            time.sleep(0.5)
            slow = [slow_request(h.url + "/slow?s=4", 4) for h in (stack.haproxy, second)]
            time.sleep(0.5)
            run = run_cli(
                *restart_args(stack, "--json"),
                "--router", f"haproxy:ipv4@{second.admin_address}:be_app/a",
            )  # fmt: skip
            time.sleep(0.5)
        finally:
            for load in loads:
                load.stop()
        report = run.json()
        assert run.returncode == 0, run.stderr
        assert report["mode"] == "drain"
        assert [r["diverted"] and r["restored"] for r in report["routers"]] == [True, True]
        assert [r["sessions_at_signal"] for r in report["routers"]] == [0, 0]
        assert all(s.result(timeout=30).status == 200 for s in slow)
        for load in loads:
            summary = load.summary()
            failed = {k: v for k, v in summary.counts.items() if k != Outcome.OK and v}
            assert summary.total > 20 and not failed, summary
        assert not set(stack.a.daemon_pids()) & old
        for h in (stack.haproxy, second):
            assert h.server_states()["a"].status.startswith("UP")
    finally:
        second.stop()
