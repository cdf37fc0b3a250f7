"""HAProxyRouter against a real HAProxy on loopback.

HAProxy's runtime API is what is under test, so the two backend servers are
small stdlib HTTP servers in this process (real Apache is tested elsewhere).
HAProxy runs with -db: it stays in the foreground as one process with no
master, so the pid we started is the one serving and SIGTERM to it stops
everything (-Ws would add a master process and a systemd notify protocol we do
not need).
"""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lab.ports import free_port
from wsgi_drain.deadline import Deadline
from wsgi_drain.errors import RouterError
from wsgi_drain.routers.haproxy import HAProxyRouter, HAProxyTarget

pytestmark = pytest.mark.integration

# Every wait in this file is bounded by one of these.
START_TIMEOUT = 10.0
REQUEST_TIMEOUT = 10.0
SLOW_MAX = 10.0  # the slow handler never holds a request longer than this


def haproxy_binary() -> str:
    path = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
    if path is None:
        msg = "haproxy is not installed (Debian: apt-get install haproxy)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return path


class App(ThreadingHTTPServer):
    """A backend server: /health answers at once, /slow waits until released."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.slow_arrived = threading.Event()
        self.release = threading.Event()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def handle_error(self, request: object, client_address: object) -> None:
        # Health checks hang up early; that is not a test failure.
        pass


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: App

    def do_GET(self) -> None:
        if self.path == "/slow":
            self.server.slow_arrived.set()
            self.server.release.wait(SLOW_MAX)
        body = str(self.server.port).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class Stack:
    admin_sock: str
    user_sock: str
    tcp_admin: str
    front_port: int
    apps: dict[str, App]
    log: Path
    proc: subprocess.Popen[bytes]
    clients: list[threading.Thread] = field(default_factory=list)

    def router(self, server: str, sock: str | None = None) -> HAProxyRouter:
        return HAProxyRouter(
            HAProxyTarget(sock or self.admin_sock, "be_app", server),
            timeout=2.0,
            poll_interval=0.02,
        )

    def get(self, path: str = "/") -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.front_port, timeout=REQUEST_TIMEOUT)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read().decode()
        finally:
            conn.close()

    def get_in_background(self, path: str) -> list[tuple[int, str]]:
        """Start a request in a thread; its (status, body) lands in the returned list."""
        result: list[tuple[int, str]] = []
        thread = threading.Thread(target=lambda: result.append(self.get(path)), daemon=True)
        thread.start()
        self.clients.append(thread)
        return result


CONFIG = """\
global
    stats socket {tmp}/admin.sock mode 600 level admin
    stats socket {tmp}/user.sock mode 600 level user
    stats socket ipv4@127.0.0.1:{tcp_port} level admin
    stats timeout 10s

defaults
    mode http
    timeout connect 2s
    timeout client 20s
    timeout server 20s

frontend fe_app
    bind 127.0.0.1:{front_port}
    default_backend be_app

backend be_app
    balance roundrobin
    option httpchk GET /health
    default-server check inter 100ms fall 2 rise 1
    server web1 127.0.0.1:{port1}
    server web2 127.0.0.1:{port2}

backend be_other
    server other1 127.0.0.1:{port1}
"""


@pytest.fixture
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    binary = haproxy_binary()
    # A short directory: unix socket paths are limited to 107 bytes.
    tmp = tmp_path_factory.mktemp("hx")
    apps = {"web1": App(), "web2": App()}
    for app in apps.values():
        threading.Thread(
            target=app.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
    tcp_port, front_port = free_port(), free_port()
    cfg = tmp / "haproxy.cfg"
    cfg.write_text(
        CONFIG.format(
            tmp=tmp,
            tcp_port=tcp_port,
            front_port=front_port,
            port1=apps["web1"].port,
            port2=apps["web2"].port,
        )
    )
    log = tmp / "haproxy.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [binary, "-db", "-f", str(cfg)], stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )
    st = Stack(
        admin_sock=str(tmp / "admin.sock"),
        user_sock=str(tmp / "user.sock"),
        tcp_admin=f"127.0.0.1:{tcp_port}",
        front_port=front_port,
        apps=apps,
        log=log,
        proc=proc,
    )
    try:
        wait_both_up(st)
        yield st
    finally:
        for app in apps.values():
            app.release.set()
        # Stop the haproxy we started, by its pid.
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        for thread in st.clients:
            thread.join(REQUEST_TIMEOUT)
        for app in apps.values():
            app.shutdown()
            app.server_close()


def wait_both_up(st: Stack) -> None:
    deadline = Deadline(START_TIMEOUT)
    last: object = None
    while not deadline.expired():
        if st.proc.poll() is not None:
            pytest.fail(f"haproxy exited with {st.proc.returncode}:\n{st.log.read_text()}")
        try:
            states = [st.router(s).state() for s in ("web1", "web2")]
            last = states
            if all(s.status == "UP" for s in states):
                return
        except RouterError as err:
            last = err
        time.sleep(0.05)
    pytest.fail(f"haproxy not ready in {START_TIMEOUT} s: {last}\n{st.log.read_text()}")


def wait_for(event: threading.Event, what: str) -> None:
    if not event.wait(REQUEST_TIMEOUT):
        pytest.fail(f"timed out waiting for {what}")


# -- tests -------------------------------------------------------------------


def test_state_sees_both_servers_up(stack: Stack) -> None:
    st = stack.router("web1").state()
    assert st.admin == "ready"
    assert st.status == "UP"
    assert (st.sessions, st.queued) == (0, 0)
    assert st.peers_up == 1
    assert st.since is not None and st.since >= 0
    assert st.name == f"haproxy {stack.admin_sock} be_app/web1"


def test_tcp_stats_socket(stack: Stack) -> None:
    router = stack.router("web2", stack.tcp_admin)
    router.check_admin()
    st = router.state()
    assert (st.admin, st.status, st.peers_up) == ("ready", "UP", 1)


def test_divert_and_restore(stack: Stack) -> None:
    web1, web2 = stack.router("web1"), stack.router("web2")
    web1.check_admin()
    web1.divert()

    st = web1.state()
    assert (st.admin, st.status) == ("drain", "DRAIN")
    assert st.peers_up == 1  # web2 still serves
    assert web2.state().peers_up == 0  # web1 is no longer in rotation
    # New requests all go to web2.
    port2 = str(stack.apps["web2"].port)
    assert [stack.get() for _ in range(6)] == [(200, port2)] * 6
    # Draining twice is harmless (HAProxy answers nothing).
    web1.divert()

    web1.restore()
    st = web1.state()
    assert (st.admin, st.status) == ("ready", "UP")
    assert web2.state().peers_up == 1
    served = {stack.get()[1] for _ in range(6)}
    assert served == {str(app.port) for app in stack.apps.values()}


def test_wait_drained_waits_for_the_request_in_flight(stack: Stack) -> None:
    result = stack.get_in_background("/slow")
    # Round robin: find out which server took the slow request.
    deadline = Deadline(REQUEST_TIMEOUT)
    while not any(app.slow_arrived.is_set() for app in stack.apps.values()):
        if deadline.expired():
            pytest.fail("the slow request reached no server")
        time.sleep(0.01)
    name, app = next((n, a) for n, a in stack.apps.items() if a.slow_arrived.is_set())
    other = next(a for a in stack.apps.values() if a is not app)
    router = stack.router(name)

    router.divert()
    st = router.state()
    assert (st.admin, st.status, st.sessions, st.queued) == ("drain", "DRAIN", 1, 0)
    # New requests go elsewhere while the slow one is still held.
    assert stack.get() == (200, str(other.port))

    # The deadline passes first: the last state still shows the request.
    short = Deadline(0.3)
    st = router.wait_drained(short)
    assert st.sessions == 1
    assert short.expired()  # it ended because the deadline passed

    # Release the request half a second from now: wait_drained returns once it ends.
    threading.Timer(0.5, app.release.set).start()
    long = Deadline(REQUEST_TIMEOUT)
    st = router.wait_drained(long)
    assert (st.sessions, st.queued) == (0, 0)
    # It ended because the request ended: not before the release, not at the deadline.
    assert app.release.is_set()
    assert not long.expired()
    stack.clients[-1].join(REQUEST_TIMEOUT)
    assert result == [(200, str(app.port))]

    router.restore()
    assert router.state().admin == "ready"


def test_idle_keep_alive_connection_is_not_a_session(stack: Stack) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", stack.front_port, timeout=REQUEST_TIMEOUT)
    try:
        served = []
        for _ in range(2):
            conn.request("GET", "/")
            resp = conn.getresponse()
            served.append(resp.read().decode())
            assert resp.status == 200
        # Each request on the kept-alive client connection is balanced on its own.
        assert set(served) == {str(app.port) for app in stack.apps.values()}
        # The client connection stays open and idle: no server counts it.
        for name in ("web1", "web2"):
            st = stack.router(name).wait_drained(Deadline(2.0))
            assert (st.sessions, st.queued) == (0, 0)
        # Drained, web1 gets none of the next requests on that same connection.
        web1 = stack.router("web1")
        web1.divert()
        for _ in range(4):
            conn.request("GET", "/")
            resp = conn.getresponse()
            assert (resp.status, resp.read().decode()) == (200, str(stack.apps["web2"].port))
        web1.restore()
    finally:
        conn.close()


def test_unknown_server_lists_the_servers(stack: Stack) -> None:
    with pytest.raises(RouterError) as info:
        stack.router("web9").state()
    assert "server 'web9' not found in backend 'be_app'; servers there: web1, web2" in str(
        info.value
    )
    with pytest.raises(RouterError, match="No such server"):
        stack.router("web9").divert()


def test_unknown_backend_lists_the_backends(stack: Stack) -> None:
    router = HAProxyRouter(HAProxyTarget(stack.admin_sock, "be_nope", "web1"))
    with pytest.raises(RouterError) as info:
        router.state()
    msg = str(info.value)
    assert "backend 'be_nope' not found; backends there:" in msg
    assert "be_app" in msg and "be_other" in msg


def test_missing_socket(stack: Stack, tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.sock")
    router = HAProxyRouter(HAProxyTarget(missing, "be_app", "web1"), timeout=1.0)
    with pytest.raises(RouterError) as info:
        router.state()
    msg = str(info.value)
    assert msg.startswith(f"haproxy {missing} be_app/web1: cannot talk to the unix socket")
    assert "is HAProxy running" in msg and "level admin" in msg


def test_closed_tcp_port(stack: Stack) -> None:
    target = HAProxyTarget(f"127.0.0.1:{free_port()}", "be_app", "web1")
    with pytest.raises(RouterError, match="cannot talk to the TCP stats socket"):
        HAProxyRouter(target, timeout=1.0).check_admin()


def test_user_level_socket(stack: Stack) -> None:
    stack.router("web1").check_admin()  # the admin socket passes
    user = stack.router("web1", stack.user_sock)
    with pytest.raises(RouterError, match="at level 'user'"):
        user.check_admin()
    # What check_admin protects against: HAProxy refuses the drain itself.
    with pytest.raises(RouterError, match="Permission denied"):
        user.divert()
    # Reading works at user level.
    assert user.state().admin == "ready"
