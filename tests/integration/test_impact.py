"""Impact (issue 21) on the real stack: the report's `impact.failed` against what the clients saw.

The load loop and the slow request count every failure at the client; the
report counts from HAProxy's counters and Apache's log.  They must agree.
"""

from __future__ import annotations

import json
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from lab import ApacheLab, LabUnavailable, LoadLoop, Outcome, Stack, skip_or_fail, slow_request
from tests.integration.conftest import restart_args, run_cli, start

pytestmark = pytest.mark.integration

# A request longer than graceful-timeout + shutdown-timeout is cut by mod_wsgi itself.
SHORT = {"graceful-timeout": 1, "shutdown-timeout": 1}


def client_failures(load: LoadLoop) -> int:
    summary = load.summary()
    assert summary.total > 30, f"load loop sent too little to mean anything: {summary}"
    return summary.failures


def test_impact_rolling_restart_that_cuts_a_request_counts_what_the_clients_saw(
    tmp_path: Path, modwsgi: str
) -> None:
    apache = ApacheLab(tmp_path / "a", modwsgi=modwsgi, daemon_options=SHORT)  # type: ignore[arg-type]
    try:
        start(apache)
        load = LoadLoop(apache.url + "/", max_requests=3000, max_seconds=40, clients=3)
        load.start()
        try:
            time.sleep(0.5)
            slow = slow_request(apache.url + "/slow?s=8", 8)
            time.sleep(0.5)
            run = run_cli(
                "restart", "--group", "myapp", "--apache-pidfile", str(apache.pid_file),
                "--state-dir", str(tmp_path / "state"), "--mode", "rolling", "--json",
                "--textfile", str(tmp_path / "restart.prom"),
            )  # fmt: skip
        finally:
            load.stop()
        cut = slow.result(timeout=40)
        assert cut.outcome != Outcome.OK, f"the 8 s request was not cut: {cut}"
        report = run.json()
        assert run.returncode == 0, run.stderr
        impact = report["impact"]
        saw = client_failures(load) + 1
        assert impact["failed"] == saw, (impact, load.summary().counts)
        (apache_log,) = [s for s in impact["sources"] if s["kind"] == "apache-log"]
        assert apache_log["read"] is True and apache_log["failed"] == saw
        assert any("daemon process 'myapp'" in line for line in impact["evidence"])
        text = run_cli(
            "restart", "--group", "myapp", "--apache-pidfile", str(apache.pid_file),
            "--state-dir", str(tmp_path / "state"), "--mode", "rolling",
        )  # fmt: skip
        assert "  impact: 0 requests failed (Apache log: none)" in text.stdout, text.stdout
        _check_textfile(tmp_path / "restart.prom", failed=saw)
    finally:
        apache.stop()


def _check_textfile(path: Path, failed: int) -> None:
    """The metrics file parses as Prometheus text and says what the report said."""
    families = {f.name: f for f in text_string_to_metric_families(path.read_text())}
    samples = {f.name: f.samples[0].value for f in families.values()}
    assert samples["wsgi_drain_restart_impact_failed"] == failed
    assert samples["wsgi_drain_restart_success"] == 1
    assert samples["wsgi_drain_restart_processes_replaced"] == 3
    assert abs(samples["wsgi_drain_restart_end_timestamp_seconds"] - time.time()) < 300
    assert path.stat().st_mode & 0o777 == 0o644


def test_impact_clean_drain_through_haproxy_reports_0_from_counters_and_log(stack: Stack) -> None:
    load = LoadLoop(stack.haproxy.url + "/", max_requests=3000, max_seconds=30)
    load.start()
    try:
        time.sleep(0.5)
        run = run_cli(*restart_args(stack, "--json"))
        time.sleep(0.5)
    finally:
        load.stop()
    assert run.returncode == 0, run.stderr
    assert client_failures(load) == 0
    impact = run.json()["impact"]
    assert impact["failed"] == 0
    kinds = {s["kind"]: s for s in impact["sources"]}
    assert set(kinds) == {"haproxy", "apache-log"}
    assert all(s["read"] and s["failed"] == 0 for s in kinds.values()), kinds
    assert kinds["haproxy"]["counters"]["hrsp_5xx"] == 0
    assert impact["evidence"] == []


def test_impact_apachectl_graceful_by_hand_is_counted_by_the_next_run_in_history(
    tmp_path: Path, modwsgi: str
) -> None:
    from lab import two_hosts

    with ExitStack() as stop:
        try:
            stack = stop.enter_context(two_hosts(tmp_path, modwsgi))  # type: ignore[arg-type]
        except LabUnavailable as err:
            skip_or_fail(str(err))
        first = run_cli(*restart_args(stack, "--json"))
        assert first.returncode == 0, first.stderr
        assert first.json()["impact"]["failed"] == 0
        # By hand, outside any run: Apache kills its daemons ~3 s after the
        # graceful (DESIGN.md), so a 6 s request in flight is cut.
        # Apache's graceful closes its children's idle keep-alive connections,
        # which clients retry (RFC 9112 9.3.1): those are no failure, and no log
        # line either.
        load = LoadLoop(
            stack.a.url + "/", max_requests=2000, max_seconds=20, clients=2, retry_reused_close=True
        )
        load.start()
        try:
            time.sleep(0.5)
            slow = slow_request(stack.a.url + "/slow?s=6", 6)
            time.sleep(0.5)
            stack.a.apachectl_graceful()
            cut = slow.result(timeout=40)
            time.sleep(1.0)
        finally:
            load.stop()
        saw = client_failures(load) + (cut.outcome != Outcome.OK)
        assert saw >= 1, f"the graceful cut nothing: {cut}"
        second = run_cli(*restart_args(stack, "--json"))
        assert second.returncode == 0, second.stderr
        assert second.json()["impact"]["failed"] == 0
        history = run_cli("status", "--history", "--state-dir", str(stack.state_dir), "--json")
        assert history.returncode == 0, history.stderr
        runs = history.json()["groups"]["myapp"]
        assert len(runs) == 2
        between = runs[-1]["before_run"]
        assert between["failed"] == saw, (between, load.summary().counts, cut)
        assert any("daemon process 'myapp'" in line for line in between["evidence"])
        text = run_cli("status", "--history", "--state-dir", str(stack.state_dir))
        assert f"before it: {saw} request" in text.stdout, text.stdout
        assert json.loads(history.stdout)["schema"] == "wsgi-drain/history/v1"
