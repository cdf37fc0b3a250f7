"""The nginx router's spec and its one-line edit of an upstream file."""

from __future__ import annotations

from pathlib import Path

import pytest

from wsgi_drain.errors import ConfigError, RouterError
from wsgi_drain.routers.nginx import DEFAULT_PIDFILE, find_server, parse_target, set_down

UPSTREAM = """\
# app servers
upstream app {
    server 10.0.0.11:8080 weight=2;   # web1; keep
    server 10.0.0.12:8080;
    server [2001:db8::13]:8080 backup;
    server 10.0.0.14:8080 down;
}
upstream other {
    server 10.0.0.21:8080;
}
"""


def test_nginx_spec_survives_colons_in_the_path_and_ipv6() -> None:
    t = parse_target("/etc/nginx/up:stream/app.conf:[2001:db8::13]:8080")
    assert (t.upstream_file, t.server, t.pid_file) == (
        Path("/etc/nginx/up:stream/app.conf"),
        "[2001:db8::13]:8080",
        DEFAULT_PIDFILE,
    )
    t = parse_target("pid=/run/n.pid:/etc/nginx/app.conf:web1.example:8080")
    assert (t.pid_file, t.server) == (Path("/run/n.pid"), "web1.example:8080")


@pytest.mark.parametrize("spec", ["app.conf:10.0.0.1:80", "/etc/app.conf", "pid=x:/a:1.2.3.4:80"])
def test_nginx_bad_spec_says_the_form(spec: str) -> None:
    with pytest.raises(ConfigError, match="nginx"):
        parse_target(spec)


def test_nginx_divert_then_restore_is_byte_identical() -> None:
    line = find_server(UPSTREAM, "10.0.0.11:8080", "t")
    assert (line.down, line.peers_up) == (False, 1)  # .12 only: .13 is backup, .14 down
    down = set_down(UPSTREAM, line.index, True)
    assert "    server 10.0.0.11:8080 weight=2 down;   # web1; keep\n" in down
    assert down.count("\n") == UPSTREAM.count("\n")
    assert find_server(down, "10.0.0.11:8080", "t").down
    assert set_down(down, line.index, False) == UPSTREAM


def test_nginx_server_already_down_reads_as_drained() -> None:
    assert find_server(UPSTREAM, "10.0.0.14:8080", "t").down


@pytest.mark.parametrize("server", ["10.0.0.99:8080", "10.0.0.11:80"])
def test_nginx_server_not_in_the_file_is_a_router_error(server: str) -> None:
    with pytest.raises(RouterError, match="no `server"):
        find_server(UPSTREAM, server, "t")
