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


@pytest.mark.parametrize(
    "line",
    [
        'server "10.0.0.11:8080" weight=2;',
        "server '10.0.0.11:8080';",
        "server 10.0.0.11\\:8080;",
        'server "10.0.0.\\11:8080";',
        'server "10.0.0.11":8080;',
    ],
)
def test_nginx_reads_quoted_and_escaped_server_addresses_as_nginx_does(line: str) -> None:
    text = f"upstream app {{\n    {line}\n    server 10.0.0.12:8080;\n}}\n"
    found = find_server(text, "10.0.0.11:8080", "t")
    assert text[found.start : found.semi + 1] == line
    down = set_down(text, found, True)
    assert find_server(down, "10.0.0.11:8080", "t").ours
    assert set_down(down, find_server(down, "10.0.0.11:8080", "t"), False) == text


def test_nginx_quoted_braces_and_semicolons_are_words_not_syntax() -> None:
    text = (
        'upstream app {\n    server 10.0.0.11:8080;\n    zone "a{b};c" 64k;\n'
        "    server 10.0.0.12:8080;\n}\n"
    )
    assert find_server(text, "10.0.0.11:8080", "t").peers_up == 1


def test_nginx_comment_at_the_end_of_the_file_without_a_newline() -> None:
    text = "upstream app {\n    server 10.0.0.11:8080;\n}\n# server 10.0.0.11:8080;"
    line = find_server(text, "10.0.0.11:8080", "t")
    assert (line.peers_up, line.peers_out) == (0, ())


def test_nginx_server_named_twice_in_upstreams_is_refused_with_the_count() -> None:
    text = (
        "upstream a {\n    server 10.0.0.11:8080;\n}\n"
        "upstream b {\n    server 10.0.0.11:8080 backup;\n}\n"
    )
    with pytest.raises(RouterError, match="2 `server 10.0.0.11:8080 ...;` line"):
        find_server(text, "10.0.0.11:8080", "t")


def test_nginx_server_directive_outside_an_upstream_is_not_the_line() -> None:
    """A `server` directive in another block (mail, stream proxies) or at the top is not ours."""
    text = (
        "server 10.0.0.11:8080;\nmail {\n    server 10.0.0.11:8080;\n}\n"
        "upstream app {\n    server 10.0.0.11:8080;\n    server 10.0.0.12:8080;\n}\n"
    )
    line = find_server(text, "10.0.0.11:8080", "t")
    assert text[line.start :].startswith("server 10.0.0.11:8080;\n    server 10.0.0.12")
    assert line.peers_up == 1


def test_nginx_bare_server_word_and_empty_statements_do_not_break_the_reading() -> None:
    text = (
        "upstream app {\n    server;\n    ;\n    server 10.0.0.11:8080;\n"
        "    server 10.0.0.12:8080;\n}\n"
    )
    line = find_server(text, "10.0.0.11:8080", "t")
    assert (line.peers_up, line.peers_out) == (1, ())


def test_nginx_unbalanced_closing_brace_is_a_router_error() -> None:
    text = "upstream app {\n    server 10.0.0.11:8080;\n}\n}\n"
    with pytest.raises(RouterError, match=f"unbalanced '}}' at byte {text.rindex('}')} "):
        find_server(text, "10.0.0.11:8080", "t")


def test_nginx_other_upstreams_servers_after_ours_are_not_peers() -> None:
    text = (
        "upstream app {\n    server 10.0.0.11:8080;\n}\n"
        "upstream other {\n    server 10.0.0.21:8080;\n    server 10.0.0.22:8080 down;\n}\n"
    )
    line = find_server(text, "10.0.0.11:8080", "t")
    assert (line.peers_up, line.peers_out) == (0, ())


def test_nginx_restore_without_our_whole_mark_leaves_the_text() -> None:
    """Our mark without the `down` before it (an operator removed the word), or a
    `down` with another comment: nothing of theirs is removed."""
    for text in (
        "upstream app {\n    server 10.0.0.11:8080; # wsgi-drain\n}\n",
        "upstream app {\n    server 10.0.0.11:8080 down; # web1\n}\n",
    ):
        line = find_server(text, "10.0.0.11:8080", "t")
        assert set_down(text, line, False) == text


def test_nginx_divert_with_code_after_the_semicolon_breaks_the_line_and_restores_it() -> None:
    text = "upstream app { server 10.0.0.11:8080; server 10.0.0.12:8080; }\n"
    line = find_server(text, "10.0.0.11:8080", "t")
    down = set_down(text, line, True)
    assert down == (
        "upstream app { server 10.0.0.11:8080 down; # wsgi-drain (line break added)\n"
        " server 10.0.0.12:8080; }\n"
    )
    assert set_down(down, find_server(down, "10.0.0.11:8080", "t"), False) == text


def test_nginx_divert_at_the_end_of_the_file_or_before_a_comment_adds_only_the_mark() -> None:
    for text, after in (
        ("upstream app {\n server 10.0.0.11:8080;", " down; # wsgi-drain"),
        ("upstream app {\n server 10.0.0.11:8080;  # web1\n}", " down; # wsgi-drain  # web1\n}"),
    ):
        line = find_server(text, "10.0.0.11:8080", "t")
        assert set_down(text, line, True) == text[: line.semi] + after


@pytest.mark.parametrize(
    ("title", "args"),
    [
        ("/usr/sbin/nginx", []),
        ("/usr/sbin/nginx -s reload -p /srv", ["-s", "reload", "-p", "/srv"]),
        ("/usr/sbin/nginx -T -q -c /x -t", ["-c", "/x"]),
        ("/usr/sbin/nginx -c", ["-c"]),
        ("/usr/sbin/nginx -g daemon on; -V", ["-g", "daemon on;", "-V"]),
        ("/usr/sbin/nginx -g pid /x; -e /e", ["-g", "pid /x;", "-e", "/e"]),
        ("/usr/sbin/nginx -g -c x; -c /y", ["-g", "-c x;", "-c", "/y"]),
        ("/usr/sbin/nginx -g daemon on -c /y", ["-g", "daemon on -c /y"]),
        ("/usr/sbin/nginx -p -t -c /x", ["-p", "-t", "-c", "/x"]),  # a value, not -t
    ],
)
def test_nginx_master_args_rebuild_the_command_line(title: str, args: list[str]) -> None:
    assert master_args(title) == args


def test_nginx_master_exe_of_a_live_link_is_the_link() -> None:
    assert master_exe("/usr/sbin/nginx", "t") == "/usr/sbin/nginx"


@pytest.mark.parametrize(
    "tail",
    ['"never closed', '"never closed \\', "a trailing backslash \\", "a trailing backslash: \\"],
    ids=["open quote", "backslash in an open quote", "backslash", "backslash at an odd offset"],
)
def test_nginx_file_ending_inside_a_word_is_read_to_its_end_without_a_crash(tail: str) -> None:
    # A file cut short (another tool writing it, a stray quote): `nginx -t` would refuse it,
    # but reading it first must not crash: the last word runs to the end of the text and
    # nothing reads past it.  Longer than 256 bytes, so offsets are not small cached ints
    # (there `is` would stand in for `==`).
    text = "# " + "-" * 300 + "\n" + UPSTREAM + tail
    line = find_server(text, "10.0.0.12:8080", "t")
    assert text[line.start : line.semi + 1] == "server 10.0.0.12:8080;"
    assert (line.peers_up, line.down) == (1, False)


def test_nginx_upstream_inside_the_http_block_is_found_in_its_own_block() -> None:
    # The router pointed at a whole nginx.conf: the upstream is nested in `http { }`, and the
    # `server` line belongs to the innermost block around it, the upstream.
    text = (
        "events { }\nhttp {\n    upstream app {\n        server 10.0.0.11:8080;\n"
        "        server 10.0.0.12:8080;\n    }\n    server {\n        listen 80;\n    }\n}\n"
    )
    line = find_server(text, "10.0.0.11:8080", "t")
    assert text[line.start : line.semi + 1] == "server 10.0.0.11:8080;"
    assert line.peers_up == 1


@pytest.mark.parametrize(
    "zone",
    ['zone "a b ;}" 64k;', 'zone "q\\";}" 64k;', "zone 'q\\';}' 64k;", "zone q\\;\\}x 64k;"],
    ids=["blanks in quotes", "escaped double quote", "escaped single quote", "escapes unquoted"],
)
def test_nginx_quoted_words_keep_blanks_and_escaped_quotes_anywhere_in_the_file(
    zone: str,
) -> None:
    # The ";}" inside the quotes (or escaped) is part of the word, so the second server is
    # still in the upstream.  After 300 bytes of comment, so the escapes are far into the file.
    text = (
        "# " + "-" * 300 + "\nupstream app {\n    server 10.0.0.11:8080;\n    " + zone
        + "\n    server 10.0.0.12:8080;\n}\n"
    )  # fmt: skip
    assert find_server(text, "10.0.0.11:8080", "t").peers_up == 1


def test_nginx_peer_whose_host_is_named_backup_or_down_is_judged_by_its_flags() -> None:
    # `server backup;` is a host called "backup" on port 80, in rotation; only the words
    # after the address are flags.
    text = "upstream app {\n    server 10.0.0.11:8080;\n    server backup;\n    server down;\n}\n"
    line = find_server(text, "10.0.0.11:8080", "t")
    assert (line.peers_up, line.peers_out) == (2, ())


def test_nginx_master_args_of_a_command_line_of_hundreds_of_words() -> None:
    # Past 256 words the counts are no longer small cached ints (`is` is not `==` there).
    many = [f"-p /srv/{n}" for n in range(150)]
    args = master_args("/usr/sbin/nginx " + " ".join(many) + " -g daemon on;")
    assert len(args) == 302 and args[-2:] == ["-g", "daemon on;"]
    assert master_args("/usr/sbin/nginx " + " ".join(many) + " -c")[-1] == "-c"


def test_nginx_tokens_with_no_blank_between_them_are_read_whole() -> None:
    text = "upstream app{server 10.0.0.11:8080;server 10.0.0.12:8080;}"
    line = find_server(text, "10.0.0.11:8080", "t")
    assert text[line.start : line.semi + 1] == "server 10.0.0.11:8080;"
    assert line.peers_up == 1


def test_nginx_file_cut_after_an_escaped_semicolon_has_no_directive_there() -> None:
    # `\;` is a word's character, not the end of a directive, even as the file's last bytes.
    text = "upstream app {\n    server 10.0.0.11:8080;\n    server 10.0.0.12:8080 weight=1\\;"
    assert find_server(text, "10.0.0.11:8080", "t").peers_up == 0


def test_nginx_upstream_directives_other_than_server_are_not_peers() -> None:
    # `keepalive`, `hash`, `least_conn` sort before "server": none of them is a server.
    text = (
        "upstream app {\n    hash $request_uri consistent;\n    keepalive 16;\n    least_conn;\n"
        "    server 10.0.0.11:8080;\n    server 10.0.0.12:8080;\n}\n"
    )
    line = find_server(text, "10.0.0.11:8080", "t")
    assert (line.peers_up, line.peers_out) == (1, ())


def test_nginx_divert_of_a_server_right_before_the_closing_brace_keeps_the_brace() -> None:
    text = "upstream app {\n    server 10.0.0.12:8080;\n    server 10.0.0.11:8080;}\n"
    down = set_down(text, find_server(text, "10.0.0.11:8080", "t"), True)
    assert down == (
        "upstream app {\n    server 10.0.0.12:8080;\n"
        "    server 10.0.0.11:8080 down; # wsgi-drain (line break added)\n}\n"
    )
    assert set_down(down, find_server(down, "10.0.0.11:8080", "t"), False) == text


def test_nginx_divert_of_a_line_that_ends_at_its_newline_adds_only_the_mark() -> None:
    text = "upstream app {\n    server 10.0.0.11:8080;\n    server 10.0.0.12:8080;\n}\n"
    down = set_down(text, find_server(text, "10.0.0.11:8080", "t"), True)
    assert down == text.replace("10.0.0.11:8080;\n", "10.0.0.11:8080 down; # wsgi-drain\n")
