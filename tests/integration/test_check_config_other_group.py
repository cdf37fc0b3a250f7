"""A configuration file naming one group, and a second app on the host it does not name
(issue 22).

The file has `[groups.app1]` only; Apache defines app1 and app2. `check` and
`restart --group app2` with everything else on the command line must just
work (app2 is no typo of app1: Apache defines it), `status` must show no
router error under app2, and a name Apache does not define either is still
flagged as the typo it likely is.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import ApacheLab
from tests.integration.conftest import run_cli, start

pytestmark = pytest.mark.integration

TIMEOUTS = {"graceful-timeout": 5, "shutdown-timeout": 5}


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[ApacheLab]:
    app1 = "WSGIDaemonProcess app1 processes=1 threads=2 display-name=%{GROUP}"
    a = ApacheLab(
        tmp_path / "a", group="app2", processes=2, daemon_options=TIMEOUTS, before_config=app1
    )
    try:
        start(a)
        yield a
    finally:
        a.stop()


def _config(lab: ApacheLab, tmp_path: Path) -> Path:
    path = tmp_path / "wsgi-drain.toml"
    path.write_text(
        f'[groups.app1]\napache_pidfile = "{lab.pid_file}"\nhealth_url = "{lab.url}/health"\n'
    )
    return path


def test_check_and_restart_of_a_group_the_config_file_does_not_name_just_work(
    lab: ApacheLab, tmp_path: Path
) -> None:
    conf = _config(lab, tmp_path)
    common = ["--config", str(conf), "--apache-pidfile", str(lab.pid_file),
              "--state-dir", str(tmp_path / "state")]  # fmt: skip
    run = run_cli("check", "--group", "app2", *common, "--health-url", f"{lab.url}/health")
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.startswith("WSGI-DRAIN OK - app2: 2/2 processes up"), run.stdout

    old = set(lab.daemon_pids())
    run = run_cli("restart", "--group", "app2", "--json", *common)
    assert run.returncode == 0, run.stdout + run.stderr
    assert {p["old_pid"] for p in run.json()["processes"]} == old  # type: ignore[union-attr]

    status = run_cli("status", "--config", str(conf), "--json",
                     "--apache-pidfile", str(lab.pid_file))  # fmt: skip
    assert status.returncode == 0, status.stderr
    (instance,) = status.json()["instances"]
    groups = {g["name"]: g for g in instance["groups"]}  # type: ignore[union-attr]
    assert groups["app2"]["router_errors"] == [] and groups["app1"]["router_errors"] == []
    text = run_cli("status", "--config", str(conf), "--apache-pidfile", str(lab.pid_file))
    assert "router error" not in text.stdout, text.stdout


def test_check_of_a_group_neither_file_nor_apache_defines_is_flagged_as_a_typo(
    lab: ApacheLab, tmp_path: Path
) -> None:
    conf = _config(lab, tmp_path)
    run = run_cli("check", "--group", "app3", "--config", str(conf),
                  "--state-dir", str(tmp_path / "state"))  # fmt: skip
    assert run.returncode == 3, run.stdout + run.stderr
    assert "there is [groups.app1]: a typo?" in run.stdout, run.stdout
