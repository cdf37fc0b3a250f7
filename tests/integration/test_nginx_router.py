"""The nginx router on real nginx (open source) in front of two Apache + mod_wsgi hosts.

nginx reloads close idle keep-alive client connections; the load loop retries
a GET once when a *reused* connection is closed before any byte of the
answer (RFC 9112 9.3.1, as browsers do) and counts it as `retried`, not ok.
Everything else (5xx, resets, timeouts, a closed fresh connection) fails.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import LabUnavailable, LoadLoop, Outcome, Stack, skip_or_fail, slow_request
from lab.nginx import NginxLab
from tests.integration.conftest import restart_args, run_cli, wsgi_drain_command

pytestmark = pytest.mark.integration


def _started(stack: Stack, root: Path, *, debian_unit: bool = False) -> Iterator[NginxLab]:
    """nginx in front of the stack's two hosts, stopped afterwards."""
    lab = NginxLab(
        root,
        [("a", "127.0.0.1", stack.a.port), ("b", "127.0.0.1", stack.b.port)],
        debian_unit=debian_unit,
    )
    try:
        lab.start()
    except LabUnavailable as err:
        skip_or_fail(str(err))
    try:
        yield lab
    finally:
        lab.stop()


@pytest.fixture
def nginx(stack: Stack, tmp_path: Path) -> Iterator[NginxLab]:
    yield from _started(stack, tmp_path / "nginx")


def nginx_router(nginx: NginxLab) -> str:
    return f"nginx:pid={nginx.pid_file}:{nginx.upstream_file}:{nginx.server_address('a')}"


def restart_under_load_losing_nothing(stack: Stack, nginx: NginxLab) -> None:
    """Restart host a through `nginx` under load with a 4 s request in flight on it.

    Drain mode, exit 0, the 4 s request answered, no request failed (a reload-closed
    keep-alive retry counted apart), every old daemon replaced, the server put back.
    """
    old = set(stack.a.daemon_pids())
    load = LoadLoop(
        nginx.url + "/", max_requests=3000, max_seconds=40, clients=8, retry_reused_close=True
    )
    load.start()
    try:
        time.sleep(0.5)
        slow = slow_request(nginx.url + "/slow?s=4", 4)
        time.sleep(0.5)
        run = run_cli(
            *restart_args(stack, "--json", haproxy=False), "--router", nginx_router(nginx)
        )
        time.sleep(0.5)
    finally:
        load.stop()
    report = run.json()
    assert run.returncode == 0, (run.stdout[-3000:], run.stderr[-3000:])
    assert report["mode"] == "drain"
    assert slow.result(timeout=30).status == 200
    summary = load.summary()
    failed = {
        k: v for k, v in summary.counts.items() if k not in (Outcome.OK, Outcome.RETRIED) and v
    }
    assert summary.total > 50, summary
    assert not failed, f"failed requests: {failed} of {summary.total}"
    assert not set(stack.a.daemon_pids()) & old
    assert [r["diverted"] and r["restored"] for r in report["routers"]] == [True]


def test_nginx_router_restart_under_load_loses_nothing_and_leaves_the_file_identical(
    stack: Stack, nginx: NginxLab
) -> None:
    original = nginx.upstream_file.read_bytes()
    restart_under_load_losing_nothing(stack, nginx)
    assert nginx.upstream_file.read_bytes() == original


def test_nginx_router_config_failing_nginx_t_is_put_back_and_nothing_signalled(
    stack: Stack, nginx: NginxLab
) -> None:
    original = nginx.upstream_file.read_bytes()
    old = set(stack.a.daemon_pids())
    workers = set(nginx.workers())
    # Someone else's half-finished edit elsewhere in the configuration: our
    # edit would be reloaded together with it, so `nginx -t` must stop us.
    (nginx.conf_d / "broken.conf").write_text("this is not nginx;\n")
    run = run_cli(*restart_args(stack, "--json", haproxy=False), "--router", nginx_router(nginx))
    report = run.json()
    assert run.returncode == 4, run.stderr
    assert "nginx -t" in str(report["message"])
    assert nginx.upstream_file.read_bytes() == original
    assert set(stack.a.daemon_pids()) == old
    assert all(not p["signals"] for p in report["processes"])  # type: ignore[union-attr]
    assert set(nginx.workers()) == workers, "nginx was reloaded"


def test_nginx_operator_state_down_refuses_min_peers_all_and_survives_undrain(
    stack: Stack, nginx: NginxLab
) -> None:
    # The operator took b out by hand: an unmarked `down`.
    b = nginx.server_address("b")
    text = nginx.upstream_file.read_text().replace(f"server {b} ", f"server {b} down ")
    nginx.upstream_file.write_text(text)
    words = ["--group", "myapp", "--state-dir", str(stack.state_dir), "--router"]
    run = run_cli("drain", "--min-peers", "all", *words, nginx_router(nginx))
    assert run.returncode == 4, run.stderr
    assert nginx.upstream_file.read_text() == text, "edited though refused"
    b_router = f"nginx:pid={nginx.pid_file}:{nginx.upstream_file}:{b}"
    run = run_cli("undrain", *words, b_router)
    assert run.returncode == 0, run.stderr
    assert "an operator's maintenance" in run.stdout and "remove the `down`" in run.stdout
    assert f"server {b} down " in nginx.upstream_file.read_text(), run.stderr


def test_nginx_symlinked_upstream_file_is_written_through_and_stays_a_link(
    stack: Stack, nginx: NginxLab
) -> None:
    # Debian's layout: the included file is a link to the real one.
    real = nginx.root / "sites-available" / "app.conf"
    real.parent.mkdir()
    nginx.upstream_file.rename(real)
    nginx.upstream_file.symlink_to(Path("..") / "sites-available" / "app.conf")
    original = real.read_bytes()
    real.chmod(0o640)
    run = run_cli(*restart_args(stack, "--json", haproxy=False), "--router", nginx_router(nginx))
    assert run.returncode == 0, run.stderr
    assert nginx.upstream_file.is_symlink(), "the link was replaced by a copy"
    assert real.read_bytes() == original
    assert real.stat().st_mode & 0o777 == 0o640


@pytest.fixture
def debian_nginx(stack: Stack, tmp_path: Path) -> Iterator[NginxLab]:
    """nginx as Debian's nginx.service starts it, its upstream file laid out as Debian's."""
    yield from _started(stack, tmp_path / "nginx-debian", debian_unit=True)


def test_nginx_debian_unit_restart_under_load_through_a_symlinked_upstream_file(
    stack: Stack, debian_nginx: NginxLab
) -> None:
    """Issue 16: `-g 'daemon on; master_process on;'`, a sites-enabled link, weights,
    comments and `{` on the next line: restart under load, 0 failed, file identical."""
    nginx = debian_nginx
    assert nginx.upstream_file.is_symlink()
    master_cmdline = Path(f"/proc/{nginx.pid}/cmdline").read_bytes()
    assert b"daemon on; master_process on;" in master_cmdline
    original = nginx.real_upstream_file.read_bytes()
    assert b"upstream app\n{" in original and b"weight=3" in original
    restart_under_load_losing_nothing(stack, nginx)
    assert nginx.upstream_file.is_symlink(), "the link was replaced by a copy"
    assert nginx.real_upstream_file.read_bytes() == original


def test_nginx_two_runs_on_one_upstream_file_never_lose_a_mark(
    stack: Stack, nginx: NginxLab
) -> None:
    """Two drains on different servers of one file at once: both marks stay (issue 16).

    Each run's read, edit, `nginx -t` and reload hold a lock keyed by the file's real
    path, so neither writes back a file without the other's mark.
    """
    original = nginx.upstream_file.read_bytes()
    a, b = nginx.server_address("a"), nginx.server_address("b")
    words = ["--group", "myapp", "--state-dir", str(stack.state_dir), "--min-peers", "0"]

    def router(server: str) -> str:
        return f"nginx:pid={nginx.pid_file}:{nginx.upstream_file}:{server}"

    for _round in range(3):
        drain = [*wsgi_drain_command(), "drain", *words, "--router"]
        runs = [
            subprocess.Popen(
                [*drain, router(server)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for server in (a, b)
        ]
        for proc in runs:
            _out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
        text = nginx.upstream_file.read_text()
        for server in (a, b):
            line = next(x for x in text.splitlines() if f"server {server} " in x)
            assert " down" in line and "wsgi-drain" in line, text
        for server in (a, b):
            run = run_cli("undrain", *words[:4], "--router", router(server))
            assert run.returncode == 0, run.stderr
        assert nginx.upstream_file.read_bytes() == original
