"""The probe's own HTTP/1.x reader (`http1.py`) on answers written byte for byte.

The health probe no longer uses http.client (issue 22: its imports cost every
cron run), so what http.client handled for it is shown here on a real socket:
framing by chunks, by length and by the connection's end, interim answers,
repeated and folded headers, malformed answers, and the request it sends.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import pytest

from tests.unit.servers import RecordingServer
from wsgi_drain.health import MAX_BODY, probe


class RawServer(RecordingServer):
    """Answers each connection with `answer` as given, after reading the request."""

    def __init__(self) -> None:
        self.answer = b""
        listener = socket.create_server(("127.0.0.1", 0))
        self.port = listener.getsockname()[1]
        super().__init__(listener, lambda data: b"\r\n\r\n" in data, self._reply)

    def _reply(self, conn: socket.socket) -> None:
        # The probe may stop reading and close: what some tests want.
        with contextlib.suppress(OSError):
            conn.sendall(self.answer)

    def url(self, path: str = "/health") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def raw() -> Iterator[RawServer]:
    server = RawServer()
    yield server
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
    [b"", b"garbage\r\n\r\n", b"HTTP/2 200\r\n\r\n", b"HTTP/1.1 20 OK\r\n\r\n",
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
