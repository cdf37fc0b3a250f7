"""A real HAProxy in front of the lab's Apache servers, as a child process we own.

HAProxy runs in the foreground (``-db``) so it is our child: we reap it and
never signal anything else.  Its runtime API is on ``<root>/admin.sock`` at
level admin, as the haproxy router expects in production.
"""

from __future__ import annotations

import csv
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from lab import procs
from lab.errors import LabError, LabUnavailable
from lab.ports import LOOPBACK, accepts, free_port
from lab.service import Service
from wsgi_drain.deadline import Deadline

BACKEND = "be_app"
FRONTEND = "fe_app"

# A unix socket path holds at most 107 bytes.
_MAX_SOCKET_PATH = 100


@dataclass(frozen=True)
class ServerStat:
    """One server's line of ``show stat``: state, last check, sessions now and queued."""

    name: str
    status: str  # UP, DOWN, DRAIN, MAINT, "UP 1/2", ...
    check_status: str  # L7OK, L4CON, ... ("" before the first check)
    scur: int
    qcur: int
    weight: int


def admin_command(sock_path: Path, command: str, timeout: float = 5.0) -> str:
    """Send one runtime API command and return HAProxy's whole answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(sock_path))
            sock.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except OSError as err:
            msg = f"HAProxy admin socket {sock_path}: {command!r}: {err}"
            raise LabError(msg) from err
    return b"".join(chunks).decode(errors="replace")


def parse_stat(text: str, backend: str = BACKEND) -> dict[str, ServerStat]:
    """Servers of `backend` from ``show stat`` CSV (header line starts with ``# ``)."""
    lines = text.strip().splitlines()
    if not lines or not lines[0].startswith("# "):
        return {}
    rows = csv.DictReader([lines[0][2:], *lines[1:]])
    servers = {}
    for row in rows:
        if row.get("pxname") != backend or row.get("svname") in ("FRONTEND", "BACKEND"):
            continue
        name = row["svname"]
        servers[name] = ServerStat(
            name=name,
            status=row.get("status", ""),
            check_status=row.get("check_status", ""),
            scur=int(row.get("scur") or 0),
            qcur=int(row.get("qcur") or 0),
            weight=int(row.get("weight") or 0),
        )
    return servers


class HAProxyLab(Service):
    """HAProxy on 127.0.0.1:<free port> balancing `servers` in backend ``be_app``.

    `servers` are (name, host, port).  `pin` maps a path prefix to a server
    name (``{"/slow": "a1"}``) so a test can put a long request on the very
    server it restarts.  `root` holds the configuration, the log and the admin
    socket (the socket goes to a short /tmp directory when `root` is too long
    for a unix socket path).
    """

    def __init__(
        self,
        root: Path,
        servers: Sequence[tuple[str, str, int]],
        *,
        pin: dict[str, str] | None = None,
        inter: str = "200ms",
        start_timeout: float = 10.0,
        admin_tcp: bool = False,
        check_path: str = "/health",
    ) -> None:
        if not servers:
            raise ValueError("HAProxyLab needs at least one server")
        names = [name for name, _, _ in servers]
        for path, name in (pin or {}).items():
            if name not in names:
                raise ValueError(f"pin {path!r} -> {name!r}: no such server in {names}")
        self.root = Path(root).resolve()
        self.servers = list(servers)
        self.pin = dict(pin or {})
        self.inter = inter
        self.start_timeout = start_timeout
        self.conf_path = self.root / "haproxy.cfg"
        self.log_path = self.root / "haproxy.log"
        self.admin_socket = self.root / "admin.sock"
        # Also a TCP runtime API on loopback, as a central load-balancer host
        # offers it (`stats socket ipv4@...`); `admin_address` is HOST:PORT.
        self.admin_tcp = admin_tcp
        self.check_path = check_path
        self.admin_port = 0
        self.port = 0
        self._sock_dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def admin_address(self) -> str:
        """HOST:PORT of the TCP runtime API (admin_tcp=True)."""
        if not self.admin_tcp:
            raise LabError("this HAProxyLab has no TCP runtime API (admin_tcp=False)")
        return f"{LOOPBACK}:{self.admin_port}"

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise LabError("HAProxy is not running")
        return self._proc.pid

    def _config(self) -> str:
        tcp = (
            f"    stats socket ipv4@{LOOPBACK}:{self.admin_port} level admin\n"
            if self.admin_tcp
            else ""
        )
        pins = "\n".join(
            f"    use-server {name} if {{ path_beg {path} }}" for path, name in self.pin.items()
        )
        servers = "\n".join(
            f"    server {name} {host}:{port} check" for name, host, port in self.servers
        )
        return f"""\
# Written by lab.HAProxyLab.
global
    stats socket {self.admin_socket} mode 600 level admin
{tcp}    stats timeout 30s

defaults
    mode http
    # A 4 s (or longer) request in flight must not time out.
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 10s
    # HAProxy's defaults, spelled out because they decide what a restart costs:
    # keep-alive on both sides, and `http-reuse safe` lets a client's second
    # and later requests ride an idle server connection.  When that server's
    # daemon dies before answering, HAProxy closes the client connection
    # without logging the request -- the lab must show that, not hide it, so
    # nothing here (no http-server-close, no retry-on) papers over it.
    option http-keep-alive
    http-reuse safe

frontend {FRONTEND}
    bind {LOOPBACK}:{self.port}
    default_backend {BACKEND}

backend {BACKEND}
    balance roundrobin
    option httpchk GET {self.check_path}
    http-check expect status 200
    # Short checks so tests see UP/DOWN within about half a second.
    default-server inter {self.inter} fall 2 rise 1
{pins}
{servers}
"""

    def start(self) -> None:
        """Start HAProxy and wait until it accepts and every server passed a check.

        Raises LabUnavailable without haproxy, LabError (with its log) when it
        does not come up within `start_timeout`; then it is stopped again.
        """
        binary = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/bin")
        if binary is None:
            raise LabUnavailable("haproxy not found: apt-get install haproxy")
        deadline = Deadline(self.start_timeout)
        self.root.mkdir(parents=True, exist_ok=True)
        if len(str(self.admin_socket)) > _MAX_SOCKET_PATH:
            self._sock_dir = Path(tempfile.mkdtemp(prefix="wsgi-drain-haproxy-"))
            self.admin_socket = self._sock_dir / "admin.sock"
        self.port = free_port()
        if self.admin_tcp:
            self.admin_port = free_port()
        self.conf_path.write_text(self._config(), encoding="utf-8")
        self._log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            [binary, "-db", "-f", str(self.conf_path)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            restore_signals=True,
            start_new_session=True,
        )
        try:
            self._wait_ready(deadline)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, deadline: Deadline) -> None:
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                msg = f"haproxy exited with {self._proc.returncode}\n{procs.tail(self.log_path)}"
                raise LabError(msg)
            if self.admin_socket.exists() and accepts(LOOPBACK, self.port) and self._all_up():
                return
            if deadline.expired():
                msg = (
                    f"HAProxy not ready in {self.start_timeout} s: {self._states_or_error()}\n"
                    f"{procs.tail(self.log_path)}"
                )
                raise LabError(msg)
            time.sleep(0.05)

    def _all_up(self) -> bool:
        try:
            states = self.server_states()
        except LabError:
            return False
        # Servers start out assumed UP: require a passed check as well.
        return len(states) == len(self.servers) and all(
            s.status == "UP" and s.check_status.startswith("L7OK") for s in states.values()
        )

    def _states_or_error(self) -> str:
        try:
            return repr(self.server_states())
        except LabError as err:
            return str(err)

    def command(self, command: str, timeout: float = 5.0) -> str:
        """One runtime API command (``set server be_app/a1 state drain``, ...)."""
        return admin_command(self.admin_socket, command, timeout)

    def server_states(self) -> dict[str, ServerStat]:
        """The backend's servers as ``show stat`` reports them now."""
        return parse_stat(self.command("show stat"))

    def admin_state(self, server: str, backend: str = "be_app") -> str:
        """`server`'s administrative state (ready / drain / maint), from `show servers state`.

        Exact where ``show stat``'s status column is not: a drained server
        whose health checks fail shows DOWN there.
        """
        reply = self.command(f"show servers state {backend}")
        rows = reply.splitlines()
        header = rows[1].lstrip("# ").split() if len(rows) > 1 else []
        for line in rows[2:]:
            fields = dict(zip(header, line.split()))
            if fields.get("srv_name") == server:
                bits = int(fields["srv_admin_state"])
                return "maint" if bits & 0x27 else "drain" if bits & 0x18 else "ready"
        msg = f"no server {server} in {backend}: {reply!r}"
        raise LabError(msg)

    def wait_status(self, server: str, status: str, timeout: float = 5.0) -> ServerStat:
        """Wait until `server`'s status starts with `status` (UP, DOWN, DRAIN, MAINT)."""
        deadline = Deadline(timeout)
        while True:
            stat = self.server_states().get(server)
            if stat is not None and stat.status.startswith(status):
                return stat
            if deadline.expired():
                msg = f"server {server} is {stat.status if stat else 'missing'}, not {status}"
                raise LabError(msg)
            time.sleep(0.05)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (hard stop) our haproxy, SIGKILL it after `timeout`, reap it."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5.0)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._sock_dir is not None:
            shutil.rmtree(self._sock_dir, ignore_errors=True)
            self._sock_dir = None
