"""The nginx router's spec and its one-line edit of an upstream file."""

from __future__ import annotations

from pathlib import Path

import pytest

from wsgi_drain.errors import ConfigError, RouterError
from wsgi_drain.routers.nginx import (
    DEFAULT_PIDFILE,
    find_server,
    master_args,
    master_exe,
    parse_target,
    set_down,
)

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
    down = set_down(UPSTREAM, line, True)
    assert "    server 10.0.0.11:8080 weight=2 down; # wsgi-drain   # web1; keep\n" in down
    assert down.count("\n") == UPSTREAM.count("\n")
    marked = find_server(down, "10.0.0.11:8080", "t")
    assert marked.down and marked.ours
    assert set_down(down, marked, False) == UPSTREAM


def test_nginx_operator_state_unmarked_down_is_the_operators_and_never_removed() -> None:
    line = find_server(UPSTREAM, "10.0.0.14:8080", "t")
    assert line.down and not line.ours
    assert set_down(UPSTREAM, line, False) == UPSTREAM


@pytest.mark.parametrize("server", ["10.0.0.99:8080", "10.0.0.11:80"])
def test_nginx_server_not_in_the_file_is_a_router_error(server: str) -> None:
    with pytest.raises(RouterError, match="no `server"):
        find_server(UPSTREAM, server, "t")


def test_nginx_master_args_keep_debian_g_value_whole() -> None:
    title = "/usr/sbin/nginx -p /tmp/p -c /tmp/p/n.conf -g daemon on; master_process on;"
    assert master_args(title) == [
        "-p",
        "/tmp/p",
        "-c",
        "/tmp/p/n.conf",
        "-g",
        "daemon on; master_process on;",
    ]
    assert master_args("/usr/sbin/nginx -g daemon on; -c /x -t") == ["-g", "daemon on;", "-c", "/x"]


def test_nginx_master_exe_deleted_after_upgrade(tmp_path: Path) -> None:
    exe = tmp_path / "nginx"
    exe.write_text("")
    assert master_exe(f"{exe} (deleted)", "t") == str(exe)
    with pytest.raises(RouterError, match="restart nginx"):
        master_exe(f"{tmp_path}/gone (deleted)", "t")


def test_nginx_peers_out_names_the_other_servers_down_or_backup() -> None:
    line = find_server(UPSTREAM, "10.0.0.12:8080", "t")
    assert line.peers_up == 1
    assert line.peers_out == ("[2001:db8::13]:8080 (backup)", "10.0.0.14:8080 (maint)")
    other = find_server(UPSTREAM, "10.0.0.21:8080", "t")
    assert (other.peers_up, other.peers_out) == (0, ())


@pytest.mark.parametrize(
    "text",
    [
        "upstream app\n{\n    server 10.0.0.11:8080;\n    server 10.0.0.12:8080;\n}\n",
        "upstream app { server 10.0.0.11:8080; server 10.0.0.12:8080; }\n",
        "upstream app {\n  server 10.0.0.11:8080 ;\n  server 10.0.0.12:8080;\n}\n"
        "server {\n  listen 80;\n  location / { proxy_pass http://app; }\n}\n",
        'upstream app {\n  server 10.0.0.11:8080 weight=3\n     max_fails=2;  # "x{"\n'
        "  server 10.0.0.12:8080;\n}\n",
    ],
)
def test_nginx_parses_any_brace_style_and_restores_byte_identical(text: str) -> None:
    line = find_server(text, "10.0.0.11:8080", "t")
    assert (line.down, line.peers_up) == (False, 1)
    down = set_down(text, line, True)
    marked = find_server(down, "10.0.0.11:8080", "t")
    assert marked.ours
    assert find_server(down, "10.0.0.12:8080", "t").peers_out == ("10.0.0.11:8080 (drain)",)
    assert set_down(down, marked, False) == text
