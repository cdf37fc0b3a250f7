"""The command router's spec and `state` line, and the router spec syntax."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import types
from pathlib import Path

import pytest

from tests.unit.clock import SleepClock
from wsgi_drain.deadline import Deadline
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
        ("timeout=-1:/bin/hook", "positive number"),
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


def test_command_router_default_timeout_is_30_seconds() -> None:
    """The documented default (`timeout=` overrides it)."""
    assert parse_command("/usr/local/sbin/lb-hook web1").timeout == 30.0


def test_command_router_name_quotes_the_words_as_a_shell_would() -> None:
    router = CommandRouter(parse_command("/usr/local/sbin/lb-hook 'pool a' web1"))
    assert router.name == "command /usr/local/sbin/lb-hook 'pool a' web1"
    assert repr(router) == "CommandRouter(('/usr/local/sbin/lb-hook', 'pool a', 'web1'))"


@pytest.mark.parametrize("group", ["myapp", None])
def test_command_router_program_gets_the_action_and_group_in_its_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, group: str | None
) -> None:
    monkeypatch.delenv("WSGI_DRAIN_GROUP", raising=False)
    seen = tmp_path / "seen"
    program = _hook(
        tmp_path,
        f'echo "$1 $WSGI_DRAIN_ACTION ${{WSGI_DRAIN_GROUP-unset}}" >> "{seen}"\necho admin=ready',
    )
    router = CommandRouter(parse_command(str(program)), group)
    router.divert()
    router.restore()
    router.state()
    expected = group or "unset"
    assert seen.read_text().splitlines() == [
        f"divert divert {expected}",
        f"restore restore {expected}",
        f"state state {expected}",
    ]


def test_command_router_program_reads_an_empty_stdin(tmp_path: Path) -> None:
    """Never the operator's terminal: a program that reads stdin gets end of file."""
    program = _hook(tmp_path, 'read line || echo "admin=maint status=EOF"')
    state = CommandRouter(parse_command(f"timeout=5:{program}")).state()
    assert (state.admin, state.status) == ("maint", "EOF")


@pytest.mark.parametrize("kind", ["missing", "not executable"])
def test_command_router_program_that_cannot_run_is_a_router_error(
    tmp_path: Path, kind: str
) -> None:
    program = tmp_path / "hook"
    if kind == "not executable":
        program.write_text("#!/bin/sh\necho admin=ready\n")
        program.chmod(0o644)
    with pytest.raises(RouterError) as caught:
        CommandRouter(parse_command(str(program))).divert()
    why = "Permission denied" if kind == "not executable" else "No such file or directory"
    assert str(caught.value).endswith(f": cannot run it: {why}")  # the OS's words, once
    assert caught.value.applied is False


def test_command_router_program_killed_by_a_signal_is_a_failure(tmp_path: Path) -> None:
    """Not success: a program ended by a signal (the OOM killer, its own `kill`) says
    nothing about the load balancer; its status is the negative signal number."""
    program = _hook(tmp_path, "echo 'half done' >&2\nkill -TERM $$")
    with pytest.raises(RouterError, match="divert failed with exit status -15: half done"):
        CommandRouter(parse_command(str(program))).divert()


def test_command_router_failure_without_stderr_says_so(tmp_path: Path) -> None:
    program = _hook(tmp_path, "exit 1")
    with pytest.raises(RouterError, match=r"restore failed with exit status 1: \(no message"):
        CommandRouter(parse_command(str(program))).restore()


def test_command_router_failure_message_keeps_400_characters_of_the_line(tmp_path: Path) -> None:
    program = _hook(tmp_path, "printf '%0900d\\n' 0 | tr 0 x >&2\nexit 2")
    with pytest.raises(RouterError) as caught:
        CommandRouter(parse_command(str(program))).divert()
    said = str(caught.value)
    assert said.endswith(": " + "x" * 400), said[-420:]


def test_command_router_reads_at_most_64_kib_of_the_programs_output(tmp_path: Path) -> None:
    """One state line of 100 KiB: `sessions=1` at 40 KiB is read, `queued=5` at 70 KiB is not."""
    program = _hook(
        tmp_path,
        "printf 'admin=ready '\nprintf '%040960d' 0 | tr 0 ' '\nprintf 'sessions=1 '\n"
        "printf '%030720d' 0 | tr 0 ' '\nprintf 'queued=5 '\nprintf '%030720d\\n' 0 | tr 0 ' '",
    )
    state = CommandRouter(parse_command(f"timeout=5:{program}")).state()
    assert (state.admin, state.sessions, state.queued) == ("ready", 1, 0)


def test_command_router_divert_that_hangs_may_have_been_applied(tmp_path: Path) -> None:
    """A divert killed at its timeout may have reached the load balancer (`applied`
    unknown); a `state` that hung changed nothing."""
    program = _hook(tmp_path, 'if [ "$1" = state ]; then echo admin=ready; fi\nexec sleep 60')
    router = CommandRouter(parse_command(f"timeout=0.3:{program}"))
    with pytest.raises(RouterError, match="divert did not finish within 0.3 s") as divert:
        router.divert()
    assert divert.value.applied is None
    with pytest.raises(RouterError, match="state did not finish") as state:
        router.state()
    assert state.value.applied is False


def test_command_router_interrupted_kills_the_program_and_its_group(tmp_path: Path) -> None:
    """Ctrl-C (a real SIGINT) during a hanging program: the interrupt goes on, and
    the program and what it started are killed, not left running."""
    pids = tmp_path / "child.pid"
    program = _hook(tmp_path, f"/bin/sh -c 'echo $$ > \"{pids}\"; exec sleep 60' &\nexec sleep 60")
    router = CommandRouter(parse_command(f"timeout=30:{program}"))

    def interrupt_once_started() -> None:
        for _ in range(200):
            if pids.exists() and pids.read_text().strip():
                break
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGINT)

    # Python's own SIGINT handler, even where this suite was started with SIGINT
    # ignored (a shell's background job: scripts/test runs scripts/pythons so).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        sender = threading.Thread(target=interrupt_once_started, daemon=True)
        sender.start()
        with pytest.raises(KeyboardInterrupt):
            router.divert()
        sender.join()
    finally:
        signal.signal(signal.SIGINT, previous)
    child = int(pids.read_text())
    for _ in range(100):
        if "Z" in _proc_state(child):
            break
        time.sleep(0.05)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("the program's own child was left running after the interrupt")


def _counting_hook(tmp_path: Path, lines: list[str]) -> Path:
    """A `state` program printing lines[0], lines[1], ... on successive calls, then the last."""
    count = tmp_path / "count"
    count.write_text("0")
    cases = "\n".join(f"  {i}) echo '{line}' ;;" for i, line in enumerate(lines[:-1]))
    return _hook(
        tmp_path,
        f'n=$(cat "{count}"); echo $((n + 1)) > "{count}"\n'
        f"case $n in\n{cases}\n  *) echo '{lines[-1]}' ;;\nesac",
    )


def test_command_router_drain_waits_for_sessions_and_queue_both_at_zero(tmp_path: Path) -> None:
    program = _counting_hook(
        tmp_path,
        [
            "admin=drain sessions=2 queued=0",
            "admin=drain sessions=0 queued=1",
            "admin=drain sessions=0 queued=0",
        ],
    )
    router = CommandRouter(parse_command(str(program)))
    state = router.wait_drained(Deadline(30))
    assert (state.sessions, state.queued) == (0, 0)
    assert (tmp_path / "count").read_text().strip() == "3"


def test_command_router_drain_wait_ends_at_the_deadline_with_the_last_state(tmp_path: Path) -> None:
    program = _counting_hook(tmp_path, ["admin=drain sessions=3 queued=0"])
    state = CommandRouter(parse_command(str(program))).wait_drained(Deadline(0))
    assert state.sessions == 3
    assert (tmp_path / "count").read_text().strip() == "1"  # asked once, then the deadline


def test_command_router_state_reads_the_first_line_that_is_not_blank() -> None:
    state = parse_state("hook", "\n   \nadmin=drain\nadmin=maint\n")
    assert state.admin == "drain"


def test_command_router_state_keys_and_admin_word_in_any_case() -> None:
    state = parse_state("hook", "ADMIN=Maint SESSIONS=2 Peers_Up=1\n")
    assert (state.admin, state.sessions, state.peers_up) == ("maint", 2, 1)


def test_command_router_state_status_defaults_to_the_admin_word() -> None:
    assert parse_state("hook", "admin=drain\n").status == "DRAIN"
    assert parse_state("hook", "admin=drain status=UP\n").status == "UP"


@pytest.mark.parametrize("word", ["sessions=-1", "queued=x", "peers_up=1.5", "queued="])
def test_command_router_state_number_that_is_not_whole_is_a_router_error(word: str) -> None:
    key = word.split("=")[0]
    with pytest.raises(RouterError, match=f"state printed {key}="):
        parse_state("hook", f"admin=ready {word}\n")


def test_command_router_state_without_counts_has_no_sessions_known_and_zero_queue() -> None:
    state = parse_state("hook", "admin=ready\n")
    assert (state.sessions, state.queued, state.sessions_known) == (0, 0, False)
    assert (state.peers_up, state.peers_out, state.peers_listed) == (None, (), False)
    known = parse_state("hook", "admin=ready sessions=0 queued=4\n")
    assert (known.sessions, known.queued, known.sessions_known) == (0, 4, True)


def test_command_router_state_peers_out_ignores_empty_names() -> None:
    assert parse_state("hook", "admin=ready peers_out=,web3,,web4,\n").peers_out == ("web3", "web4")


def test_command_router_drain_polls_every_half_second_and_never_sleeps_past_the_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fake clock that moves only when the router sleeps: 0.7 s of deadline is one poll of
    # 0.5 s, then what is left of it (0.2 s), then the deadline.
    from wsgi_drain.routers import command

    clock = SleepClock()
    monkeypatch.setattr(command, "time", types.SimpleNamespace(sleep=clock.sleep))
    program = _counting_hook(tmp_path, ["admin=drain sessions=1 queued=0"])
    router = CommandRouter(parse_command(str(program)))
    state = router.wait_drained(Deadline(0.7, clock=clock))
    assert state.sessions == 1
    assert clock.slept == [0.5, pytest.approx(0.2)]
    assert (tmp_path / "count").read_text().strip() == "3"
