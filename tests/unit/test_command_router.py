"""The command router's spec and `state` line, and the router spec syntax."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest

from wsgi_drain.errors import ConfigError, RouterError
from wsgi_drain.routers import parse_spec, specs
from wsgi_drain.routers.command import (
    DEFAULT_TIMEOUT,
    CommandRouter,
    parse_command,
    parse_state,
)


def test_command_router_spec_splits_words_without_a_shell() -> None:
    cmd = parse_command("/usr/local/sbin/lb-hook 'pool a' web1;reboot")
    assert cmd.argv == ("/usr/local/sbin/lb-hook", "pool a", "web1;reboot")
    assert cmd.timeout == DEFAULT_TIMEOUT
    assert parse_command("timeout=2.5:/bin/hook x").timeout == 2.5


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("lb-hook web1", "absolute path"),
        ("timeout=0:/bin/hook", "positive number"),
        ("timeout=x:/bin/hook", "positive number"),
        ("/bin/hook 'unclosed", "quotation"),
    ],
)
def test_command_router_bad_spec_says_the_fix(spec: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        parse_command(spec)


def test_command_router_state_line() -> None:
    state = parse_state("hook", "admin=drain sessions=3 queued=1 peers_up=2 status=UP\n")
    assert (state.admin, state.sessions, state.queued, state.peers_up) == ("drain", 3, 1, 2)
    assert state.sessions_known
    bare = parse_state("hook", "ready\n")
    assert (bare.admin, bare.peers_up, bare.sessions_known) == ("ready", None, False)


@pytest.mark.parametrize("out", ["", "up", "admin=ready sessions=many"])
def test_command_router_state_line_that_cannot_be_read_is_a_router_error(out: str) -> None:
    with pytest.raises(RouterError):
        parse_state("hook", out)


def test_router_specs_keep_ipv6_and_colons_after_the_kind() -> None:
    assert parse_spec("haproxy:[::1]:9999:be:app/web1") == ("haproxy", "[::1]:9999:be:app/web1")
    with pytest.raises(ConfigError, match="KIND:SPEC"):
        parse_spec("/run/haproxy.sock")
    assert specs(["/s:be/a"], ["haproxy:/s:be/a", "command:/bin/x"]) == [
        "haproxy:/s:be/a",
        "command:/bin/x",
    ]


def _hook(tmp_path: Path, body: str) -> Path:
    program = tmp_path / "hook"
    program.write_text(f"#!/bin/sh\n{body}\n")
    program.chmod(0o755)
    return program


def _end(pid_file: Path) -> None:
    """End the child a hook left running (the test started it), once it wrote its pid."""
    for _ in range(100):
        text = pid_file.read_text().strip() if pid_file.exists() else ""
        if text:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(text), signal.SIGKILL)
            return
        time.sleep(0.05)


@pytest.mark.parametrize("launch", ["", "/usr/bin/setsid "], ids=["background", "setsid"])
def test_command_router_waits_for_the_program_not_a_child_it_leaves_running(
    tmp_path: Path, launch: str
) -> None:
    # The child keeps stdout and stderr open for 60 s after the program exits 0:
    # waiting for end of file on them would wait for it (or report a timeout).
    pids = tmp_path / "child.pid"
    program = _hook(
        tmp_path,
        f"{launch}/bin/sh -c 'echo $$ > \"{pids}\"; exec sleep 60' &\necho admin=ready peers_up=1",
    )
    router = CommandRouter(parse_command(f"timeout=3:{program}"))
    try:
        state = router.state()
    finally:
        _end(pids)
    assert (state.admin, state.peers_up) == ("ready", 1)


def test_command_router_that_hangs_is_killed_with_its_process_group(tmp_path: Path) -> None:
    pids = tmp_path / "child.pid"
    program = _hook(tmp_path, f"/bin/sh -c 'echo $$ > \"{pids}\"; exec sleep 60' &\nexec sleep 60")
    router = CommandRouter(parse_command(f"timeout=0.5:{program}"))
    with pytest.raises(RouterError, match=r"state did not finish within 0\.5 s and was killed"):
        router.state()
    child = int(pids.read_text())
    for _ in range(100):  # killed by us; reaped by init once it is gone
        if not Path(f"/proc/{child}").exists() or "Z" in _proc_state(child):
            break
        time.sleep(0.05)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("the program's own child was left running")


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_command_router_reports_the_last_stderr_line_of_a_failure(tmp_path: Path) -> None:
    program = _hook(tmp_path, "echo first >&2\necho 'the load balancer said no' >&2\nexit 3")
    with pytest.raises(RouterError, match="exit status 3: the load balancer said no"):
        CommandRouter(parse_command(str(program))).divert()


def test_command_router_state_line_names_the_servers_out_for_min_peers_all() -> None:
    state = parse_state("hook", "admin=ready peers_up=1 peers_out=web3,web4\n")
    assert (state.peers_out, state.peers_listed) == (("web3", "web4"), True)
    none_out = parse_state("hook", "admin=ready peers_up=2 peers_out=\n")
    assert (none_out.peers_out, none_out.peers_listed) == ((), True)
    assert not parse_state("hook", "admin=ready peers_up=2\n").peers_listed
