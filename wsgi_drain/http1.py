"""One HTTP/1.x GET on a connected socket, every wait within a deadline (the health probe's wire).

`http.client` is not used: with its `email` header parser and `ssl` it cost
`check` about 20 ms of imports on every cron run (issue 22), for one GET.
What is read, and how, is what the probe needs and http.client did:

- the request: `GET PATH HTTP/1.1` with Host, `Accept-Encoding: identity`,
  User-Agent and `Connection: close`; a path or header with control
  characters, or a path that is not ASCII, is refused (ValueError) before
  anything is sent;
- the status line `HTTP/1.x CODE [REASON]` (a code of three digits), lines of
  at most 65536 bytes, at most 100 headers; names compared without case, a
  repeated header's values joined by ", ", folded lines joined;
- interim 1xx answers (but 101) skipped up to the final one;
- the body framed by `Transfer-Encoding: chunked`, else Content-Length,
  else the connection's end; no body for 1xx, 204 and 304; at most `limit`
  bytes of it are read and the rest is left unread (the caller closes).

Bounded as a whole: before every send and every receive the socket's
timeout is set to what remains of the deadline, and one receive is one wait
(TLS reads and handshakes keep to their timeout as a whole, CPython's _ssl),
so a server that drips bytes cannot stretch a probe past its deadline.
Protocol faults raise HTTPError; the socket's own errors are OSErrors.
"""

from __future__ import annotations

import socket

from wsgi_drain.deadline import Deadline

MAX_LINE = 65536
MAX_HEADERS = 100
_RECV = 8192
_NO_BODY = (204, 304)


class HTTPError(Exception):
    """The server's answer is not HTTP/1.x as the probe reads it."""


class Response:
    """The final answer: status, headers (lower-case names), bytes of the body read."""

    __slots__ = ("body_read", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body_read: int) -> None:
        self.status, self.headers, self.body_read = status, headers, body_read

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def request(path: str, host: str, user_agent: str) -> bytes:
    """The request's bytes; ValueError for what must not reach the wire."""
    if any(c <= " " or c == "\x7f" for c in path):
        raise ValueError(f"URL can't contain control characters or spaces: {path!r}")
    for value in (host, user_agent):
        if any(c in "\r\n\0" for c in value):
            raise ValueError(f"invalid header value {value!r}")
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}",
        "Accept-Encoding: identity",
        f"User-Agent: {user_agent}",
        "Connection: close",
    ]
    path.encode("ascii")  # UnicodeEncodeError (a ValueError), as http.client refused it
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def host_header(hostname: str, port: int, default_port: int) -> str:
    """The URL's host as the Host header names it: IPv6 in brackets, a port unless the default."""
    try:
        name = hostname.encode("ascii").decode()
    except UnicodeEncodeError:
        name = hostname.encode("idna").decode()
    if ":" in name:
        name = f"[{name}]"
    return name if port == default_port else f"{name}:{port}"


def connect(hostname: str, port: int, deadline: Deadline) -> socket.socket:
    """A TCP connection to the URL's address, each address tried within what remains."""
    try:
        # An ASCII name as bytes: a str would load the idna codec for nothing.
        host: str | bytes = hostname.encode("ascii")
    except UnicodeEncodeError:
        host = hostname
    error: OSError | None = None
    for family, kind, proto, _name, address in socket.getaddrinfo(
        host, port, 0, socket.SOCK_STREAM
    ):
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(_left(deadline))
            sock.connect(address)
        except OSError as err:
            sock.close()
            error = err
            if isinstance(err, TimeoutError):
                break
            continue
        return sock
    raise error if error is not None else OSError(f"{hostname}: no address")


def get(sock: socket.socket, payload: bytes, deadline: Deadline, limit: int) -> Response:
    """Send `payload` (from `request`), read the answer and at most `limit` bytes of its body."""
    sock.settimeout(_left(deadline))
    sock.sendall(payload)
    wire = _Wire(sock, deadline)
    while True:
        status = wire.status_line()
        headers = wire.headers()
        if not 100 <= status < 200 or status == 101:
            break
    if 100 <= status < 200 or status in _NO_BODY:
        return Response(status, headers, 0)
    coding = headers.get("transfer-encoding", "")
    if coding.lower() == "chunked":
        return Response(status, headers, wire.chunked(limit))
    length = headers.get("content-length", "").strip()
    if length.isdigit():
        return Response(status, headers, wire.body(min(int(length), limit)))
    return Response(status, headers, wire.body(limit))


def _left(deadline: Deadline) -> float:
    left = deadline.remaining()
    if left <= 0:
        raise TimeoutError("the probe's time ran out")
    return left


class _Wire:
    """The answer's bytes as they come: lines, then the body."""

    def __init__(self, sock: socket.socket, deadline: Deadline) -> None:
        self._sock = sock
        self._deadline = deadline
        self._buf = b""

    def _fill(self) -> bool:
        """One receive within what remains; False at the connection's end."""
        self._sock.settimeout(_left(self._deadline))
        data = self._sock.recv(_RECV)
        if not data:
            if self._deadline.expired():
                raise TimeoutError("the probe's time ran out")
            return False
        self._buf += data
        return True

    def line(self) -> bytes | None:
        """One line with its end; None when the connection ends first (b"" before it)."""
        while True:
            end = self._buf.find(b"\n", 0, MAX_LINE)
            if end >= 0:
                line, self._buf = self._buf[: end + 1], self._buf[end + 1 :]
                return line
            if len(self._buf) >= MAX_LINE:
                raise HTTPError(f"got a line longer than {MAX_LINE} bytes")
            if not self._fill():
                line, self._buf = self._buf, b""
                return line or None

    def status_line(self) -> int:
        line = self.line()
        if line is None:
            raise HTTPError("Remote end closed connection without response")
        words = line.decode("iso-8859-1").split(None, 2)
        if len(words) < 2 or not words[0].startswith("HTTP/"):
            raise HTTPError(f"not an HTTP status line: {line[:80]!r}")
        if not words[0].startswith("HTTP/1."):
            raise HTTPError(f"unknown protocol {words[0]!r}")
        code = words[1]
        if len(code) != 3 or not code.isdigit() or not 100 <= int(code) <= 999:
            raise HTTPError(f"not an HTTP status line: {line[:80]!r}")
        return int(code)

    def headers(self) -> dict[str, str]:
        found: dict[str, str] = {}
        last: str | None = None
        count = 0
        while True:
            line = self.line()
            if line is None or line in (b"\r\n", b"\n", b""):
                return found
            count += 1
            if count > MAX_HEADERS:
                raise HTTPError(f"got more than {MAX_HEADERS} headers")
            text = line.decode("iso-8859-1").rstrip("\r\n")
            if text[:1] in (" ", "\t") and last is not None:
                found[last] += " " + text.strip()  # a folded line continues the last header
                continue
            name, colon, value = text.partition(":")
            if not colon:
                continue
            last = name.strip().lower()
            value = value.strip()
            found[last] = f"{found[last]}, {value}" if last in found else value

    def body(self, limit: int) -> int:
        """Read up to `limit` bytes of body (fewer if the connection ends); how many."""
        read = 0
        while read < limit:
            if not self._buf and not self._fill():
                break
            take = min(len(self._buf), limit - read)
            read += take
            self._buf = self._buf[take:]
        return read

    def chunked(self, limit: int) -> int:
        """Read a chunked body's data up to `limit` bytes; how many."""
        read = 0
        while read < limit:
            line = self.line()
            if not line:
                raise HTTPError("the connection ended inside a chunked body")
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise HTTPError(f"bad chunk size {size_text[:20]!r}") from None
            if size < 0:
                raise HTTPError(f"bad chunk size {size_text[:20]!r}")
            if size == 0:
                break
            want = min(size, limit - read)
            got = self.body(want)
            read += got
            if got < want:
                raise HTTPError("the connection ended inside a chunked body")
            if read < limit and self.line() is None:  # the CRLF after the chunk's data
                raise HTTPError("the connection ended inside a chunked body")
        return read
