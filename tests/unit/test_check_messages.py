"""The command line's messages as a new user meets them (issue 22), one test each."""

from __future__ import annotations

import http.server
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from wsgi_drain import config, errors
from wsgi_drain._compat import tomllib
from wsgi_drain.cli import cli
from wsgi_drain.errors import ConfigError, RouterError
from wsgi_drain.routers.haproxy import HAProxyRouter, parse_target

SOURCE = Path(__file__).resolve().parents[2] / "wsgi_drain"


def _runner() -> CliRunner:
    # click 8.1 (the newest on Python 3.9) mixes stderr into stdout unless told
    # not to; 8.2 keeps them apart and no longer takes the argument.
    apart: dict[str, Any] = {"mix_stderr": False}
    try:
        return CliRunner(**apart)
    except TypeError:
        return CliRunner()


def invoke(*args: str) -> tuple[int, str, str]:
    result = _runner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_check_messages_an_error_is_printed_once_on_stdout(tmp_path: Path) -> None:
    code, out, err = invoke("drain", "--group", "g", "--state-dir", str(tmp_path),
                            "--router", "haproxy:/nonexistent/admin.sock:be_app/web1")  # fmt: skip
    assert code == 4
    assert out.startswith("wsgi-drain: ROUTER - haproxy /nonexistent/admin.sock be_app/web1: ")
    assert out.count("/nonexistent/admin.sock be_app/web1:") == 1 and "error" not in err, err


def test_check_messages_restart_error_is_in_the_verdict_only(tmp_path: Path) -> None:
    code, out, err = invoke("restart", "--group", "g", "-q", "--state-dir", str(tmp_path),
                            "--apache-pidfile", str(tmp_path / "none.pid"))  # fmt: skip
    assert code == 3
    assert out.startswith("wsgi-drain: NOT_FOUND - Apache pid file ")
    assert "none.pid" not in err, err


def test_check_messages_bad_router_is_a_usage_error_before_apache_and_its_warnings(
    tmp_path: Path,
) -> None:
    # Apache would be looked for at a pid file that does not exist (exit 3) and
    # discovery would print its progress and trap warnings on stderr: neither.
    code, out, err = invoke("restart", "--group", "g", "--state-dir", str(tmp_path),
                            "--apache-pidfile", str(tmp_path / "none.pid"),
                            "--router", "haproxy:/run/haproxy/admin.sock")  # fmt: skip
    assert code == 2, out
    assert out.startswith("wsgi-drain: USAGE - invalid HAProxy target")
    assert err == ""


def test_check_messages_haproxy_socket_without_server_says_what_is_missing() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_target("/path/admin.sock")
    message = str(raised.value)
    assert "no ':BACKEND/SERVER' after the socket '/path/admin.sock'" in message
    assert "no socket before" not in message


@pytest.mark.parametrize(
    ("kind", "wanted"),
    [("health-file", "the file whose presence fails the health URL"),
     ("command", "the program and its arguments")],
)  # fmt: skip
def test_check_messages_router_kind_with_nothing_after_it(kind: str, wanted: str) -> None:
    code, out, _err = invoke("drain", "--group", "g", "--router", f"{kind}:")
    assert code == 2
    assert f"router '{kind}:': nothing after '{kind}:'; give {wanted}, e.g. {kind}:" in out


@pytest.fixture
def http_port() -> Iterator[int]:
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_check_messages_http_port_as_stats_socket_says_so(http_port: int) -> None:
    router = HAProxyRouter(parse_target(f"127.0.0.1:{http_port}:be_app/web1"))
    with pytest.raises(RouterError) as raised:
        router.state()
    message = str(raised.value)
    assert f"127.0.0.1:{http_port} answered in HTTP (an HTML page)" in message
    assert "not HAProxy's runtime API" in message and "stats socket" in message
    assert "<html" not in message.lower() and "\n" not in message


def test_check_messages_drain_and_undrain_accept_quiet(tmp_path: Path) -> None:
    for command in ("drain", "undrain"):
        code, out, err = invoke(command, "-q", "--group", "g", "--state-dir", str(tmp_path),
                                "--router", "haproxy:/nonexistent/admin.sock:be/web1")  # fmt: skip
        assert code == 4, out + err
        assert "No such option" not in out + err
        # The verdict of a failed drain/undrain is on stdout, as a success's is.
        assert out.startswith("wsgi-drain: ROUTER - "), out


def _exit_statuses(help_text: str) -> set[int]:
    section = help_text.split("Exit statuses:", 1)[1].split("\n\n", 1)[0]
    return {int(n) for n in re.findall(r"(?<![\w.-])(\d+)\s+[A-Za-z-]", section)}


@pytest.mark.parametrize("command", sorted(errors.COMMAND_EXITS))
def test_check_messages_help_lists_every_exit_status_of_the_table(command: str) -> None:
    code, out, _err = invoke(command, "--help")
    assert code == 0
    assert _exit_statuses(out) == {int(s) for s in errors.COMMAND_EXITS[command]}, out


def test_check_messages_status_help_names_the_config_variable() -> None:
    _code, out, _err = invoke("status", "--help")
    assert "$WSGI_DRAIN_CONFIG" in " ".join(out.split())


def test_check_messages_toml_names_with_colon_or_dot_are_printed_quoted() -> None:
    data = {"groups": {"127.0.0.1:8001": {}}}
    with pytest.raises(ConfigError) as raised:
        config.resolve("127.0.0.1:8000", {}, data, "f", lambda s: False)
    message = str(raised.value)
    assert '[groups."127.0.0.1:8000"]' in message and '[groups."127.0.0.1:8001"]' in message
    # What is printed pastes into a file as valid TOML naming the same group.
    table = re.findall(r"\[(groups\.[^\]]+)\]", message)[1]
    assert tomllib.loads(f"[{table}]\nmode = 'drain'\n")["groups"] == {
        "127.0.0.1:8001": {"mode": "drain"}
    }
    assert config.table_name("myapp") == "groups.myapp"


def test_check_messages_group_table_misspelt_says_did_you_mean_groups() -> None:
    data = tomllib.loads('[group."x"]\nmode = "drain"\n')
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) group \('group': did you mean "
                       r"groups\?\)"):  # fmt: skip
        config.resolve("x", {}, data, "f")


def test_check_messages_no_answered_failed_nor_doubled_quote_possessive() -> None:
    # "answered failed after 2 ms" and "'127.0.0.1:18310''s processes", wherever written.
    for path in SOURCE.rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"answered \"\s*f?\"\{[^}]*describe\(\)", text), path
        assert "!r}'s" not in text, path


def test_check_messages_http_status_line_as_stats_socket_says_so() -> None:
    # HAProxy's own HTTP frontends answer a non-HTTP line with a status line.
    import socketserver

    class Answer(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            self.rfile.readline()
            self.wfile.write(
                b"HTTP/1.1 400 Bad request\r\nContent-length: 90\r\n\r\n<html>x</html>"
            )

    with socketserver.TCPServer(("127.0.0.1", 0), Answer) as server:
        thread = threading.Thread(target=server.handle_request, daemon=True)
        thread.start()
        port = server.server_address[1]
        with pytest.raises(RouterError, match=r"answered in HTTP \('HTTP/1.1 400 Bad request'\)"):
            HAProxyRouter(parse_target(f"127.0.0.1:{port}:be_app/web1")).state()
        thread.join()


@pytest.mark.parametrize("command", ["restart", "drain"])
def test_check_messages_health_file_without_lb_detect_is_refused_before_discovery(
    command: str, tmp_path: Path
) -> None:
    code, out, err = invoke(command, "--group", "g", "--state-dir", str(tmp_path),
                            "--apache-pidfile", str(tmp_path / "none.pid"),
                            "--router", f"health-file:{tmp_path / 'down'}")  # fmt: skip
    assert code == 2, out
    assert "give --lb-detect SECONDS" in out and err == ""
    assert not (tmp_path / "down").exists()
