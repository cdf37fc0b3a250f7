"""HAProxy router: drain one server of one backend through the runtime API.

Facts this module relies on were checked against HAProxy 2.6 (documentation
and source of v2.6.0, behaviour of Debian's 2.6.12); see docs/haproxy.md.
The ones that shape the code:

- The stats socket serves one command per connection (non-interactive mode):
  send a line, read until HAProxy closes.  Every reply ends with an empty
  line, so a command that succeeds silently answers "\\n".
- `set server BE/SRV state drain` removes the server from load balancing but
  lets requests bound to it by persistence (cookie, stick table, use-server)
  through; in-flight requests finish.  `state ready` clears drain and maint.
- `show stat` reports DRAIN in the status column only while the server is
  operationally up: a drained server that fails its checks shows "DOWN".  The
  administrative state is therefore read from the `srv_admin_state` bit mask
  of `show servers state`, which is exact.
- In http mode a server's `scur` counts streams, i.e. requests being served,
  not idle keep-alive connections (those are `srv_icur`), so `scur == 0` and
  `qcur == 0` means nothing is in flight on the server.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import socket
import stat
import time
from dataclasses import dataclass

from wsgi_drain.deadline import Deadline
from wsgi_drain.errors import ConfigError, RouterError
from wsgi_drain.routers.protocol import RouterState

TARGET_FORM = "SOCKET:BACKEND/SERVER"
TARGET_EXAMPLES = "/run/haproxy/admin.sock:be_app/web1 or 127.0.0.1:9999:be_app/web1"

# srv_admin_state bits (include/haproxy/server-t.h, HAProxy 2.6).
SRV_ADMF_FMAINT = 0x01  # forced into maintenance (CLI, stats page, agent)
SRV_ADMF_IMAINT = 0x02  # maintenance inherited from a tracked server
SRV_ADMF_CMAINT = 0x04  # "disabled" in the configuration (always set together with FMAINT)
SRV_ADMF_FDRAIN = 0x08  # forced into drain
SRV_ADMF_IDRAIN = 0x10  # drain inherited from a tracked server
SRV_ADMF_RMAINT = 0x20  # maintenance because its address does not resolve
SRV_ADMF_HMAINT = 0x40  # FQDN set from the CLI: informational, not a maintenance state
_MAINT_BITS = SRV_ADMF_FMAINT | SRV_ADMF_IMAINT | SRV_ADMF_CMAINT | SRV_ADMF_RMAINT
_DRAIN_BITS = SRV_ADMF_FDRAIN | SRV_ADMF_IDRAIN

# Names HAProxy accepts for proxies and servers; anything else (spaces, ';',
# backslashes) would need CLI escaping and is surely a typo.
_NAME_RE = re.compile(r"[A-Za-z0-9_.:-]+")
_TCP_RE = re.compile(r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:\[\]/]+)):(?P<port>\d{1,5})")
# A TCP socket at the start of a target, up to the ':' before the backend.
_TCP_HEAD_RE = re.compile(r"(?P<sock>(?:\[[0-9A-Fa-f:.]+\]|[^:\[\]/]+):\d{1,5}):(?=[^:])")


@dataclass(frozen=True)
class HAProxyTarget:
    """Where to reach HAProxy's runtime API and which server to act on.

    `socket` is a unix socket path, or "HOST:PORT" / "[IPV6]:PORT" for a TCP
    stats socket.
    """

    socket: str
    backend: str
    server: str


def parse_target(spec: str) -> HAProxyTarget:
    """Parse "SOCKET:BACKEND/SERVER".

    Backend names may contain ':' (HAProxy allows it) and so may the socket
    ("HOST:PORT", "[IPV6]:PORT", a path), but neither contains the other's
    separator in the same place: a TCP socket ends at its port's digits; a
    unix socket path ends at the first ':' after its last '/' (a path whose
    file name itself has a ':' is recognised when that socket exists).
    Raises ConfigError naming the expected form.
    """

    def bad(why: str) -> ConfigError:
        return ConfigError(
            f"invalid HAProxy target {spec!r}: {why}; expected {TARGET_FORM}, "
            f"e.g. {TARGET_EXAMPLES}"
        )

    text = spec.strip()
    # haproxy.cfg's own spelling of a TCP stats socket, for copy and paste.
    for prefix in ("ipv4@", "ipv6@", "tcp@"):
        if text.startswith(prefix):
            text = text[len(prefix) :]
            break
    if text.startswith("/"):
        if ":" not in text:
            raise bad(f"no ':BACKEND/SERVER' after the socket {text!r}")
        sock, rest = _split_unix(text)
    else:
        tcp = _TCP_HEAD_RE.match(text)
        if tcp is None:
            if ":" not in text or (text.startswith(":") and not text.startswith("::")):
                raise bad("no socket before BACKEND/SERVER")
            # e.g. "::1:9999:...": an IPv6 address needs brackets.
            raise bad("the socket is neither an absolute unix socket path nor HOST:PORT")
        sock, rest = tcp["sock"], text[tcp.end() :]
    if not sock:
        raise bad("no socket before BACKEND/SERVER")
    backend, slash, server = rest.partition("/")
    if not slash:
        raise bad("no '/' between backend and server")
    for what, value in (("backend", backend), ("server", server)):
        if not value:
            raise bad(f"empty {what} name")
        if not _NAME_RE.fullmatch(value):
            raise bad(f"{what} name {value!r} has characters HAProxy names cannot have")
    return HAProxyTarget(socket=sock, backend=backend, server=server)


def _split_unix(text: str) -> tuple[str, str]:
    """ "/run/haproxy/admin.sock:be:app/web1" -> ("/run/haproxy/admin.sock", "be:app/web1").

    The path ends at its first ':', unless a longer prefix ending before a
    ':' names an existing socket (a path with ':' in it).
    """
    cuts = [i for i, char in enumerate(text) if char == ":"]
    if not cuts:
        return "", ""
    for cut in reversed(cuts[1:]):
        with contextlib.suppress(OSError):
            if stat.S_ISSOCK(os.stat(text[:cut]).st_mode):
                return text[:cut], text[cut + 1 :]
    return text[: cuts[0]], text[cuts[0] + 1 :]


def parse_show_stat(text: str) -> list[dict[str, str]]:
    """Rows of `show stat` CSV output as dicts keyed by the header's column names.

    The header line starts with "# "; columns after the static ones vary
    between versions, so rows are always read by name.  Raises ValueError when
    the text is not `show stat` output (e.g. an error message from HAProxy).
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or not lines[0].startswith("# pxname"):
        raise ValueError(f"not show stat output: {text.strip()[:200]!r}")
    lines[0] = lines[0][2:]
    return [dict(row) for row in csv.DictReader(io.StringIO("\n".join(lines)))]


def parse_servers_state(text: str) -> dict[tuple[str, str], int]:
    """`show servers state` output -> {(backend, server): srv_admin_state bits}.

    Format version 1: a version line, a "# " header naming the columns, then
    space-separated rows.  Raises ValueError on anything else.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2 or lines[0].strip() != "1" or not lines[1].startswith("#"):
        raise ValueError(f"not show servers state output: {text.strip()[:200]!r}")
    columns = lines[1].lstrip("#").split()
    try:
        be, srv, adm = (columns.index(c) for c in ("be_name", "srv_name", "srv_admin_state"))
    except ValueError as err:
        raise ValueError(f"show servers state header lacks a column: {lines[1]!r}") from err
    result: dict[tuple[str, str], int] = {}
    needed = max(be, srv, adm)
    for line in lines[2:]:
        if line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) <= needed or not fields[adm].isdigit():
            raise ValueError(f"show servers state row too short or malformed: {line!r}")
        result[(fields[be], fields[srv])] = int(fields[adm])
    return result


def admin_from_bits(bits: int) -> str:
    """The administrative state ("maint", "drain", "ready") of a srv_admin_state mask.

    Maintenance wins over drain, as in HAProxy (a server in maint gets no
    traffic at all, drained or not).
    """
    if bits & _MAINT_BITS:
        return "maint"
    if bits & _DRAIN_BITS:
        return "drain"
    return "ready"


def admin_from_status(status: str) -> str:
    """Best guess of the administrative state from the `show stat` status column.

    Only a fallback: a drained server that is DOWN shows "DOWN", so this says
    "ready" for it.
    """
    if status.startswith("MAINT"):
        return "maint"
    if status.startswith("DRAIN"):
        return "drain"
    return "ready"


def _int(value: str) -> int:
    return int(value) if value.strip() else 0


def _is_up(status: str) -> bool:
    # "UP", "UP 1/3" (up, failing checks but not yet down), "no check" (up,
    # unchecked).  DRAIN/NOLB/DOWN/MAINT are out of rotation.
    return status.startswith("UP") or status == "no check"


class HAProxyRouter:
    """One server of one backend behind one HAProxy instance's runtime API."""

    def __init__(
        self, target: HAProxyTarget, *, timeout: float = 2.0, poll_interval: float = 0.05
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.poll_interval = poll_interval

    @property
    def name(self) -> str:
        return f"haproxy {self.target.socket} {self.target.backend}/{self.target.server}"

    def __repr__(self) -> str:
        return f"HAProxyRouter({self.target!r})"

    # -- transport -------------------------------------------------------

    def _connect(self) -> socket.socket:
        spec = self.target.socket
        tcp = None if spec.startswith("/") else _TCP_RE.fullmatch(spec)
        if tcp:
            host = tcp.group("v6") or tcp.group("host")
            return socket.create_connection((host, int(tcp.group("port"))), self.timeout)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(spec)
        except BaseException:
            sock.close()
            raise
        return sock

    def command(self, line: str) -> str:
        """Send one command on a fresh connection and return HAProxy's whole reply.

        The reply is read until HAProxy closes the connection (non-interactive
        mode), within `timeout` seconds in all.  Raises RouterError when the
        socket cannot be reached or does not answer in time.
        """
        if "\n" in line or "\r" in line:
            raise ValueError(f"a HAProxy command is one line, got {line!r}")
        deadline = Deadline(self.timeout)
        sent = False
        try:
            with self._connect() as sock:
                sent = True  # from here on HAProxy may have acted on it
                sock.sendall(line.encode() + b"\n")
                chunks: list[bytes] = []
                while True:
                    if deadline.expired():
                        raise TimeoutError(f"no complete answer to {line!r}")
                    # settimeout(0) would make the socket non-blocking
                    sock.settimeout(max(deadline.remaining(), 0.001))
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
        except OSError as err:
            # A command sent but not answered may have been carried out.
            applied = None if sent else False
            raise RouterError(self.name, self._unreachable(line, err), applied=applied) from err
        reply = b"".join(chunks).decode("utf-8", errors="replace")
        head = reply.lstrip()[:15].lower()
        if head.startswith(("http/", "<!doctype html", "<html")):
            # An HTTP server (a frontend, the stats page) answers any line with a
            # 400, with a status line, or (to a one-line "HTTP/0.9" request) a page.
            status = reply.lstrip().splitlines()[0].strip()
            said = repr(status) if head.startswith("http/") else "an HTML page"
            raise RouterError(
                self.name,
                f"{self.target.socket} answered in HTTP ({said}): that is an HTTP port (a "
                "frontend or the stats page), not HAProxy's runtime API; give the address of "
                "the `stats socket ... level admin` line in haproxy.cfg's global section",
            )
        return reply

    def _unreachable(self, line: str, err: OSError) -> str:
        sock = self.target.socket
        # socket.timeout is TimeoutError only from Python 3.10 on (RHEL 9 has 3.9).
        if isinstance(err, (TimeoutError, socket.timeout)):
            return (
                f"stats socket {sock} did not answer {line!r} within {self.timeout:g} s; "
                "is HAProxy overloaded or is something else listening there?"
            )
        kind = "unix socket" if sock.startswith("/") else "TCP stats socket"
        return (
            f"cannot talk to the {kind} {sock} ({err.strerror or err}); is HAProxy running, "
            f"and does haproxy.cfg have `stats socket {sock} ... level admin` in its "
            "global section? (wsgi-drain must be allowed to open it: check its mode/user)"
        )

    # -- state -----------------------------------------------------------

    def _stat_rows(self) -> list[dict[str, str]]:
        be = self.target.backend
        # "<proxy> 4 -1": only the server rows of that proxy (management.txt, show stat).
        reply = self.command(f"show stat {be} 4 -1")
        try:
            rows = parse_show_stat(reply)
        except ValueError:
            if "No such proxy" in reply:
                raise RouterError(
                    self.name,
                    f"backend {be!r} not found; backends there: {self._backends()}",
                ) from None
            raise RouterError(self.name, f"show stat failed: {reply.strip()!r}") from None
        return [r for r in rows if r.get("pxname") == be and r.get("type") == "2"]

    def _backends(self) -> str:
        reply = self.command("show backend")
        names = [n for n in reply.splitlines() if n.strip() and not n.startswith("#")]
        return ", ".join(names) if names else "none"

    def _admin_bits(self) -> dict[str, int]:
        be = self.target.backend
        reply = self.command(f"show servers state {be}")
        try:
            states = parse_servers_state(reply)
        except ValueError:
            raise RouterError(
                self.name, f"show servers state {be} failed: {reply.strip()!r}"
            ) from None
        return {srv: bits for (backend, srv), bits in states.items() if backend == be}

    def state(self) -> RouterState:
        """Read the server's state from `show stat` and `show servers state`.

        Raises RouterError when HAProxy is unreachable, or the backend or the
        server does not exist (naming the ones that do).
        """
        rows = self._stat_rows()
        mine = next((r for r in rows if r["svname"] == self.target.server), None)
        if mine is None:
            names = ", ".join(r["svname"] for r in rows) or "none"
            raise RouterError(
                self.name,
                f"server {self.target.server!r} not found in backend "
                f"{self.target.backend!r}; servers there: {names}",
            )
        bits = self._admin_bits()

        def admin(row: dict[str, str]) -> str:
            if row["svname"] in bits:
                return admin_from_bits(bits[row["svname"]])
            # Server added between the two reads: the status column is all we have.
            return admin_from_status(row["status"])

        def serving(row: dict[str, str]) -> bool:
            return (
                _is_up(row["status"]) and admin(row) == "ready" and _int(row.get("weight", "")) > 0
            )

        peers = [r for r in rows if r is not mine]
        out = tuple(
            f"{r['svname']} ({admin(r) if admin(r) != 'ready' else r['status']})"
            for r in peers
            if not serving(r)
        )
        lastchg = mine.get("lastchg", "").strip()
        return RouterState(
            name=self.name,
            admin=admin(mine),
            status=mine["status"],
            sessions=_int(mine["scur"]),
            queued=_int(mine["qcur"]),
            peers_up=sum(1 for r in peers if serving(r)),
            since=float(lastchg) if lastchg else None,
            peers_out=out,
            lb_up=_is_up(mine["status"]),
            peers_failing=tuple(
                r["svname"] for r in peers if serving(r) and r["status"].startswith("UP ")
            ),
        )

    def counters(self, names: tuple[str, ...]) -> dict[str, int]:
        """The server's cumulative `show stat` counters `names` (e.g. "hrsp_5xx", "eresp").

        Columns this HAProxy does not have are left out.  Raises RouterError
        like state().
        """
        rows = self._stat_rows()
        mine = next((r for r in rows if r["svname"] == self.target.server), None)
        if mine is None:
            raise RouterError(self.name, f"server {self.target.server!r} not found")
        return {n: _int(mine[n]) for n in names if mine.get(n) is not None}

    # -- actions ---------------------------------------------------------

    def check_admin(self) -> None:
        """Raise RouterError unless the socket grants the "admin" level.

        `set server` is refused ("Permission denied") at the user and operator
        levels, so a drain would fail mid-run; this checks it up front.
        """
        reply = self.command("show cli level").strip()
        if reply == "admin":
            return
        if reply in ("user", "operator"):
            raise RouterError(
                self.name,
                f"stats socket {self.target.socket} is at level {reply!r}, "
                "`set server` needs `level admin` on its `stats socket` line in haproxy.cfg",
            )
        raise RouterError(
            self.name, f"cannot tell the CLI level of {self.target.socket}: {reply!r}"
        )

    def _set_state(self, admin: str) -> None:
        line = f"set server {self.target.backend}/{self.target.server} state {admin}"
        reply = self.command(line).strip()
        # Success is silent; anything else is HAProxy refusing ("No such
        # server.", "Permission denied", ...).
        if reply:
            raise RouterError(self.name, f"HAProxy refused {line!r}: {reply}")

    def divert(self) -> None:
        """Set the server to DRAIN: no new load-balanced requests, in-flight ones finish.

        Requests bound to it by persistence (cookie, stick table, use-server,
        force-persist) keep arriving while drained; see docs/haproxy.md.
        """
        self._set_state("drain")

    def restore(self) -> None:
        """Set the server to READY (clears both drain and maint)."""
        self._set_state("ready")

    def wait_drained(self, deadline: Deadline) -> RouterState:
        """Poll until the server has no request in flight or queued, or the deadline.

        Returns the last state seen.  RouterError from state() propagates.
        """
        while True:
            st = self.state()
            if (st.sessions == 0 and st.queued == 0) or deadline.expired():
                return st
            time.sleep(min(self.poll_interval, deadline.remaining()))
