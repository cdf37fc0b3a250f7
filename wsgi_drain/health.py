"""HTTP health probes sent straight to Apache (never through the router).

One probe is one GET, bounded as a whole: connect, request, headers and body
together get `timeout` seconds (each socket operation gets what remains, and
a timer shuts the socket at the deadline, so a server that drips bytes cannot
stretch it).  At most MAX_BODY bytes of the body are read.  Healthy means
HTTP 2xx; a redirect is not followed and is not healthy.

Name-based virtual hosts: the probe connects to the URL's address but may
send another Host header (`host`), which for https is also the TLS server
name (SNI) and the name the certificate is checked against.  `ca` is a CA
bundle to verify with instead of the system's; `insecure` skips verification.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wsgi_drain.deadline import Deadline
from wsgi_drain.errors import ConfigError

if TYPE_CHECKING:
    from wsgi_drain.config import Settings

MAX_BODY = 64 * 1024
_CHUNK = 8192


@dataclass(frozen=True)
class Probe:
    """One probe's outcome: `ok` means HTTP 2xx within the timeout."""

    url: str
    ok: bool
    status: int | None
    latency: float
    error: str | None = None
    served_by: int | None = None  # X-Pid header, when the app sends one
    location: str | None = None  # a redirect's target (not followed)
    body_read: int = 0  # bytes of the body read: at most MAX_BODY, the rest is left unread

    def describe(self) -> str:
        if self.status is not None:
            text = f"HTTP {self.status} in {self.latency * 1000:.0f} ms"
            if self.location:
                text += f" (redirect to {self.location}, not followed: not healthy)"
            return text
        return f"failed after {self.latency * 1000:.0f} ms: {self.error}"

    def said(self) -> str:
        """The probe's outcome after the URL: "answered HTTP 503 in 3 ms", "failed after ..."."""
        return f"answered {self.describe()}" if self.status is not None else self.describe()


def validate_url(url: str) -> str:
    """Reject anything but an absolute http(s) URL, with the fix in the message."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"health URL {url!r} must be an absolute http:// or https:// URL on Apache itself, "
            "e.g. http://127.0.0.1:8080/health"
        )
    return url


def validate_ca(ca: Path | None) -> None:
    if ca is not None and not ca.is_file():
        raise ConfigError(f"--health-ca {ca}: no such file (a PEM CA bundle is expected)")


class _Conn(http.client.HTTPConnection):
    """HTTP or HTTPS to the URL's address, with a TLS server name of our choosing."""

    def __init__(
        self,
        host: str,
        port: int | None,
        timeout: float,
        context: ssl.SSLContext | None,
        server_name: str,
    ) -> None:
        default = http.client.HTTPS_PORT if context is not None else http.client.HTTP_PORT
        super().__init__(host, port or default, timeout=timeout)
        self._context = context
        self._server_name = server_name

    def connect(self) -> None:
        super().connect()
        if self._context is not None:
            self.sock = self._context.wrap_socket(self.sock, server_hostname=self._server_name)


def _context(ca: Path | None, insecure: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca) if ca is not None else None)
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def probe(
    url: str,
    timeout: float = 5.0,
    *,
    host: str | None = None,
    ca: Path | None = None,
    insecure: bool = False,
) -> Probe:
    """GET `url` once, within `timeout` in all; never raises for network errors."""
    parts = urllib.parse.urlsplit(url)
    https = parts.scheme == "https"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    start = time.monotonic()
    deadline = Deadline(timeout)
    server_name = host.split(":")[0] if host else (parts.hostname or "")
    try:
        context = _context(ca, insecure) if https else None
    except (OSError, ssl.SSLError) as err:
        return Probe(url, False, None, 0.0, error=f"cannot load the CA bundle {ca}: {err}")
    conn = _Conn(parts.hostname or "", parts.port, max(timeout, 0.001), context, server_name)
    # http.client closes conn.sock (the Python object) as soon as a
    # "Connection: close" response begins, while the body is still read
    # through its file; a duplicate of the descriptor stays usable, and
    # shutting it down ends the connection for every reader.
    held: list[socket.socket] = []
    # The backstop for a server that answers byte by byte: shut the socket at
    # the deadline, whatever the current read is waiting for.
    timer = threading.Timer(timeout, _shut, args=(held,))
    timer.daemon = True
    timer.start()
    try:
        headers = {"User-Agent": "wsgi-drain", "Connection": "close"}
        if host:
            headers["Host"] = host
        conn.connect()
        assert conn.sock is not None
        held.append(conn.sock)
        held.append(socket.socket(fileno=os.dup(conn.sock.fileno())))
        _remaining(held, deadline)
        conn.request("GET", path, headers=headers)
        _remaining(held, deadline)
        response = conn.getresponse()
        body_read = _read_bounded(response, held, deadline)
        pid_header = response.getheader("X-Pid")
        served_by = int(pid_header) if pid_header and pid_header.isdigit() else None
        redirect = 300 <= response.status < 400
        return Probe(
            url=url,
            ok=200 <= response.status < 300,
            status=response.status,
            latency=time.monotonic() - start,
            served_by=served_by,
            location=response.getheader("Location") if redirect else None,
            body_read=body_read,
        )
    except (OSError, http.client.HTTPException, ValueError) as err:
        error = str(err) or type(err).__name__
        if deadline.expired():
            error = f"timed out after {timeout:g} s ({error})"
        return Probe(url=url, ok=False, status=None, latency=time.monotonic() - start, error=error)
    finally:
        timer.cancel()
        conn.close()
        for sock in held[1:]:
            sock.close()


def probe_for(settings: Settings, timeout: float | None = None) -> Probe:
    """A probe of `settings.health_url` with its Host/CA/verification settings."""
    assert settings.health_url is not None
    return probe(
        settings.health_url,
        settings.health_timeout if timeout is None else timeout,
        host=settings.health_host,
        ca=settings.health_ca,
        insecure=settings.health_insecure,
    )


def _remaining(held: list[socket.socket], deadline: Deadline) -> None:
    left = deadline.remaining()
    if left <= 0:
        raise TimeoutError("the probe's time ran out")
    for sock in held:
        with contextlib.suppress(OSError):  # closed by http.client: the timer still applies
            sock.settimeout(left)


def _read_bounded(response: Any, held: list[socket.socket], deadline: Deadline) -> int:
    """Read at most MAX_BODY bytes of the body, each read within what remains; how many."""
    read = 0
    while read < MAX_BODY:
        _remaining(held, deadline)
        chunk = response.read(min(_CHUNK, MAX_BODY - read))
        if not chunk:
            break
        read += len(chunk)
    return read


def _shut(held: list[socket.socket]) -> None:
    for sock in held:
        with contextlib.suppress(OSError):  # already closed: the probe finished first
            sock.shutdown(socket.SHUT_RDWR)
