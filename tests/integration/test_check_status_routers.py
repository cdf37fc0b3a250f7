"""`status --haproxy/--router`: router state from the command line, as the design promises
(issue 22), with no configuration file naming the routers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import LabUnavailable, Stack, skip_or_fail, two_hosts
from tests.integration.conftest import run_cli

pytestmark = pytest.mark.integration


@pytest.fixture
def one_stack(tmp_path: Path) -> Iterator[Stack]:
    try:
        with two_hosts(tmp_path, "debian", processes=1) as stack:
            yield stack
    except LabUnavailable as err:
        skip_or_fail(str(err))


def test_check_status_reads_routers_from_the_command_line(one_stack: Stack) -> None:
    stack = one_stack
    args = ["status", "--group", "myapp", "--apache-pidfile", str(stack.a.pid_file),
            "--haproxy", f"{stack.haproxy.admin_socket}:be_app/a", "--json"]  # fmt: skip
    env = {"WSGI_DRAIN_CONFIG": ""}
    run = run_cli(*args, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    ((group,),) = [i["groups"] for i in run.json()["instances"]]  # type: ignore[index]
    assert group["router_errors"] == []
    (router,) = group["routers"]
    assert router["admin"] == "ready" and router["name"].endswith("be_app/a")

    stack.haproxy.command("set server be_app/a state drain")
    run = run_cli(*args, env=env)
    ((group,),) = [i["groups"] for i in run.json()["instances"]]  # type: ignore[index]
    assert group["routers"][0]["admin"] == "drain"
    text = run_cli(*args[:-1], env=env)
    assert text.returncode == 0 and "drain" in text.stdout, text.stdout

    bad = run_cli("status", "--router", "haproxy:/run/haproxy/admin.sock", env=env)
    assert bad.returncode == 2 and "no ':BACKEND/SERVER' after the socket" in bad.stdout
