"""HTTP health probes sent straight to Apache (never through the router).

One probe is one GET, bounded as a whole: connect, request, headers and body
together get `timeout` seconds (each socket operation gets what remains, and
one receive is one wait, so a server that drips bytes cannot stretch it;
`http1.py`).  At most MAX_BODY bytes of the body are read.  Healthy means
HTTP 2xx; a redirect is not followed and is not healthy.

Name-based virtual hosts: the probe connects to the URL's address but may
send another Host header (`host`), which for https is also the TLS server
name (SNI) and the name the certificate is checked against.  `ca` is a CA
bundle to verify with instead of the system's; `insecure` skips verification.
`ssl` is loaded for https URLs only (`check` runs every minute: issue 22).
"""

from __future__ import annotations

import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from wsgi_drain import http1
from wsgi_drain.deadline import Deadline
from wsgi_drain.errors import ConfigError

if TYPE_CHECKING:
    import socket
    import ssl

    from wsgi_drain.config import Settings

MAX_BODY = 64 * 1024
_PORTS = {"http": 80, "https": 443}


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


def _context(ca: Path | None, insecure: bool) -> ssl.SSLContext:
    import ssl

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
    hostname = parts.hostname or ""
    server_name = host.split(":")[0] if host else hostname
    try:
        context = _context(ca, insecure) if https else None
    except OSError as err:  # ssl.SSLError is an OSError
        return Probe(url, False, None, 0.0, error=f"cannot load the CA bundle {ca}: {err}")
    sock: socket.socket | None = None
    try:
        port = parts.port or _PORTS[parts.scheme]
        payload = http1.request(
            path, host or http1.host_header(hostname, port, _PORTS[parts.scheme]), "wsgi-drain"
        )
        sock = http1.connect(hostname, port, deadline)
        if context is not None:
            sock.settimeout(max(deadline.remaining(), 0.001))
            sock = context.wrap_socket(sock, server_hostname=server_name)
        response = http1.get(sock, payload, deadline, MAX_BODY)
        pid_header = response.header("X-Pid")
        served_by = int(pid_header) if pid_header and pid_header.isdigit() else None
        redirect = 300 <= response.status < 400
        return Probe(
            url=url,
            ok=200 <= response.status < 300,
            status=response.status,
            latency=time.monotonic() - start,
            served_by=served_by,
            location=response.header("Location") if redirect else None,
            body_read=response.body_read,
        )
    except (OSError, http1.HTTPError, ValueError) as err:
        error = str(err) or type(err).__name__
        if deadline.expired():
            error = f"timed out after {timeout:g} s ({error})"
        return Probe(url=url, ok=False, status=None, latency=time.monotonic() - start, error=error)
    finally:
        if sock is not None:
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
