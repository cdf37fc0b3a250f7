"""The health-file router behind a load balancer that only health-checks.

The stand-in LB is a real HAProxy using only `option httpchk` on /lb-health
(no runtime API is touched); host `a` carries apache-conf/health-file.conf's
rewrite rules.  wsgi-drain creates the file, waits --lb-detect, then until no
request is in flight on the host, signals, verifies /health directly, and
removes the file.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import ApacheLab, HAProxyLab, LoadLoop, Outcome, slow_request
from tests.integration.conftest import run_cli, start

pytestmark = pytest.mark.integration

SNIPPET = Path(__file__).resolve().parents[2] / "apache-conf" / "health-file.conf"


@pytest.fixture
def marker_dir() -> Iterator[Path]:
    # Apache's workers stat the file: a directory they can traverse.
    where = Path(tempfile.mkdtemp(prefix="wsgi-drain-health-", dir="/tmp"))
    where.chmod(0o755)
    try:
        yield where
    finally:
        shutil.rmtree(where, ignore_errors=True)


def test_health_file_router_restart_behind_an_httpchk_only_lb_loses_nothing(
    tmp_path: Path, marker_dir: Path
) -> None:
    marker = marker_dir / "myapp.down"

    def rewrite(path: Path) -> str:
        rules = SNIPPET.read_text().replace("/run/wsgi-drain-health/myapp.down", str(path))
        return f'LoadModule rewrite_module "/usr/lib/apache2/modules/mod_rewrite.so"\n{rules}'

    timeouts = {"graceful-timeout": 15, "shutdown-timeout": 5}
    a = ApacheLab(tmp_path / "a", extra_config=rewrite(marker), daemon_options=timeouts)
    # Host b has its own file (never created here): each host, its own marker.
    other = marker_dir / "b.down"
    b = ApacheLab(tmp_path / "b", extra_config=rewrite(other), daemon_options=timeouts)
    lb = HAProxyLab(
        tmp_path / "lb",
        [("a", "127.0.0.1", 0), ("b", "127.0.0.1", 0)],
        pin={"/slow": "a"},
        check_path="/lb-health",
    )
    try:
        start(a)
        start(b)
        lb.servers = [("a", "127.0.0.1", a.port), ("b", "127.0.0.1", b.port)]
        start(lb)
        old = set(a.daemon_pids())
        load = LoadLoop(lb.url + "/", max_requests=3000, max_seconds=40)
        load.start()
        try:
            time.sleep(0.5)
            slow = slow_request(lb.url + "/slow?s=3", 3)
            time.sleep(0.5)
            run = run_cli(
                "restart", "--group", "myapp", "--apache-pidfile", str(a.pid_file),
                "--health-url", f"{a.url}/health", "--state-dir", str(tmp_path / "state"),
                "--router", f"health-file:{marker}", "--lb-detect", "1.5", "--json",
            )  # fmt: skip
            time.sleep(0.5)
        finally:
            load.stop()
        report = run.json()
        assert run.returncode == 0, run.stderr
        assert report["mode"] == "drain"
        assert slow.result(timeout=30).status == 200
        summary = load.summary()
        failed = {k: v for k, v in summary.counts.items() if k != Outcome.OK and v}
        assert summary.total > 20 and not failed, summary
        assert not set(a.daemon_pids()) & old
        # The drain was measured on the host: nothing in flight at the signal.
        assert report["routers"][0]["sessions_at_signal"] == 0
        assert not marker.exists()
        assert report["health"]["status"] == 200
        lb.wait_status("a", "UP", timeout=10)
        assert os.listdir(marker_dir) == []
    finally:
        lb.stop()
        a.stop()
        b.stop()
