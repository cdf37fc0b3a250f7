"""The probe's own HTTP/1.x reader (`http1.py`) on answers written byte for byte.

The health probe no longer uses http.client (issue 22: its imports cost every
cron run), so what http.client handled for it is shown here on a real socket:
framing by chunks, by length and by the connection's end, interim answers,
repeated and folded headers, malformed answers, and the request it sends.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from tests.unit.servers import RecordingServer
from wsgi_drain.deadline import Deadline
from wsgi_drain.health import MAX_BODY, probe
from wsgi_drain.http1 import get, host_header


class RawServer(RecordingServer):
    """Answers each connection with `answer` as given, after reading the request."""

    def __init__(self) -> None:
        self.answer = b""
        # After the answer, the connection is held open until the test ends (as a
        # server that ignores `Connection: close`): only the framing ends the read.
        self.keep_open = False
        self.release = threading.Event()
        listener = socket.create_server(("127.0.0.1", 0))
        self.port = listener.getsockname()[1]
        super().__init__(listener, lambda data: b"\r\n\r\n" in data, self._reply)

    def _reply(self, conn: socket.socket) -> None:
        # The probe may stop reading and close: what some tests want.
        with contextlib.suppress(OSError):
            conn.sendall(self.answer)
            if self.keep_open:
                self.release.wait(10)

    def url(self, path: str = "/health") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def raw() -> Iterator[RawServer]:
    server = RawServer()
    yield server
    server.release.set()
    server.listener.close()


def test_http1_probe_sends_one_get_with_host_identity_and_close(raw: RawServer) -> None:
    raw.answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    assert probe(raw.url("/health?full=1"), 2).ok
    assert raw.requests[-1] == (
        b"GET /health?full=1 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAccept-Encoding: identity\r\n"
        b"User-Agent: wsgi-drain\r\nConnection: close\r\n\r\n" % raw.port
    )


def test_http1_probe_reads_a_chunked_body_within_the_bound(raw: RawServer) -> None:
    raw.answer = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    result = probe(raw.url(), 2)
    assert result.ok and result.body_read == 5
    big = b"8000\r\n" + b"z" * 0x8000 + b"\r\n"
    raw.answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + big * 4 + b"0\r\n\r\n"
    assert probe(raw.url(), 5).body_read == MAX_BODY
    # A chunk that crosses the bound after a first one: cut at the bound too.
    big = b"10000\r\n" + b"z" * 0x10000 + b"\r\n"
    raw.answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n" + big
    assert probe(raw.url(), 5).body_read == MAX_BODY
    # One chunk far past the bound: its data is not read on as a line.
    huge = b"30000\r\n" + b"z" * 0x30000 + b"\r\n0\r\n\r\n"
    raw.answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + huge
    result = probe(raw.url(), 5)
    assert result.ok and result.body_read == MAX_BODY, result.error


def test_http1_probe_a_broken_chunked_body_is_a_failure(raw: RawServer) -> None:
    raw.answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n"
    result = probe(raw.url(), 2)
    assert not result.ok and result.status is None and "chunk" in (result.error or "")
    raw.answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc"
    assert not probe(raw.url(), 2).ok


def test_http1_probe_reads_to_the_end_without_a_length(raw: RawServer) -> None:
    raw.answer = b"HTTP/1.0 200 OK\r\n\r\n" + b"q" * 1000
    result = probe(raw.url(), 2)
    assert result.ok and result.body_read == 1000


def test_http1_probe_skips_interim_answers_to_the_final_one(raw: RawServer) -> None:
    raw.answer = (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"
    )
    result = probe(raw.url(), 2)
    assert not result.ok and result.status == 503


def test_http1_probe_headers_are_caseless_and_a_repeated_pid_is_not_a_pid(raw: RawServer) -> None:
    raw.answer = b"HTTP/1.1 200 OK\r\nx-pid: 4242\r\ncontent-length: 0\r\n\r\n"
    assert probe(raw.url(), 2).served_by == 4242
    raw.answer = b"HTTP/1.1 200 OK\r\nX-Pid: 1\r\nX-Pid: 2\r\nContent-Length: 0\r\n\r\n"
    assert probe(raw.url(), 2).served_by is None
    raw.answer = b"HTTP/1.1 301 Moved\r\nLocation: /a\r\n  /b\r\nContent-Length: 0\r\n\r\n"
    moved = probe(raw.url(), 2)
    assert not moved.ok and moved.location == "/a /b"


@pytest.mark.parametrize(
    "answer",
    [b"", b"garbage\r\n\r\n", b"HTTP/1.1\r\n\r\n", b"HTTP/2 200\r\n\r\n", b"HTTP/1.1 20 OK\r\n\r\n",
     b"HTTP/1.1 099 Low\r\n\r\n", b"HTTP/1.1 0200 OK\r\n\r\n",
     b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 101 + b"\r\n",
     b"HTTP/1.1 200 OK\r\nX: " + b"y" * 70000 + b"\r\n\r\n"],
)  # fmt: skip
def test_http1_probe_a_malformed_answer_is_a_failure_not_an_exception(
    raw: RawServer, answer: bytes
) -> None:
    raw.answer = answer
    result = probe(raw.url(), 2)
    assert not result.ok and result.status is None and result.error


def test_http1_probe_refuses_a_control_character_before_sending(raw: RawServer) -> None:
    raw.answer = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    result = probe(raw.url("/health"), 2, host="app.example\r\nX-Evil: 1")
    assert not result.ok and result.error and "invalid header value" in result.error
    assert probe(raw.url("/a%20b"), 2).ok  # an escaped space is fine
    # Only the second probe reached the server.
    assert len(raw.requests) == 1 and raw.requests[0].startswith(b"GET /a%20b HTTP/1.1\r\n")


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n", 101),
        (b"HTTP/1.1 204 No Content\r\n\r\n", 204),
        (b"HTTP/1.1 304 Not Modified\r\n\r\n", 304),
    ],
)
def test_http1_probe_reads_no_body_after_a_101_204_or_304(
    raw: RawServer, answer: bytes, status: int
) -> None:
    """No length and a connection kept open: the status alone says there is no
    body, so the answer is taken at once (reading on would wait out the probe)."""
    raw.answer, raw.keep_open = answer, True
    result = probe(raw.url(), 2)
    assert (result.status, result.ok, result.body_read) == (status, status == 204, 0)
    assert result.error is None


def test_http1_probe_takes_lines_up_to_64_kib_and_refuses_longer(raw: RawServer) -> None:
    head = b"HTTP/1.1 200 OK\r\n"
    end = b"Content-Length: 0\r\n\r\n"
    # "X: " + value + CRLF: exactly MAX_LINE (65536) bytes, then one more.
    raw.answer = head + b"X: " + b"y" * (65536 - 5) + b"\r\n" + end
    assert probe(raw.url(), 2).ok
    raw.answer = head + b"X: " + b"y" * (65536 - 4) + b"\r\n" + end
    result = probe(raw.url(), 2)
    assert not result.ok and "longer than 65536 bytes" in (result.error or "")


def test_http1_probe_takes_100_headers_and_refuses_101(raw: RawServer) -> None:
    raw.answer = b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 99 + b"Content-Length: 0\r\n\r\n"
    assert probe(raw.url(), 2).ok
    raw.answer = b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 100 + b"Content-Length: 0\r\n\r\n"
    result = probe(raw.url(), 2)
    assert not result.ok and "more than 100 headers" in (result.error or "")


def test_http1_probe_chunk_sizes_are_hexadecimal(raw: RawServer) -> None:
    # 0x1A is 26 bytes (not 27, as base 17 would read it), then 0x10 is 16.
    raw.answer = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"1A\r\n" + b"a" * 26 + b"\r\n10\r\n" + b"b" * 16 + b"\r\n0\r\n\r\n"
    )
    result = probe(raw.url(), 2)
    assert result.ok and result.body_read == 26 + 16


@pytest.mark.parametrize("size", [b"z" * 30, b"-1", b"-" + b"1" * 29])
def test_http1_probe_a_bad_chunk_size_is_quoted_to_20_bytes(raw: RawServer, size: bytes) -> None:
    """Not hexadecimal, or negative: refused, with the size's first 20 bytes."""
    raw.answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + size + b"\r\n"
    result = probe(raw.url(), 2)
    assert result.error == f"bad chunk size {size[:20]!r}"


@pytest.mark.parametrize(
    "line", [b"garbage " + b"x" * 100, b"HTTP/1.1 20 " + b"x" * 100, b"HTTP/1.1 2x0 OK"]
)
def test_http1_probe_a_bad_status_line_is_quoted_to_80_bytes(raw: RawServer, line: bytes) -> None:
    raw.answer = line + b"\r\n\r\n"
    result = probe(raw.url(), 2)
    sent = line + b"\r\n"
    assert result.error == f"not an HTTP status line: {sent[:80]!r}"


def test_http1_probe_tries_the_next_address_after_a_refused_one(
    raw: RawServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name with two addresses, the first refusing (nothing listens there): the
    second is connected to, as http.client's create_connection did."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    raw.answer = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    tcp = (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "")
    addresses = [(*tcp, ("127.0.0.1", closed)), (*tcp, ("127.0.0.1", raw.port))]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args: addresses)
    result = probe(f"http://app.example:{raw.port}/health", 2)
    assert result.ok, result.error
    assert len(raw.requests) == 1


def test_http1_probe_a_refused_connection_says_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    result = probe(f"http://127.0.0.1:{closed}/health", 2)
    assert not result.ok and "Connection refused" in (result.error or ""), result.error


def test_http1_probe_reads_an_answer_whose_lines_end_in_a_bare_lf(raw: RawServer) -> None:
    raw.answer = b"HTTP/1.0 200 OK\nContent-Length: 2\nX-Pid: 42\n\nok"
    result = probe(raw.url(), 2)
    assert (result.ok, result.served_by, result.body_read) == (True, 42, 2)


def test_http1_probe_a_64_kib_line_cut_by_the_connections_end_is_refused(
    raw: RawServer,
) -> None:
    """MAX_LINE bytes with no line end yet are too long, even if the server then closes."""
    raw.answer = b"HTTP/1.1 200 OK\r\nX: " + b"y" * (65536 - 3)
    result = probe(raw.url(), 2)
    assert not result.ok and "longer than 65536 bytes" in (result.error or "")


def test_http1_probe_status_codes_run_from_100_to_999(raw: RawServer) -> None:
    raw.answer = b"HTTP/1.1 999 Odd\r\nContent-Length: 0\r\n\r\n"
    result = probe(raw.url(), 2)
    assert (result.status, result.ok) == (999, False)


def test_http1_probe_refuses_a_space_in_the_path_before_sending(raw: RawServer) -> None:
    raw.answer = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    for path in ("/a b", "/a\x01b", "/a\x7fb"):
        result = probe(raw.url(path), 2)
        assert not result.ok and "can't contain control characters or spaces" in (
            result.error or ""
        ), path
    assert raw.requests == []


def test_http1_probe_of_a_non_ascii_name_resolves_it_and_sends_its_idna_host(
    raw: RawServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An internationalized name: resolved as given (the resolver applies IDNA) and
    sent as its ASCII form in the Host header (the resolver here answers 127.0.0.1)."""
    asked: list[object] = []
    real = socket.getaddrinfo

    def resolve(host: object, port: int, *args: object) -> list[tuple[Any, ...]]:
        asked.append(host)
        return real("127.0.0.1", port, socket.AF_INET, socket.SOCK_STREAM)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    raw.answer = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    result = probe(f"http://b\u00fccher.example:{raw.port}/health", 2)
    assert result.ok, result.error
    assert asked == ["b\u00fccher.example"]
    assert b"\r\nHost: xn--bcher-kva.example:%d\r\n" % raw.port in raw.requests[0]


@pytest.mark.parametrize("status", [200, 203, 302, 503])
def test_http1_probe_reads_the_body_of_any_final_answer_but_101_204_304(
    raw: RawServer, status: int
) -> None:
    raw.answer = b"HTTP/1.1 %d X\r\nContent-Length: 4\r\n\r\nbody" % status
    result = probe(raw.url(), 2)
    assert (result.status, result.body_read) == (status, 4)


def test_http1_probe_an_unknown_protocol_is_named(raw: RawServer) -> None:
    raw.answer = b"HTTP/2 200\r\n\r\n"
    assert probe(raw.url(), 2).error == "unknown protocol 'HTTP/2'"


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://app.example/h", "app.example"),
        ("https://app.example:443/h", "app.example"),  # the port as parsed from the URL
        ("http://app.example:80/h", "app.example"),
        ("http://app.example:443/h", "app.example:443"),
        ("https://app.example:80/h", "app.example:80"),
        ("http://[::1]:8080/h", "[::1]:8080"),
        ("http://[::1]/h", "[::1]"),
    ],
)
def test_http1_host_header_names_the_port_unless_the_schemes_own(url: str, host: str) -> None:
    parts = urllib.parse.urlsplit(url)
    default = {"http": 80, "https": 443}[parts.scheme]
    assert parts.hostname is not None
    assert host_header(parts.hostname, parts.port or default, default) == host


def test_http1_probe_frames_by_length_unless_the_coding_is_chunked(raw: RawServer) -> None:
    """Only `chunked` is read as chunks: another coding's body is framed by its length."""
    raw.answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\nContent-Length: 4\r\n\r\nbody"
    result = probe(raw.url(), 2)
    assert result.ok and result.body_read == 4, result.error


def test_http1_get_with_its_time_run_out_sends_and_reads_nothing() -> None:
    """Even with a whole answer waiting in the socket: past the deadline is too late."""
    ours, server = socket.socketpair()
    with ours, server:
        server.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        with pytest.raises(TimeoutError, match="the probe's time ran out"):
            get(ours, b"GET / HTTP/1.1\r\n\r\n", Deadline(0), MAX_BODY)
        server.setblocking(False)
        with pytest.raises(BlockingIOError):
            server.recv(100)  # the request was never sent


def test_http1_probe_takes_a_last_header_cut_by_the_connections_end(raw: RawServer) -> None:
    """No blank line after the headers: the connection's end ends the last one."""
    raw.answer = b"HTTP/1.0 200 OK\r\nX-Pid: 5"
    result = probe(raw.url(), 2)
    assert (result.ok, result.served_by) == (True, 5), result.error


def test_http1_probe_skips_a_header_line_without_a_colon(raw: RawServer) -> None:
    raw.answer = b"HTTP/1.1 200 OK\r\nnonsense\r\nX-Pid: 7\r\nContent-Length: 0\r\n\r\n"
    result = probe(raw.url(), 2)
    assert (result.ok, result.served_by) == (True, 7), result.error


def test_http1_probe_refuses_a_path_that_is_not_ascii_as_http_client_did(raw: RawServer) -> None:
    result = probe(raw.url("/caf\u00e9"), 2)
    assert not result.ok and "'ascii' codec can't encode" in (result.error or "")
    assert raw.requests == []
