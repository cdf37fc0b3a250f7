"""The impact's counting rules (wsgi_drain/impact.py): each test breaks if its rule does."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from wsgi_drain.applog import split_line
from wsgi_drain.errors import RouterError
from wsgi_drain.impact import (
    HAPROXY_COUNTERS,
    MAX_EVIDENCE,
    Impact,
    Source,
    apache_failures,
    counters_delta,
    haproxy_source,
    log_source,
    nginx_failures,
)
from wsgi_drain.outcome import Outcome
from wsgi_drain.report import print_restart, restart_dict
from wsgi_drain.report_runs import impact_line
from wsgi_drain.restart.impact import _nginx_error_log
from wsgi_drain.routers.haproxy import HAProxyRouter, HAProxyTarget

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "errorlog"

ZERO = {"hrsp_5xx": 0, "eresp": 0, "econ": 0, "wretr": 0, "wredis": 0, "cli_abrt": 0, "srv_abrt": 0}


def messages(name: str) -> list[str]:
    return [split_line(line).message for line in (FIXTURES / name).read_text().splitlines()]


def test_impact_apache_log_counts_the_cut_request_of_the_group_only() -> None:
    # The real 4.9.4 log: one request of 'gamma' cut when its daemon aborted, one of 'delta'.
    lines = messages("debian-4.9.4-real.log")
    gamma = apache_failures(lines, "gamma")
    assert len(gamma) == 1
    assert (
        "Truncated or oversized response headers received from daemon process 'gamma'" in (gamma[0])
    )
    assert len(apache_failures(lines, "delta")) == 1
    assert apache_failures(lines, "alpha") == []
    # A group whose name is a prefix of another's is not confused with it.
    assert apache_failures(lines, "gam") == []


def test_impact_apache_log_knows_mod_wsgi_6_wording() -> None:
    lines = messages("pypi-6.1.1-real.log")
    assert len(apache_failures(lines, "gamma")) == 1
    shop = apache_failures(messages("mod_wsgi-6.1.1.log"), "shop")
    assert len(shop) == 2  # WSGI0147 and WSGI0146, one request each


def test_impact_apache_log_counts_timeouts_queue_backlog_and_premature_end() -> None:
    raw = [
        "[Mon Nov 23 10:00:00 2026] [wsgi:error] [pid 1:tid 2] [client 127.0.0.1:1] Timeout when "
        "reading response headers from daemon process 'app': /srv/app.wsgi",
        "[Mon Nov 23 10:00:00 2026] [wsgi:error] [pid 3:tid 3] [client 127.0.0.1:2] mod_wsgi "
        "(pid=3): Queue timeout expired for WSGI daemon process 'app'.",
        "[Mon Nov 23 10:00:00 2026] [wsgi:error] [pid 4:tid 5] (11)Resource temporarily "
        "unavailable: [client 127.0.0.1:3] mod_wsgi (pid=4): Unable to connect to WSGI daemon "
        "process 'app' on '/run/wsgi.1.0.1.sock' after multiple attempts as listener backlog "
        "limit was exceeded or the socket does not exist.",
        "[Mon Nov 23 10:00:00 2026] [cgi:error] [pid 6:tid 7] [client 127.0.0.1:4] End of "
        "script output before headers: app.wsgi",
        "[Mon Nov 23 10:00:00 2026] [core:error] [pid 6:tid 7] [client 127.0.0.1:4] Premature "
        "end of script headers: app.wsgi",
        "[Mon Nov 23 10:00:00 2026] [wsgi:error] [pid 8:tid 9] (104)Connection reset by peer: "
        "[client 127.0.0.1:5] mod_wsgi (pid=8): Failed to proxy response from daemon.",
        # The app's own output mentioning a timeout is not a lost request.
        "[Mon Nov 23 10:00:00 2026] [wsgi:error] [pid 10:tid 11] [client 127.0.0.1:6] "
        "app: read timeout from the database",
        # Another group's failure is not this group's.
        "[Mon Nov 23 10:00:00 2026] [wsgi:error] [pid 1:tid 2] [client 127.0.0.1:1] Timeout when "
        "reading response headers from daemon process 'other': /srv/other.wsgi",
    ]
    found = apache_failures([split_line(r).message for r in raw], "app")
    assert len(found) == 5
    assert not any("database" in f or "'other'" in f for f in found)


def test_impact_haproxy_counts_5xx_response_and_connection_errors_only() -> None:
    after = {**ZERO, "hrsp_5xx": 2, "eresp": 1, "econ": 1, "wretr": 3, "wredis": 1, "cli_abrt": 4}
    after["srv_abrt"] = 1  # inside eresp already: not counted twice
    source = haproxy_source("haproxy s be/a", ZERO, after)
    assert source.read and source.failed == 4
    assert source.counters is not None and source.counters["wretr"] == 3
    assert "haproxy s be/a: hrsp_5xx +2" in source.evidence
    assert haproxy_source("h", ZERO, ZERO).failed == 0


def test_impact_haproxy_counters_that_went_down_are_not_read_never_zero() -> None:
    before = {**ZERO, "hrsp_5xx": 7}
    source = haproxy_source("h", before, ZERO)
    assert not source.read and source.failed is None
    assert source.error is not None and "reloaded" in source.error
    try:
        counters_delta(before, ZERO)
    except ValueError:
        pass
    else:
        raise AssertionError("a counter that went down must not give a difference")


def test_impact_nginx_log_counts_lines_naming_the_server() -> None:
    lines = [
        "2026/12/02 16:00:00 [error] 7#7: *1 upstream prematurely closed connection while reading "
        'response header from upstream, client: 127.0.0.1, server: , request: "GET / HTTP/1.1", '
        'upstream: "http://127.0.0.1:8081/", host: "127.0.0.1:80"',
        "2026/12/02 16:00:00 [error] 7#7: *2 connect() failed (111: Connection refused) while "
        'connecting to upstream, client: 127.0.0.1, upstream: "http://127.0.0.1:8081/slow"',
        # The other server (8082 is not 8081, nor is 127.0.0.1:80810).
        "2026/12/02 16:00:00 [error] 7#7: *3 connect() failed (111: Connection refused) while "
        'connecting to upstream, client: 127.0.0.1, upstream: "http://127.0.0.1:8082/"',
        "2026/12/02 16:00:00 [error] 7#7: *4 connect() failed (111) while connecting to "
        'upstream, upstream: "http://127.0.0.1:80810/"',
        "2026/12/02 16:00:00 [error] 7#7: *5 no live upstreams while connecting to upstream, "
        'client: 127.0.0.1, upstream: "http://be_app/"',
        "2026/12/02 16:00:00 [notice] 7#7: signal process started",
    ]
    assert len(nginx_failures(lines, "127.0.0.1:8081")) == 2
    assert len(nginx_failures(lines, "127.0.0.1:8081", upstream="be_app")) == 3


def test_impact_failed_is_the_largest_read_source_never_the_sum_nor_an_unread_zero() -> None:
    impact = Impact(started=0.0)
    assert impact.failed is None
    impact.sources.append(Source.unread("haproxy", "h", "socket gone"))
    assert impact.failed is None  # unreadable: unknown, not 0
    impact.sources.append(log_source("apache-log", "a", ["x"]))
    impact.sources.append(haproxy_source("h2", ZERO, {**ZERO, "hrsp_5xx": 1}))
    assert impact.failed == 1  # the same cut request seen twice is one
    impact.sources.append(log_source("nginx-log", "n", ["a", "b", "c"]))
    assert impact.failed == 3


def test_impact_evidence_is_bounded() -> None:
    source = log_source("apache-log", "a", [f"line {i}" for i in range(MAX_EVIDENCE + 5)])
    assert source.failed == MAX_EVIDENCE + 5
    assert len(source.evidence) == MAX_EVIDENCE + 1
    assert "5 more" in source.evidence[-1]


def _outcome(impact: Impact | None) -> Outcome:
    return Outcome(
        group="myapp", mode="drain", requested_mode="drain", signal="SIGUSR1", impact=impact
    )


def test_impact_line_says_each_source_and_an_unread_one_as_not_read() -> None:
    impact = Impact(started=1.0, ended=2.0)
    impact.sources.append(haproxy_source("h", ZERO, ZERO))
    impact.sources.append(log_source("apache-log", "a", []))
    assert (
        impact_line(impact) == "impact: 0 requests failed (HAProxy counters +0, Apache log: none)"
    )
    impact.sources[0] = Source.unread("haproxy", "h", "socket gone")
    assert impact_line(impact) == (
        "impact: 0 requests failed (HAProxy counters: not read (socket gone), Apache log: none)"
    )
    impact.sources[1] = Source.unread("apache-log", "a", "pipe")
    assert impact_line(impact).startswith("impact: unknown, no source could be read")
    out = io.StringIO()
    print_restart(_outcome(impact), out)
    assert "  impact: unknown" in out.getvalue()


def test_impact_json_failed_null_when_unread_and_int_with_evidence() -> None:
    impact = Impact(started=1.0, ended=2.0, sources=[Source.unread("apache-log", "a", "pipe")])
    data = restart_dict(_outcome(impact))["impact"]
    assert data["failed"] is None and data["sources"][0]["read"] is False
    impact.sources.append(log_source("apache-log", "b", ["Truncated ... 'myapp'"]))
    data = restart_dict(_outcome(impact))["impact"]
    assert data["failed"] == 1
    assert data["evidence"] == ["Truncated ... 'myapp'"]
    assert restart_dict(_outcome(None))["impact"] is None


class _Replay(HAProxyRouter):
    """HAProxy's answer to `show stat` given as text, no socket."""

    def __init__(self, reply: str, server: str = "a") -> None:
        super().__init__(HAProxyTarget("/run/haproxy/admin.sock", "be_app", server))
        self.reply = reply

    def command(self, line: str) -> str:
        assert line == "show stat be_app 4 -1"
        return self.reply


STAT = (
    "# pxname,svname,scur,econ,eresp,wretr,wredis,hrsp_5xx,cli_abrt,srv_abrt,type,\n"
    "be_app,a,0,1,2,3,4,5,6,7,2,\n"
    "be_app,b,0,9,9,9,9,9,9,9,2,\n"
)


def test_impact_haproxy_counters_are_read_from_the_servers_own_row() -> None:
    got = _Replay(STAT).counters(HAPROXY_COUNTERS)
    assert got == {
        "econ": 1, "eresp": 2, "wretr": 3, "wredis": 4, "hrsp_5xx": 5, "cli_abrt": 6,
        "srv_abrt": 7,
    }  # fmt: skip
    # A HAProxy without a column leaves it out, not 0.
    assert "srv_abrt" not in _Replay(STAT.replace("srv_abrt", "other")).counters(HAPROXY_COUNTERS)


def test_impact_haproxy_counters_match_the_server_by_name_not_by_identity() -> None:
    # A name read from the socket is a new string object, never the target's own:
    # the row is found by equality (one-letter names are interned, so "a" hides it).
    stat = STAT.replace("be_app,b,", "be_app," + "".join(["app-", "2"]) + ",")
    assert _Replay(stat, server="app-2").counters(("econ",)) == {"econ": 9}


def test_impact_haproxy_counters_are_the_servers_own_not_the_first_row_sorting_after_it() -> None:
    # HAProxy lists servers in the configuration's order, not sorted: "b" may come first.
    rows = STAT.splitlines(keepends=True)
    stat = rows[0] + rows[2] + rows[1]
    assert _Replay(stat, server="a").counters(("econ",)) == {"econ": 1}


def test_impact_haproxy_counters_of_a_server_not_in_the_backend_is_a_router_error() -> None:
    with pytest.raises(RouterError, match="server 'gone' not found"):
        _Replay(STAT, server="gone").counters(HAPROXY_COUNTERS)


def test_impact_nginx_error_log_is_known_only_from_an_absolute_dash_e() -> None:
    class Master:
        def __init__(self, argv: list[str]) -> None:
            self.argv = argv

        def _master(self) -> tuple[int, list[str]]:
            return 1, self.argv

    known = Master(["/usr/sbin/nginx", "-p", "/srv", "-e", "/var/log/ng.log", "-t", "-q"])
    assert _nginx_error_log(known) == "/var/log/ng.log"  # type: ignore[arg-type]
    assert _nginx_error_log(Master(["/usr/sbin/nginx", "-e", "logs/e.log"])) is None  # type: ignore[arg-type]
    assert _nginx_error_log(Master(["/usr/sbin/nginx", "-g", "daemon on;"])) is None  # type: ignore[arg-type]
