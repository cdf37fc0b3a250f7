"""HTTP health probes sent straight to Apache (never through the router)."""

from __future__ import annotations

import http.client
import time
import urllib.parse
from dataclasses import dataclass

from wsgi_drain.errors import ConfigError


@dataclass(frozen=True)
class Probe:
    """One probe's outcome: `ok` means HTTP 2xx/3xx within the timeout."""

    url: str
    ok: bool
    status: int | None
    latency: float
    error: str | None = None
    served_by: int | None = None  # X-Pid header, when the app sends one

    def describe(self) -> str:
        if self.status is not None:
            return f"HTTP {self.status} in {self.latency * 1000:.0f} ms"
        return f"failed after {self.latency * 1000:.0f} ms: {self.error}"


def validate_url(url: str) -> str:
    """Reject anything but an absolute http(s) URL, with the fix in the message."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"health URL {url!r} must be an absolute http:// or https:// URL on Apache itself, "
            "e.g. http://127.0.0.1:8080/health"
        )
    return url


def probe(url: str, timeout: float = 5.0) -> Probe:
    """GET `url` once; never raises for network errors (they are the result)."""
    parts = urllib.parse.urlsplit(url)
    conn_class = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    start = time.monotonic()
    conn = conn_class(parts.hostname or "", parts.port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"User-Agent": "wsgi-drain", "Connection": "close"})
        response = conn.getresponse()
        response.read()
        pid_header = response.getheader("X-Pid")
        served_by = int(pid_header) if pid_header and pid_header.isdigit() else None
        return Probe(
            url=url,
            ok=200 <= response.status < 400,
            status=response.status,
            latency=time.monotonic() - start,
            served_by=served_by,
        )
    except (OSError, http.client.HTTPException) as err:
        return Probe(
            url=url,
            ok=False,
            status=None,
            latency=time.monotonic() - start,
            error=str(err) or type(err).__name__,
        )
    finally:
        conn.close()
