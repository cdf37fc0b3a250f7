"""The health probe against real servers on 127.0.0.1 (threads in this process).

Each case is a review finding: 3xx counted as healthy, the timeout applied per
socket read (a dripped body took 9.6 s against 1 s), an unbounded body, and
https with no Host, SNI or CA option for a name-based virtual host.
"""

from __future__ import annotations

import http.server
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from wsgi_drain.health import MAX_BODY, Probe, probe


class Handler(http.server.BaseHTTPRequestHandler):
    seen_hosts: ClassVar[list[str]] = []
    sent: ClassVar[list[int]] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        Handler.seen_hosts.append(self.headers.get("Host", ""))
        if self.path == "/ok":
            self._answer(200, b"ok\n")
        elif self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/login")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/error":
            self._answer(500, b"boom\n")
        elif self.path == "/drip":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            try:
                for _ in range(100):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    threading.Event().wait(0.3)
            except OSError:
                pass  # the probe gave up: what we want
        elif self.path == "/huge":
            size = 10 * 1024 * 1024
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            sent = 0
            try:
                while sent < size:
                    self.wfile.write(b"y" * 65536)
                    sent += 65536
            except OSError:
                pass
            Handler.sent.append(sent)

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(http.server.ThreadingHTTPServer):
    # A handler still dripping bytes must not hold the test up at close.
    daemon_threads = True
    block_on_close = False


def serve(server: http.server.ThreadingHTTPServer) -> Iterator[str]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def http_server() -> Iterator[str]:
    Handler.seen_hosts.clear()
    Handler.sent.clear()
    yield from serve(Server(("127.0.0.1", 0), Handler))


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for app.example (the CA is the certificate itself)."""
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=app.example", "-addext", "subjectAltName=DNS:app.example",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def https_server(certificate: tuple[Path, Path]) -> Iterator[tuple[str, list[str]]]:
    cert, key = certificate
    names: list[str] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    def remember(sock: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        names.append(name or "")

    context.sni_callback = remember  # type: ignore[assignment]
    server = Server(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    Handler.seen_hosts.clear()
    for address in serve(server):
        yield address, names


def test_health_probe_counts_only_2xx_as_healthy(http_server: str) -> None:
    assert probe(f"http://{http_server}/ok", 2).ok
    redirect = probe(f"http://{http_server}/redirect", 2)
    assert not redirect.ok and redirect.status == 302
    assert "redirect to /login, not followed" in redirect.describe()
    assert not probe(f"http://{http_server}/error", 2).ok


def test_health_probe_timeout_bounds_a_dripped_body(http_server: str) -> None:
    result = probe(f"http://{http_server}/drip", 1.0)
    # 100 bytes at one per 0.3 s would take 30 s: the probe must give up.
    assert not result.ok and result.status is None
    assert result.error is not None and "timed out" in result.error


def test_health_probe_body_bound_reads_64_kib_and_no_more(http_server: str) -> None:
    result = probe(f"http://{http_server}/huge", 5)
    assert result.ok
    # Of a 10 MiB body exactly 64 KiB were read, then the probe closed.
    assert result.body_read == 64 * 1024 == MAX_BODY
    # The server could not send its 10 MiB: the probe stopped reading and closed.
    deadline = threading.Event()
    for _ in range(50):
        if Handler.sent:
            break
        deadline.wait(0.1)
    assert Handler.sent and Handler.sent[0] < 10 * 1024 * 1024


def test_health_probe_body_bound_reads_a_small_body_whole(http_server: str) -> None:
    assert probe(f"http://{http_server}/ok", 2).body_read == len(b"ok\n")


def test_health_probe_sends_the_name_based_vhost_host(http_server: str) -> None:
    assert probe(f"http://{http_server}/ok", 2, host="app.example").ok
    assert Handler.seen_hosts[-1] == "app.example"


def test_health_probe_https_verifies_with_the_given_ca_and_sni(
    https_server: tuple[str, list[str]], certificate: tuple[Path, Path]
) -> None:
    address, names = https_server
    url = f"https://{address}/ok"
    unverified = probe(url, 3, host="app.example")
    assert not unverified.ok and "certificate" in (unverified.error or "").lower()
    verified = probe(url, 3, host="app.example", ca=certificate[0])
    assert verified.ok, verified.error
    assert names[-1] == "app.example" and Handler.seen_hosts[-1] == "app.example"
    wrong_name = probe(url, 3, host="other.example", ca=certificate[0])
    assert not wrong_name.ok
    assert probe(url, 3, insecure=True).ok


def test_health_probe_refused_connection_is_a_result_not_an_exception() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = probe(f"http://127.0.0.1:{port}/", 1)
    assert not result.ok and result.error


def test_health_probe_said_reads_as_english_for_an_answer_and_for_a_failure() -> None:
    """Not "answered failed after 2 ms" (issue 22): a failure did not answer."""
    answer = Probe("http://127.0.0.1:1/health", ok=False, status=503, latency=0.003)
    failure = Probe("http://127.0.0.1:1/health", ok=False, status=None, latency=0.002,
                    error="connection refused")  # fmt: skip
    assert answer.said() == "answered HTTP 503 in 3 ms"
    assert failure.said() == "failed after 2 ms: connection refused"
