"""The command router's spec and `state` line, and the router spec syntax."""

from __future__ import annotations

import pytest

from wsgi_drain.errors import ConfigError, RouterError
from wsgi_drain.routers import parse_spec, specs
from wsgi_drain.routers.command import DEFAULT_TIMEOUT, parse_command, parse_state


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
