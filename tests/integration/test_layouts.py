"""The distributions' stock Apache layouts need no flags: RHEL's httpd and Debian's apache2.

Each test starts a real Apache + mod_wsgi in the layout (lab.layouts: the
RHEL tree run through a link named ``httpd``, Debian's tree started by
``apache2ctl start`` as apache2.service does), then runs `status`, `check`
and `restart --group myapp` with no option at all, as an operator on that
host would.  Only the state directory comes from the environment
(WSGI_DRAIN_STATE_DIR), so the test never writes to /run/wsgi-drain.

A second group with a long name runs beside `myapp`: its title is cut to
argv[0]'s length (``(wsgi:myapp-rep`` under RHEL's /usr/sbin/httpd), and the
restart must leave its process alone.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from lab import ApacheLab, LabUnavailable, LoadLoop, Outcome, procs, skip_or_fail, slow_request
from lab.layouts import RHEL_ARGV0, DebianLab, RhelLab
from tests.integration.conftest import run_cli

# alone: it looks at every Apache on the host, so no other test may run one meanwhile
# (scripts/test runs these after the parallel part).
pytestmark = [pytest.mark.integration, pytest.mark.alone]

OTHER = "myapp-reports"
TIMEOUTS = {"graceful-timeout": 5, "shutdown-timeout": 5}


def _lab(kind: str, root: Path) -> ApacheLab:
    other = f"WSGIDaemonProcess {OTHER} processes=1 threads=2 display-name=%{{GROUP}}"
    cls = RhelLab if kind == "rhel" else DebianLab
    return cls(root, daemon_options=TIMEOUTS, before_config=other)


@pytest.fixture(params=["rhel", "debian_stock"])
def layout(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ApacheLab]:
    lab = _lab("rhel" if request.param == "rhel" else "debian", tmp_path / "apache")
    try:
        lab.start()
    except LabUnavailable as err:
        skip_or_fail(str(err))
    try:
        yield lab
    finally:
        lab.stop()


def _other_pids(lab: ApacheLab, timeout: float = 10.0) -> set[int]:
    """The long-named group's process (the lab waits only for myapp's)."""
    cut = lab.title_of(OTHER)
    deadline = time.monotonic() + timeout
    while True:
        found = {k.pid for k in lab.children() if procs.title(k) == cut}
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_layout_is_what_the_distribution_ships(layout: ApacheLab) -> None:
    parent = psutil.Process(layout.parent_pid)
    if isinstance(layout, RhelLab):
        assert parent.name() == "httpd" and parent.cmdline()[0] == RHEL_ARGV0
        assert layout.title == "(wsgi:myapp)" and layout.title_of(OTHER) == "(wsgi:myapp-rep"
    else:
        assert parent.cmdline()[:3] == ["/usr/sbin/apache2", "-d", str(layout.conf_path.parent)]
        assert "APACHE_RUN_DIR" in parent.environ()
    assert len(_other_pids(layout)) == 1, "the long-named group's title is not cut as expected"


def test_layout_status_check_and_restart_need_no_flags(layout: ApacheLab, tmp_path: Path) -> None:
    env = {"WSGI_DRAIN_STATE_DIR": str(tmp_path / "state")}
    other = _other_pids(layout)
    status = run_cli("status", "--json", env=env)
    assert status.returncode == 0, status.stderr
    (instance,) = status.json()["instances"]
    assert instance["pid"] == layout.parent_pid
    assert instance["config"] == str(layout.conf_path)
    groups = {g["name"]: g for g in instance["groups"]}  # type: ignore[union-attr]
    assert set(groups) == {"myapp", OTHER}
    assert {p["pid"] for p in groups["myapp"]["processes"]} == set(layout.daemon_pids())
    assert {p["pid"] for p in groups[OTHER]["processes"]} == other
    assert groups["myapp"]["identified_by"] == "socket"

    check = run_cli("check", "--group", "myapp", env=env)
    assert check.returncode == 0 and check.stdout.startswith("WSGI-DRAIN OK"), check.stdout

    old = set(layout.daemon_pids())
    # No router: rolling mode, with the load straight at Apache where nothing hides a failure.
    load = LoadLoop(layout.url + "/", max_requests=3000, max_seconds=40)
    load.start()
    try:
        time.sleep(0.5)
        slow = slow_request(layout.url + "/slow?s=2", 2)
        time.sleep(0.3)
        run = run_cli("restart", "--group", "myapp", "--json", env=env)
        time.sleep(0.5)
    finally:
        load.stop()
    assert run.returncode == 0, run.stdout + run.stderr
    report = run.json()
    assert report["verdict"] == "success" and report["mode"] == "rolling"
    assert slow.result(timeout=30).status == 200
    summary = load.summary()
    failed = {k: v for k, v in summary.counts.items() if k != Outcome.OK and v}
    assert summary.total > 20 and not failed, summary
    assert {p["old_pid"] for p in report["processes"]} == old  # type: ignore[union-attr]
    new = set(layout.daemon_pids())
    assert len(new) == 3 and not new & old
    assert _other_pids(layout) == other, "the other group's process was touched"
