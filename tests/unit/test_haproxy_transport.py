"""HAProxy's runtime API transport (wsgi_drain/routers/haproxy.py) against local sockets.

A stats socket is a stream that takes one command line and answers until it
closes the connection (HAProxy's non-interactive mode).  Served here by a
thread on a unix socket or on 127.0.0.1, answering in several pieces, so
what is read, how long it waits and what an operator is told when it
cannot talk are each pinned.  The real HAProxy is
tests/integration/test_haproxy_router.py's.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.servers import RecordingServer
from tests.unit.test_haproxy_parse import CAPTURED, ReplayRouter, with_counts, with_fields
from wsgi_drain.deadline import Deadline
from wsgi_drain.errors import RouterError
from wsgi_drain.routers.haproxy import (
    HAProxyRouter,
    HAProxyTarget,
    _split_unix,
    parse_servers_state,
    parse_target,
)

REPLY = "line one\nline two\n" + "x" * 70000 + "\nend\n"


class StatsSocket(RecordingServer):
    """Answers each connection's one line with `REPLY`, in three pieces, then closes."""

    def __init__(self, listener: socket.socket) -> None:
        super().__init__(listener, lambda data: data.endswith(b"\n"), self._reply)

    @staticmethod
    def _reply(conn: socket.socket) -> None:
        body = REPLY.encode()
        third = len(body) // 3
        for piece in (body[:third], body[third : 2 * third], body[2 * third :]):
            conn.sendall(piece)
            threading.Event().wait(0.02)


@pytest.fixture
def unix_stats(tmp_path: Path) -> Iterator[tuple[str, StatsSocket]]:
    path = str(tmp_path / "admin.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen()
    try:
        yield path, StatsSocket(listener)
    finally:
        listener.close()


@pytest.fixture
def tcp_stats() -> Iterator[tuple[str, StatsSocket]]:
    listener = socket.socket(socket.AF_INET)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}", StatsSocket(listener)
    finally:
        listener.close()


def test_command_reads_the_whole_reply_until_haproxy_closes(
    unix_stats: tuple[str, StatsSocket],
) -> None:
    path, server = unix_stats
    router = HAProxyRouter(HAProxyTarget(path, "be_app", "web1"), timeout=10)
    assert router.command("show stat be_app 4 -1") == REPLY
    assert server.requests == [b"show stat be_app 4 -1\n"]


def test_command_over_a_tcp_stats_socket(tcp_stats: tuple[str, StatsSocket]) -> None:
    where, server = tcp_stats
    target = parse_target(f"{where}:be_app/web1")
    assert target.socket == where
    assert HAProxyRouter(target, timeout=10).command("show info") == REPLY
    assert server.requests == [b"show info\n"]


def test_command_over_ipv6_loopback_in_brackets() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this host")  # not a root-only test: a kernel without IPv6
    listener = socket.socket(socket.AF_INET6)
    try:
        listener.bind(("::1", 0))
    except OSError:
        listener.close()
        pytest.skip("no ::1 on this host")
    listener.listen()
    try:
        server = StatsSocket(listener)
        where = f"[::1]:{listener.getsockname()[1]}"
        assert HAProxyRouter(HAProxyTarget(where, "be", "s"), timeout=10).command("help") == REPLY
        assert server.requests == [b"help\n"]
    finally:
        listener.close()


def test_unix_socket_unreachable_says_what_to_check(tmp_path: Path) -> None:
    sock = str(tmp_path / "none.sock")
    router = HAProxyRouter(HAProxyTarget(sock, "be_app", "web1"))
    with pytest.raises(RouterError) as err:
        router.state()
    assert err.value.applied is False
    assert str(err.value) == (
        f"{router.name}: cannot talk to the unix socket {sock} (No such file or directory); "
        f"is HAProxy running, and does haproxy.cfg have `stats socket {sock} ... level admin` "
        "in its global section? (wsgi-drain must be allowed to open it: check its mode/user)"
    )


def test_tcp_socket_refused_says_tcp_stats_socket() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there now
    where = f"127.0.0.1:{port}"
    with pytest.raises(RouterError) as err:
        HAProxyRouter(HAProxyTarget(where, "be_app", "web1")).divert()
    assert err.value.applied is False
    assert f"cannot talk to the TCP stats socket {where} (Connection refused)" in str(err.value)


def test_silent_socket_times_out_with_the_timeout_in_the_message(tmp_path: Path) -> None:
    path = str(tmp_path / "silent.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen()
    held: list[socket.socket] = []
    taker = threading.Thread(target=lambda: held.append(listener.accept()[0]), daemon=True)
    taker.start()
    try:
        router = HAProxyRouter(HAProxyTarget(path, "be_app", "web1"), timeout=0.3)
        with pytest.raises(RouterError) as err:
            router.command("show info")
        assert err.value.applied is None, "sent: it may have been carried out"
        assert str(err.value) == (
            f"{router.name}: stats socket {path} did not answer 'show info' within 0.3 s; "
            "is HAProxy overloaded or is something else listening there?"
        )
    finally:
        taker.join(5)
        for conn in held:
            conn.close()
        listener.close()


def test_a_socket_that_drips_is_cut_at_the_timeout_not_per_read(tmp_path: Path) -> None:
    path = str(tmp_path / "drip.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen()
    stop = threading.Event()
    sent: list[int] = []

    def drip() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(4096)
            try:
                while not stop.is_set():
                    conn.sendall(b"x")
                    sent.append(1)
                    stop.wait(0.05)
            except OSError:
                pass

    thread = threading.Thread(target=drip, daemon=True)
    thread.start()
    try:
        router = HAProxyRouter(HAProxyTarget(path, "be_app", "web1"), timeout=0.5)
        with pytest.raises(RouterError, match="did not answer"):
            router.command("show info")
        # Each byte came well within a per-read timeout: only the whole-reply
        # deadline could end it, and it did while the socket still dripped.
        assert len(sent) > 1
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_a_command_with_a_newline_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    router = HAProxyRouter(HAProxyTarget(str(tmp_path / "x.sock"), "be", "s"))
    for line in ("show info\nshutdown sessions", "show info\r"):
        with pytest.raises(ValueError, match="a HAProxy command is one line"):
            router.command(line)


# -- a unix socket path with ':' in it ------------------------------------------------------


def test_split_unix_prefers_an_existing_socket_whose_name_has_a_colon(tmp_path: Path) -> None:
    path = str(tmp_path / "admin:1.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    try:
        assert _split_unix(f"{path}:be:app/web1") == (path, "be:app/web1")
        assert parse_target(f"{path}:be_app/web1") == HAProxyTarget(path, "be_app", "web1")
    finally:
        listener.close()


def test_split_unix_cuts_at_the_first_colon_when_no_longer_path_is_a_socket(
    tmp_path: Path,
) -> None:
    plain = tmp_path / "a:b"
    plain.write_text("")  # a file, not a socket: not taken as the path
    text = f"{tmp_path}/run.sock:a:b/web1"
    assert _split_unix(text) == (f"{tmp_path}/run.sock", "a:b/web1")
    assert _split_unix(f"{tmp_path}/a:b:be/web1") == (f"{tmp_path}/a", "b:be/web1")
    assert _split_unix("/no/colon/here") == ("", "")
    assert os.path.exists(plain)


# -- replies that are not what was asked for -------------------------------------------------


STATE_HEADER = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state\n"


def test_servers_state_reads_columns_by_name_and_skips_comments() -> None:
    text = STATE_HEADER + "# a comment row\n3 be_app 1 web1 10.0.0.1 2 8\n3 other 1 web1 x 2 1\n"
    assert parse_servers_state(text) == {("be_app", "web1"): 8, ("other", "web1"): 1}


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("1\n# be_id be_name srv_id\n3 be_app 1\n", "header lacks a column"),
        (STATE_HEADER + "3 be_app 1 web1 10.0.0.1 2\n", "row too short or malformed"),
        (STATE_HEADER + "3 be_app 1 web1 10.0.0.1 2 x\n", "row too short or malformed"),
        ("1\nbe_id be_name\n", "not show servers state output"),
        (" 2 \n# be_name\n", "not show servers state output"),
    ],
)
def test_servers_state_malformed_is_refused_with_the_line(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_servers_state(text)


def test_show_stat_error_reply_is_said_as_haproxy_said_it() -> None:
    router = ReplayRouter("web1", {"show stat be_app 4 -1": "Permission denied\n"})
    with pytest.raises(RouterError) as err:
        router.state()
    assert str(err.value) == f"{router.name}: show stat failed: 'Permission denied'"


def test_servers_state_error_reply_is_said_as_haproxy_said_it() -> None:
    replies = dict(CAPTURED)
    replies["show servers state be_app"] = "Can't find backend.\n"
    router = ReplayRouter("web1", replies)
    with pytest.raises(RouterError) as err:
        router.state()
    assert str(err.value) == (
        f'{router.name}: show servers state be_app failed: "Can\'t find backend."'
    )


def test_admin_bits_of_another_backend_are_not_this_ones() -> None:
    replies = dict(CAPTURED)
    replies["show servers state be_app"] = STATE_HEADER + "3 be_other 1 web1 x 2 1\n"
    # web1 has no bits of its own backend: its status column ("UP") is all there is.
    assert ReplayRouter("web1", replies).state().admin == "ready"


def test_a_peer_with_weight_zero_is_not_serving() -> None:
    replies = dict(CAPTURED)
    full = ReplayRouter("web1", dict(CAPTURED)).state()
    replies["show stat be_app 4 -1"] = with_fields("web3", weight="0")
    st = ReplayRouter("web1", replies).state()
    assert st.peers_up == (full.peers_up or 0) - 1
    assert "web3 (no check)" in st.peers_out


def test_state_without_lastchg_has_no_since_and_blank_counts_are_zero() -> None:
    replies = dict(CAPTURED)
    replies["show stat be_app 4 -1"] = with_fields("web1", lastchg="", scur=" ", qcur="")
    st = ReplayRouter("web1", replies).state()
    assert st.since is None and (st.sessions, st.queued) == (0, 0)
    assert st.lb_up is True


def test_backends_listed_when_none_exist_says_none() -> None:
    replies = {"show stat be_app 4 -1": "No such proxy.\n", "show backend": "# name\n"}
    with pytest.raises(RouterError) as err:
        ReplayRouter("web1", replies).state()
    assert str(err.value).endswith("backend 'be_app' not found; backends there: none")


def test_set_state_refused_by_haproxy_says_the_command_and_the_answer() -> None:
    router = ReplayRouter("web1", {"set server be_app/web1 state ready": "No such server.\n"})
    with pytest.raises(RouterError) as err:
        router.restore()
    assert str(err.value) == (
        f"{router.name}: HAProxy refused 'set server be_app/web1 state ready': No such server."
    )
    silent = ReplayRouter("web1", {"set server be_app/web1 state drain": "\n"})
    silent.divert()
    assert silent.sent == ["set server be_app/web1 state drain"]


# -- the edges mutation testing found ---------------------------------------------------------


def test_config_disabled_bit_alone_is_maint() -> None:
    from wsgi_drain.routers.haproxy import admin_from_bits

    assert admin_from_bits(0x04) == "maint"
    assert admin_from_bits(0x10) == "drain"


def test_a_down_peer_in_rotation_is_not_up() -> None:
    replies = dict(CAPTURED)
    replies["show stat be_app 4 -1"] = with_fields("web3", status="DOWN")
    st = ReplayRouter("web1", replies).state()
    assert st.peers_up == 1 and "web3 (DOWN)" in st.peers_out


def test_peers_out_are_named_with_the_admin_state_or_else_the_status() -> None:
    st = ReplayRouter("web1", dict(CAPTURED)).state()
    assert st.peers_out == (
        "web2 (drain)", "web4 (drain)", "web5 (maint)", "web6 (drain)",
        "web7 (maint)", "web8 (UP)",
    )  # fmt: skip


def test_rows_of_other_proxies_and_other_types_are_not_peers() -> None:
    text = CAPTURED["show stat be_app 4 -1"]
    web3 = next(line for line in text.splitlines() if line.startswith("be_app,web3,"))
    fields = web3.split(",")
    extra = [
        ",".join(["be_apa", "x1", *fields[2:]]),  # another proxy, sorting before
        ",".join(["be_apq", "x2", *fields[2:]]),  # and after
    ]
    header = text.splitlines()[0].lstrip("# ").split(",")
    typed = fields.copy()
    typed[1], typed[header.index("type")] = "BACKEND", "1"
    extra.append(",".join(typed))
    typed = fields.copy()
    typed[1], typed[header.index("type")] = "x3", "3"
    extra.append(",".join(typed))
    replies = dict(CAPTURED)
    replies["show stat be_app 4 -1"] = text.rstrip("\n") + "\n" + "\n".join(extra) + "\n"
    assert ReplayRouter("web1", replies).state().peers_up == 2


def test_admin_bits_of_a_backend_sorting_before_this_one_are_not_this_ones() -> None:
    replies = dict(CAPTURED)
    replies["show servers state be_app"] = STATE_HEADER + "3 be_aaa 1 web1 x 2 1\n"
    assert ReplayRouter("web1", replies).state().admin == "ready"


def test_servers_state_with_no_rows_is_an_empty_table() -> None:
    assert parse_servers_state(STATE_HEADER) == {}


@pytest.mark.parametrize(
    "text",
    [
        "0\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state\n",
        STATE_HEADER + "3 be_app 1 web1\n",
    ],
)
def test_servers_state_other_version_or_short_row_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        parse_servers_state(text)


def test_unparsable_replies_are_quoted_up_to_200_characters() -> None:
    from wsgi_drain.routers.haproxy import parse_show_stat

    text = "y" * 300
    with pytest.raises(ValueError) as stat:
        parse_show_stat(text)
    assert str(stat.value) == f"not show stat output: {'y' * 200!r}"
    with pytest.raises(ValueError) as servers:
        parse_servers_state(text)
    assert str(servers.value) == f"not show servers state output: {'y' * 200!r}"
    with pytest.raises(ValueError) as header:
        parse_servers_state("1\n# be_id be_name\n")
    assert str(header.value) == "show servers state header lacks a column: '# be_id be_name'"


@pytest.mark.parametrize("prefix", ["ipv4@", "tcp@"])
def test_haproxy_cfg_spelling_of_a_tcp_socket_is_taken(prefix: str) -> None:
    target = parse_target(f"{prefix}127.0.0.1:9999:be_app/web1")
    assert target == HAProxyTarget("127.0.0.1:9999", "be_app", "web1")


def test_servers_state_of_the_version_line_alone_is_a_value_error() -> None:
    # No header after the version: refused as not servers state output (a ValueError, which
    # state() turns into a RouterError), never an IndexError out of the parser.
    with pytest.raises(ValueError, match="not show servers state output: '1'"):
        parse_servers_state("1\n")


def test_state_reads_the_row_of_its_own_server_not_the_first_name_sorting_after_it() -> None:
    # "spare" comes last in the backend, after web1..web8, which all sort after it.
    replies = dict(CAPTURED)
    replies["show stat be_app 4 -1"] = with_fields("spare", scur="5", status="UP 2/3")
    st = ReplayRouter("spare", replies).state()
    assert (st.status, st.sessions) == ("UP 2/3", 5)


def test_a_peer_whose_bits_say_drain_is_not_serving_while_its_status_still_says_up() -> None:
    # web3 drained between the `show stat` read ("no check": up) and the bits read (drain):
    # the bits are the later word, so web3 is not counted among the peers that serve.
    replies = dict(CAPTURED)
    replies["show servers state be_app"] = CAPTURED["show servers state be_app"].replace(
        "3 be_app 3 web3 127.0.0.1 2 0 ", "3 be_app 3 web3 127.0.0.1 2 8 "
    )
    assert replies["show servers state be_app"] != CAPTURED["show servers state be_app"]
    st = ReplayRouter("web1", replies).state()
    assert st.peers_up == 1  # spare only
    assert "web3 (drain)" in st.peers_out


def test_the_stats_socket_timeout_is_the_documented_default() -> None:
    doc = (Path(__file__).parent.parent.parent / "docs" / "haproxy.md").read_text()
    said = re.search(r"`timeout` \(default (\d+(?:\.\d+)?) s\)", doc)
    assert said is not None, "docs/haproxy.md names the socket timeout's default"
    router = HAProxyRouter(HAProxyTarget("/run/haproxy/admin.sock", "be_app", "web1"))
    assert router.timeout == float(said.group(1))


def test_the_drain_wait_polls_every_50_ms_until_the_server_is_idle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The router's own poll (not SequenceRouter's 0): the hand-run drain waits on it.
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    stats = [with_counts("web2", 1, 0), with_counts("web2", 0, 1), with_counts("web2", 0, 0)]

    class Polled(ReplayRouter):
        def command(self, line: str) -> str:
            return stats.pop(0) if line == "show stat be_app 4 -1" else super().command(line)

    st = Polled("web2", dict(CAPTURED)).wait_drained(Deadline(60))
    assert (st.sessions, st.queued, stats) == (0, 0, [])
    assert slept == [0.05, 0.05]


class KeptSocketRouter(HAProxyRouter):
    """Keeps the socket of each command, to read the timeout its last read had."""

    def __init__(self, target: HAProxyTarget, timeout: float) -> None:
        super().__init__(target, timeout=timeout)
        self.sockets: list[socket.socket] = []

    def _connect(self) -> socket.socket:
        sock = super()._connect()
        self.sockets.append(sock)
        return sock


def test_no_read_of_a_reply_may_wait_past_the_commands_timeout(
    unix_stats: tuple[str, StatsSocket],
) -> None:
    path, _ = unix_stats
    router = KeptSocketRouter(HAProxyTarget(path, "be_app", "web1"), timeout=0.5)
    assert router.command("show info") == REPLY
    (sock,) = router.sockets
    last = sock.gettimeout()
    assert last is not None and 0 < last <= 0.5


def test_a_tcp_stats_socket_is_reached_at_its_own_address_not_at_loopback() -> None:
    # 127.0.0.2 is loopback too on Linux, but a listener bound there alone is not
    # reached by a connection to 127.0.0.1 (or to no host at all).
    listener = socket.socket(socket.AF_INET)
    try:
        listener.bind(("127.0.0.2", 0))
    except OSError:
        listener.close()
        # Linux routes all of 127/8 to lo: on CI this must run, never skip.
        if os.environ.get("CI") == "true":
            pytest.fail("127.0.0.2 cannot be bound: CI's loopback must take all of 127/8")
        pytest.skip("127.0.0.2 cannot be bound on this host")
    listener.listen()
    try:
        server = StatsSocket(listener)
        where = f"127.0.0.2:{listener.getsockname()[1]}"
        router = HAProxyRouter(parse_target(f"{where}:be_app/web1"), timeout=10)
        assert router.command("show info") == REPLY
        assert server.requests == [b"show info\n"]
    finally:
        listener.close()
