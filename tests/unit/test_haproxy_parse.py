"""HAProxy runtime API replies -> data, on output captured from a real HAProxy 2.6.12.

tests/fixtures/haproxy/capture-haproxy.cfg says how the captures were made.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from wsgi_drain.deadline import Deadline
from wsgi_drain.errors import ConfigError, RouterError
from wsgi_drain.routers import Router
from wsgi_drain.routers.haproxy import (
    HAProxyRouter,
    HAProxyTarget,
    admin_from_bits,
    admin_from_status,
    parse_servers_state,
    parse_show_stat,
    parse_target,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "haproxy"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


# -- show stat ---------------------------------------------------------------


def test_show_stat_rows_keyed_by_header() -> None:
    rows = parse_show_stat(fixture("show_stat.txt"))
    names = [(r["pxname"], r["svname"]) for r in rows]
    assert names == [
        ("fe_main", "FRONTEND"),
        *[
            ("be_app", s)
            for s in ("web1", "web2", "web3", "web4", "web5", "web6", "web7", "web8", "spare")
        ],
        ("be_app", "BACKEND"),
        ("be_other", "o1"),
        ("be_other", "BACKEND"),
    ]
    by_name = {r["svname"]: r for r in rows if r["pxname"] == "be_app"}
    # The 4 s request was in flight on web1 when captured.
    assert by_name["web1"]["scur"] == "1"
    assert by_name["web1"]["qcur"] == "0"
    assert by_name["web1"]["type"] == "2"
    assert by_name["BACKEND"]["type"] == "1"
    statuses = {s: by_name[s]["status"] for s in by_name}
    assert statuses == {
        "web1": "UP",
        "web2": "DRAIN",  # drained, checked
        "web3": "no check",
        "web4": "DRAIN",  # drained, unchecked: DRAIN too
        "web5": "MAINT",
        "web6": "DOWN",  # drained but failing its checks: the status hides the drain
        "web7": "MAINT",  # "disabled" in the configuration
        "web8": "UP",
        "spare": "UP",
        "BACKEND": "UP",
    }
    assert by_name["web8"]["weight"] == "0"
    # 2.6 has columns past the documented static ones; every row is as wide as the header.
    assert all(None not in r for r in rows)
    assert "uweight" in rows[0]


def test_show_stat_filtered_to_servers() -> None:
    rows = parse_show_stat(fixture("show_stat_be_app_servers.txt"))
    assert [r["svname"] for r in rows] == [
        "web1",
        "web2",
        "web3",
        "web4",
        "web5",
        "web6",
        "web7",
        "web8",
        "spare",
    ]


@pytest.mark.parametrize("reply", ["No such proxy.\n\n", "", "\n", "Permission denied\n\n"])
def test_show_stat_rejects_non_csv(reply: str) -> None:
    with pytest.raises(ValueError, match="not show stat output"):
        parse_show_stat(reply)


def test_show_stat_quoted_field() -> None:
    text = '# pxname,svname,status,last_chk,\nbe,s1,DOWN,"a, ""quoted"" reason",\n\n'
    (row,) = parse_show_stat(text)
    assert row["last_chk"] == 'a, "quoted" reason'


# -- show servers state and the admin state -----------------------------------


def test_servers_state_admin_bits() -> None:
    bits = parse_servers_state(fixture("show_servers_state.txt"))
    assert bits == {
        ("be_app", "web1"): 0,
        ("be_app", "web2"): 0x08,
        ("be_app", "web3"): 0,
        ("be_app", "web4"): 0x08,
        ("be_app", "web5"): 0x01,
        ("be_app", "web6"): 0x08,
        ("be_app", "web7"): 0x05,  # config "disabled": CMAINT | FMAINT
        ("be_app", "web8"): 0,
        ("be_app", "spare"): 0,
    }


@pytest.mark.parametrize("reply", ["Can't find backend.\n\n", "", "2\n# be_id\n"])
def test_servers_state_rejects_other_text(reply: str) -> None:
    with pytest.raises(ValueError):
        parse_servers_state(reply)


@pytest.mark.parametrize(
    ("bits", "admin"),
    [
        (0x00, "ready"),
        (0x40, "ready"),  # FQDN set from the CLI: not a maintenance state
        (0x08, "drain"),
        (0x10, "drain"),  # inherited from a tracked server
        (0x18, "drain"),
        (0x01, "maint"),
        (0x02, "maint"),
        (0x05, "maint"),
        (0x20, "maint"),  # address resolution failed
        (0x09, "maint"),  # maint wins over drain
    ],
)
def test_admin_from_bits(bits: int, admin: str) -> None:
    assert admin_from_bits(bits) == admin


@pytest.mark.parametrize(
    ("status", "admin"),
    [
        ("UP", "ready"),
        ("UP 1/3", "ready"),
        ("no check", "ready"),
        ("DRAIN", "drain"),
        ("DRAIN 1/2", "drain"),
        ("DRAIN (agent)", "drain"),
        ("MAINT", "maint"),
        ("MAINT (via be/s)", "maint"),
        ("MAINT (resolution)", "maint"),
        ("DOWN", "ready"),  # the status column cannot show a drained DOWN server
    ],
)
def test_admin_from_status(status: str, admin: str) -> None:
    assert admin_from_status(status) == admin


class ReplayRouter(HAProxyRouter):
    """Answers commands from captured replies instead of a live socket."""

    def __init__(self, server: str, replies: dict[str, str]) -> None:
        super().__init__(HAProxyTarget("/run/haproxy/admin.sock", "be_app", server))
        self.replies = replies
        self.sent: list[str] = []

    def command(self, line: str) -> str:
        self.sent.append(line)
        return self.replies[line]


CAPTURED = {
    "show stat be_app 4 -1": fixture("show_stat_be_app_servers.txt"),
    "show servers state be_app": fixture("show_servers_state.txt"),
}


@pytest.mark.parametrize(
    ("server", "admin", "status", "sessions"),
    [
        ("web1", "ready", "UP", 1),
        ("web2", "drain", "DRAIN", 0),
        ("web4", "drain", "DRAIN", 0),
        ("web5", "maint", "MAINT", 0),
        ("web6", "drain", "DOWN", 0),  # drained + down: only the admin bits tell
        ("web7", "maint", "MAINT", 0),
    ],
)
def test_state_from_captures(server: str, admin: str, status: str, sessions: int) -> None:
    router = ReplayRouter(server, CAPTURED)
    st = router.state()
    assert (st.admin, st.status, st.sessions, st.queued) == (admin, status, sessions, 0)
    assert st.name == f"haproxy /run/haproxy/admin.sock be_app/{server}"
    assert st.since is not None and st.since >= 0


def test_peers_up_counts_only_servers_in_rotation() -> None:
    # Other than itself, in rotation: web1 (UP), web3 (no check), spare (backup, UP).
    # Not: web2/web4 drained, web5/web7 maint, web6 down, web8 weight 0.
    assert ReplayRouter("web2", CAPTURED).state().peers_up == 3
    # web1 itself is excluded from its own peers.
    assert ReplayRouter("web1", CAPTURED).state().peers_up == 2


def test_unknown_server_lists_the_existing_ones() -> None:
    router = ReplayRouter("web9", CAPTURED)
    with pytest.raises(RouterError) as info:
        router.state()
    msg = str(info.value)
    assert "server 'web9' not found in backend 'be_app'" in msg
    assert "web1, web2, web3, web4, web5, web6, web7, web8, spare" in msg
    assert info.value.router == router.name


def test_unknown_backend_lists_the_existing_ones() -> None:
    router = ReplayRouter("web1", {})
    router.target = HAProxyTarget("/s", "be_nope", "web1")
    router.replies = {
        "show stat be_nope 4 -1": "No such proxy.\n\n",
        "show backend": "# name\nbe_app\nbe_other\n\n",
    }
    with pytest.raises(RouterError, match=r"backend 'be_nope' not found; backends there: be_app, "):
        router.state()


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        ("\n", None),
        ("No such server.\n\n", "HAProxy refused 'set server be_app/web1 state drain': No such"),
        ("Permission denied\n\n", "Permission denied"),
    ],
)
def test_divert_reply(reply: str, error: str | None) -> None:
    router = ReplayRouter("web1", {"set server be_app/web1 state drain": reply})
    if error is None:
        router.divert()
    else:
        with pytest.raises(RouterError, match=error):
            router.divert()
    assert router.sent == ["set server be_app/web1 state drain"]


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        ("admin\n\n", None),
        ("operator\n\n", "at level 'operator'"),
        ("user\n\n", "at level 'user'.*level admin"),
        ("Unknown command\n\n", "cannot tell the CLI level"),
    ],
)
def test_check_admin(reply: str, error: str | None) -> None:
    router = ReplayRouter("web1", {"show cli level": reply})
    if error is None:
        router.check_admin()
    else:
        with pytest.raises(RouterError, match=error):
            router.check_admin()


def test_router_satisfies_protocol() -> None:
    router: Router = HAProxyRouter(parse_target("/run/haproxy/admin.sock:be_app/web1"))
    assert router.name == "haproxy /run/haproxy/admin.sock be_app/web1"


def test_command_is_one_line() -> None:
    router = HAProxyRouter(parse_target("/nonexistent.sock:be/s"))
    with pytest.raises(ValueError):
        router.command("show stat\nshow info")


# -- targets -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "target"),
    [
        (
            "/run/haproxy/admin.sock:be_app/web1",
            HAProxyTarget("/run/haproxy/admin.sock", "be_app", "web1"),
        ),
        ("127.0.0.1:9999:be_app/web1", HAProxyTarget("127.0.0.1:9999", "be_app", "web1")),
        ("[::1]:9999:be_app/web1", HAProxyTarget("[::1]:9999", "be_app", "web1")),
        (
            "lb1.example.com:9999:be.app-2/web_1",
            HAProxyTarget("lb1.example.com:9999", "be.app-2", "web_1"),
        ),
        (" /s:b/s ", HAProxyTarget("/s", "b", "s")),
    ],
)
def test_parse_target(spec: str, target: HAProxyTarget) -> None:
    assert parse_target(spec) == target


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("", "no socket"),
        ("be_app/web1", "no socket"),
        (":be_app/web1", "no socket"),
        ("/run/haproxy/admin.sock:be_app", "no '/'"),
        ("/run/haproxy/admin.sock:/web1", "empty backend"),
        ("/run/haproxy/admin.sock:be_app/", "empty server"),
        ("/run/haproxy/admin.sock:be_app/web1/x", "server name 'web1/x'"),
        ("/run/haproxy/admin.sock:be app/web1", "backend name 'be app'"),
        ("/s:be;show info/web1", "backend name"),
        ("admin.sock:be_app/web1", "neither an absolute unix socket path nor HOST:PORT"),
        ("127.0.0.1:be_app/web1", "neither"),
        ("::1:9999:be_app/web1", "neither"),
    ],
)
def test_parse_target_rejects(spec: str, why: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_target(spec)
    msg = str(info.value)
    assert why in msg
    assert "expected SOCKET:BACKEND/SERVER" in msg
    assert "/run/haproxy/admin.sock:be_app/web1" in msg


# -- the drain wait ----------------------------------------------------------


def with_counts(server: str, scur: int, qcur: int) -> str:
    """The captured `show stat` reply with `server`'s scur and qcur set."""
    return with_fields(server, scur=str(scur), qcur=str(qcur))


def with_fields(server: str, **values: str) -> str:
    """The captured `show stat` reply with some of `server`'s fields set."""
    lines = CAPTURED["show stat be_app 4 -1"].splitlines(keepends=True)
    header = lines[0].lstrip("# ").rstrip("\n").split(",")
    out = [lines[0]]
    for line in lines[1:]:
        fields = line.rstrip("\n").split(",")
        if len(fields) > 1 and fields[1] == server:
            for key, value in values.items():
                fields[header.index(key)] = value
            line = ",".join(fields) + "\n"
        out.append(line)
    return "".join(out)


class SequenceRouter(ReplayRouter):
    """Each `show stat` answers with the next reply of `stats`; the last one repeats."""

    def __init__(self, server: str, stats: list[str]) -> None:
        super().__init__(server, dict(CAPTURED))
        self.stats = stats
        self.poll_interval = 0.0

    def command(self, line: str) -> str:
        if line == "show stat be_app 4 -1":
            self.sent.append(line)
            return self.stats.pop(0) if len(self.stats) > 1 else self.stats[0]
        return super().command(line)


def test_queue_drain_waits_while_requests_wait_in_haproxys_queue() -> None:
    # No request on the server, two waiting in its queue (maxconn reached):
    # those are still ours to serve, so the drain is not done.
    router = SequenceRouter(
        "web2", [with_counts("web2", 0, 2), with_counts("web2", 1, 0), with_counts("web2", 0, 0)]
    )
    st = router.wait_drained(Deadline(60))
    assert (st.sessions, st.queued) == (0, 0)
    # It read on past the queued state and the in-flight one: three reads.
    assert router.sent.count("show stat be_app 4 -1") == 3


def test_queue_left_at_the_deadline_is_reported() -> None:
    router = SequenceRouter("web2", [with_counts("web2", 0, 3)])
    st = router.wait_drained(Deadline(0))
    assert (st.sessions, st.queued) == (0, 3)


# -- a command sent but unanswered --------------------------------------------


def test_unanswered_command_may_have_been_applied(tmp_path: Path) -> None:
    # A stats socket that takes the command and never answers: HAProxy may have
    # carried it out, so the error says "unknown" (applied=None), not "not done".
    path = tmp_path / "admin.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen()
    got: list[bytes] = []

    def take() -> None:
        conn, _ = listener.accept()
        with conn:
            got.append(conn.recv(4096))
            conn.recv(4096)  # holds the connection open until the client gives up

    thread = threading.Thread(target=take, daemon=True)
    thread.start()
    try:
        router = HAProxyRouter(HAProxyTarget(str(path), "be_app", "web1"), timeout=0.5)
        with pytest.raises(RouterError, match="did not answer") as info:
            router.divert()
        assert info.value.applied is None
        thread.join(10)
        assert got == [b"set server be_app/web1 state drain\n"]
    finally:
        listener.close()


def test_unreachable_socket_means_the_command_was_not_applied(tmp_path: Path) -> None:
    router = HAProxyRouter(HAProxyTarget(str(tmp_path / "none.sock"), "be_app", "web1"))
    with pytest.raises(RouterError, match="cannot talk to the unix socket") as info:
        router.divert()
    assert info.value.applied is False


def test_peers_failing_names_a_peer_up_but_failing_its_checks() -> None:
    # "UP 1/3": still up and in rotation, but its checks fail and it is going down.
    router = ReplayRouter("web2", dict(CAPTURED))
    router.replies["show stat be_app 4 -1"] = with_fields("web1", status="UP 1/3")
    st = router.state()
    assert st.peers_failing == ("web1",)
    assert st.peers_up == 3  # counted until it is DOWN
    assert ReplayRouter("web2", CAPTURED).state().peers_failing == ()
