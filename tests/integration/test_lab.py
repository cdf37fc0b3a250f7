"""The lab itself: real Apache + mod_wsgi (Debian's and PyPI's) behind a real HAProxy."""

from __future__ import annotations

import http.client
import os
from pathlib import Path

import psutil
import pytest

from lab import (
    ApacheLab,
    HAProxyLab,
    LabUnavailable,
    LoadLoop,
    ModWsgi,
    Outcome,
    procs,
    skip_or_fail,
    slow_request,
)
from lab import apache as apache_module

VARIANTS: list[ModWsgi] = ["debian", "pypi"]


def _get(port: int, path: str) -> tuple[int, str, int]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read().decode()
        return resp.status, body, int(resp.getheader("X-Pid") or 0)
    finally:
        conn.close()


def _start(lab: ApacheLab | HAProxyLab) -> None:
    try:
        lab.start()
    except LabUnavailable as err:
        skip_or_fail(str(err))


@pytest.mark.integration
@pytest.mark.parametrize("modwsgi", VARIANTS)
def test_stack_starts_serves_and_stops_clean(modwsgi: ModWsgi, tmp_path: Path) -> None:
    apache = ApacheLab(tmp_path / "apache", modwsgi=modwsgi)
    haproxy: HAProxyLab | None = None
    started: list[psutil.Process] = []
    try:
        _start(apache)
        started.append(psutil.Process(apache.parent_pid))
        started.extend(apache.children())

        daemons = apache.daemon_pids()
        assert len(daemons) == 3
        for pid in daemons:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
            # display-name overwrites argv[0] ("/usr/sbin/apache2", 17 bytes) in place.
            assert raw.split(b"\0")[0] == b"(wsgi:myapp)     "
        sockets = os.listdir(apache.socket_prefix.parent)
        assert f"wsgi.{apache.parent_pid}.0.1.sock" in sockets

        status, body, pid = _get(apache.port, "/")
        assert status == 200
        assert pid in daemons
        assert body == f"pid {pid}\n"
        assert _get(apache.port, "/version")[:2] == (200, "1\n")
        assert _get(apache.port, "/health")[0] == 200

        haproxy = HAProxyLab(
            tmp_path / "haproxy", [("a1", "127.0.0.1", apache.port)], pin={"/slow": "a1"}
        )
        _start(haproxy)
        started.append(psutil.Process(haproxy.pid))
        states = haproxy.server_states()
        assert list(states) == ["a1"]
        assert states["a1"].status == "UP"
        assert states["a1"].check_status.startswith("L7OK")

        slow = slow_request(f"{haproxy.url}/slow", 0.5)
        load = LoadLoop(f"{haproxy.url}/", max_requests=60, max_seconds=10.0)
        load.start()
        assert load.wait(15.0)
        summary = load.summary()
        assert summary.total == 60
        assert summary.counts[Outcome.OK] == 60
        assert summary.failures == 0
        assert summary.pids <= set(daemons)
        assert 0 < summary.p50 <= summary.p99 <= summary.max

        sample = slow.result(timeout=10.0)
        assert sample.outcome is Outcome.OK
        assert sample.pid in daemons
        assert sample.latency >= 0.5
    finally:
        if haproxy is not None:
            haproxy.stop()
        apache.stop()

    assert started, "nothing was started"
    assert [p.pid for p in started if not procs.is_gone(p)] == []
    assert not apache.public.exists() or apache.public.is_relative_to(tmp_path)


@pytest.mark.integration
def test_pypi_module_with_unreadable_python_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As if the PyPI module's Python lived under a /root the daemons cannot
    # read (pyenv as root): the lab serves a mirror of the standard library.
    if os.geteuid() != 0:
        skip_or_fail("only root runs the daemons as another user (CI runs as root)")
    monkeypatch.setattr(apache_module, "_unreadable_to_daemons", lambda home: True)
    with ApacheLab(tmp_path / "apache", modwsgi="pypi", processes=1) as apache:
        assert f'WSGIPythonHome "{apache.public / "pyhome"}"' in apache.conf_path.read_text()
        status, _, pid = _get(apache.port, "/")
        assert (status, [pid]) == (200, apache.daemon_pids())
    assert "crit" not in apache.error_log.read_text()


@pytest.mark.integration
def test_app_control_files_and_slow_route(tmp_path: Path) -> None:
    apache = ApacheLab(tmp_path / "apache", processes=1, version="v1")
    _start(apache)
    try:
        assert _get(apache.port, "/version")[1] == "v1\n"
        apache.set_healthy(False)
        assert _get(apache.port, "/health")[0] == 503
        apache.set_healthy(True)
        assert _get(apache.port, "/health")[0] == 200
        # The version is read at import: only a new process serves a new one.
        apache.set_version("v2")
        assert _get(apache.port, "/version")[1] == "v1\n"
        status, body, _ = _get(apache.port, "/slow?s=0.2")
        assert (status, body.split()[:2]) == (200, ["slept", "0.2"])
        assert _get(apache.port, "/nowhere")[0] == 404
    finally:
        apache.stop()


def test_load_loop_refuses_non_loopback_targets() -> None:
    for url in ("http://192.0.2.1/", "http://example.com/", "https://127.0.0.1/"):
        with pytest.raises(ValueError):
            LoadLoop(url, max_requests=1, max_seconds=1.0)
    with pytest.raises(ValueError):
        slow_request("http://10.0.0.1/slow", 1.0)
    LoadLoop("http://localhost:1/", max_requests=1, max_seconds=1.0)
    LoadLoop("http://[::1]:1/", max_requests=1, max_seconds=1.0)


def test_load_loop_counts_refused_connections() -> None:
    from lab import free_port

    load = LoadLoop(
        f"http://127.0.0.1:{free_port()}/", max_requests=5, max_seconds=5.0, clients=1, pause=0
    )
    load.start()
    assert load.wait(10.0)
    summary = load.summary()
    assert summary.counts[Outcome.REFUSED] == 5
    assert summary.failures == 5
