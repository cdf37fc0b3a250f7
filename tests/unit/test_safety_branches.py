"""The restart's safety branches that decide whether traffic is cut (issue 25).

Each test drives a real phase function (restart/divert.py's `divert`,
restart/restore.py's `settle`, peers.py's turn-taking) against a scripted
Router: a fake of our own interface, never of a load balancer.  What a
router does at a given moment (a HAProxy reload putting the server back in
rotation, an operator's MAINT, a peer failing its checks, an unreadable
socket, a lost answer) is scripted by `on_read`/`on_wait` hooks, so each
branch is reached exactly, and each test fails when its branch is broken.
The integration suites drive the same branches through real HAProxy runs
where the branch needs one (tests/integration/test_safety_branches.py).
"""

from __future__ import annotations

import dataclasses
import http.server
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.unit.clock import SleepClock
from wsgi_drain.apacheconf import parse_config
from wsgi_drain.config import Settings
from wsgi_drain.deadline import Deadline
from wsgi_drain.discovery import DaemonProcess, GroupProcesses
from wsgi_drain.errors import Interrupted, RouterError, UnhealthyError
from wsgi_drain.identity import GroupSocket
from wsgi_drain.interrupts import Interrupts
from wsgi_drain.outcome import Outcome, RouterRecord
from wsgi_drain.restart import policy
from wsgi_drain.restart.divert import divert
from wsgi_drain.restart.policy import Verdict
from wsgi_drain.restart.records import Routing, Run, Target
from wsgi_drain.restart.restore import begin_journal, settle
from wsgi_drain.routers import RouterState
from wsgi_drain.state import Journal
from wsgi_drain.status import ExitStatus

SPEC = "recording:web1"


class Scripted:
    """Our Router interface over a server whose state a test scripts.

    `on_read(self)` runs before each `state()` answer (it may change the
    fields or raise, as a reload or an unreachable socket would);
    `on_wait(self)` runs at each drain-wait slice.  Every command is recorded.
    """

    def __init__(
        self, admin: str = "ready", *, peers_up: int | None = 1, name: str = "web1"
    ) -> None:
        self.spec = f"recording:{name}"
        self.admin = admin
        self.status = "UP"
        self.sessions = 0
        self.queued = 0
        self.sessions_known = True
        self.peers_up: int | None = peers_up
        self.peers_out: tuple[str, ...] = ()
        self.peers_failing: tuple[str, ...] = ()
        self.lb_up: bool | None = None
        self.reads = 0
        self.commands: list[str] = []
        self.on_read: Callable[[Scripted], None] | None = None
        self.on_wait: Callable[[Scripted], None] | None = None
        self.divert_error: RouterError | None = None
        self.restore_error: RouterError | None = None

    @property
    def name(self) -> str:
        return self.spec

    def state(self) -> RouterState:
        self.reads += 1
        if self.on_read is not None:
            self.on_read(self)
        return RouterState(name="web1", admin=self.admin, status=self.status,
                           sessions=self.sessions, queued=self.queued,
                           peers_up=self.peers_up, sessions_known=self.sessions_known,
                           peers_out=self.peers_out, lb_up=self.lb_up,
                           peers_failing=self.peers_failing)  # fmt: skip

    def divert(self) -> None:
        self.commands.append("divert")
        err = self.divert_error
        if err is None or err.applied is not False:
            self.admin = "drain"  # carried out, even when its answer is lost
        if err is not None:
            raise err

    def wait_drained(self, deadline: Deadline) -> RouterState:
        self.commands.append("wait")
        if self.on_wait is not None:
            self.on_wait(self)
        return self.state()

    def restore(self) -> None:
        self.commands.append("restore")
        if self.restore_error is not None:
            raise self.restore_error
        self.admin = "ready"


class Bench:
    """One run's records around one scripted router: settings, routing, journal, target."""

    def __init__(
        self,
        tmp_path: Path,
        router: Scripted,
        interrupts: Interrupts,
        *,
        more: tuple[Scripted, ...] = (),
        **settings: object,
    ) -> None:
        conf = tmp_path / "httpd.conf"
        conf.write_text("WSGIDaemonProcess myapp processes=2\n")
        group = parse_config(conf, server_root=tmp_path, environ={}).group("myapp")
        options: dict[str, object] = {"drain_timeout": 5.0, "lb_up_timeout": 0.0}
        options.update(settings)
        self.settings = Settings(group="myapp", state_dir=tmp_path, **options)  # type: ignore[arg-type]
        self.state_dir = tmp_path
        self.messages: list[tuple[str, str]] = []
        outcome = Outcome(group="myapp", mode="drain", requested_mode="drain", signal="SIGUSR1")
        self.run = Run(self.settings, self._progress, interrupts, outcome)
        self.router = router
        self.rec = RouterRecord(name=SPEC, before=router.admin)
        self.recs = [self.rec, *(RouterRecord(name=r.spec, before=r.admin) for r in more)]
        routers = ((SPEC, router), *((r.spec, r) for r in more))
        self.routing = Routing(routers=routers, records=self.recs)
        # No group socket: the wait for requests that bypassed the router is skipped.
        procs = GroupProcesses(group=group, socket=None, processes=(), method="socket")
        self.target = Target(instance=None, procs=procs, expected=2, parent_pid=0)  # type: ignore[arg-type]
        begin_journal(self.run, self.routing)

    def _progress(self, kind: str, message: str) -> None:
        self.messages.append((kind, message))

    @property
    def out(self) -> Outcome:
        return self.run.outcome

    def journal(self) -> Journal | None:
        return Journal.load(self.state_dir, "myapp")


@pytest.fixture
def interrupts() -> Iterator[Interrupts]:
    with Interrupts() as caught:
        yield caught


def interrupt_self() -> None:
    """A real SIGINT to this process, as an operator's Ctrl-C; Interrupts records it."""
    os.kill(os.getpid(), signal.SIGINT)


# -- found back in rotation just before the signal --------------------------------------------


def test_back_in_rotation_before_the_signal_stops_the_run_with_exit_4_nothing_signalled(
    tmp_path: Path, interrupts: Interrupts
) -> None:
    router = Scripted()

    def reloaded(r: Scripted) -> None:
        r.admin = "ready"  # a HAProxy reload put the server back during the drain

    router.on_wait = reloaded
    bench = Bench(tmp_path, router, interrupts)
    verdict = Verdict()
    with pytest.raises(RouterError) as err:
        divert(bench.run, bench.target, bench.routing)
    assert err.value.status == ExitStatus.ROUTER == 4
    assert "back in rotation" in str(err.value) and "nothing was signalled" in str(err.value)
    # The policy after it: nothing signalled, the server is ready already: no command.
    settle(bench.run, bench.target, bench.routing, verdict)
    assert not verdict.signalled
    assert router.commands == ["divert", "wait"] and router.admin == "ready"
    assert bench.journal() is None and not bench.out.left_diverted


def test_back_in_rotation_check_passes_a_drain_that_held(
    tmp_path: Path, interrupts: Interrupts
) -> None:
    router = Scripted()
    bench = Bench(tmp_path, router, interrupts)
    assert divert(bench.run, bench.target, bench.routing)
    assert router.admin == "drain" and bench.rec.diverted
    journal = bench.journal()
    assert journal is not None and journal.diverted == [SPEC]


# -- a peer lost during the drain ---------------------------------------------------------------


def peer_fails_at_first_wait(r: Scripted) -> None:
    # Still a request in flight, so the drain goes on; a peer starts failing its checks.
    r.sessions = 1
    r.peers_failing = ("web2",)


def test_if_few_peers_refuse_after_a_peer_fails_mid_drain_puts_back_and_exits_4(
    tmp_path: Path, interrupts: Interrupts
) -> None:
    router = Scripted()
    router.on_wait = peer_fails_at_first_wait
    bench = Bench(tmp_path, router, interrupts, few_peers="refuse")
    with pytest.raises(RouterError) as err:
        divert(bench.run, bench.target, bench.routing)
    assert err.value.status == ExitStatus.ROUTER
    assert "web2 (failing its checks)" in str(err.value)
    assert "0 UP and healthy, need 1" in str(err.value)
    assert "put back, nothing signalled (--if-few-peers refuse)" in str(err.value)
    assert router.commands == ["divert", "wait", "restore"] and router.admin == "ready"
    assert not bench.rec.diverted
    journal = bench.journal()
    assert journal is not None and journal.diverted == []


def test_peer_gone_down_mid_drain_under_if_few_peers_rolling_puts_back_and_restarts_in_place(
    tmp_path: Path, interrupts: Interrupts
) -> None:
    router = Scripted()

    def peer_down(r: Scripted) -> None:
        r.sessions, r.peers_up, r.peers_out = 1, 0, ("web2 (DOWN)",)

    router.on_wait = peer_down
    bench = Bench(tmp_path, router, interrupts)
    assert divert(bench.run, bench.target, bench.routing) is False
    assert router.commands == ["divert", "wait", "restore"] and router.admin == "ready"
    assert any("web2 (DOWN)" in w and "restarting in place" in w for w in bench.out.warnings)
    journal = bench.journal()
    assert journal is not None and journal.diverted == []


def test_a_peer_still_healthy_mid_drain_lets_the_drain_finish(
    tmp_path: Path, interrupts: Interrupts
) -> None:
    router = Scripted(peers_up=2)
    waits: list[int] = []

    def one_failing_then_quiet(r: Scripted) -> None:
        waits.append(1)
        # Two peers UP, one failing: one healthy is still --min-peers 1.
        r.peers_failing = ("web2",)
        r.sessions = 1 if len(waits) < 3 else 0

    router.on_wait = one_failing_then_quiet
    bench = Bench(tmp_path, router, interrupts, few_peers="refuse")
    assert divert(bench.run, bench.target, bench.routing)
    assert router.commands == ["divert", "wait", "wait", "wait"]
    assert len(waits) == 3, "the drain waited until the request ended"


# -- a router read failing in the recount right after the divert ------------------------------


def test_router_read_failing_in_the_recount_after_the_divert_goes_on_to_the_drain_wait(
    tmp_path: Path, interrupts: Interrupts
) -> None:
    router = Scripted()

    def recount_fails(r: Scripted) -> None:
        if r.commands == ["divert"]:  # the read right after the divert
            raise RouterError(SPEC, "socket unreachable")

    router.on_read = recount_fails
    bench = Bench(tmp_path, router, interrupts)
    assert divert(bench.run, bench.target, bench.routing)
    # No back-off (nothing says a peer went out), the drain wait read it again.
    assert router.commands == ["divert", "wait"]
    assert bench.out.backoffs == 0 and bench.rec.diverted


# -- a divert command sent but unanswered -----------------------------------------------------


def test_unanswered_divert_stays_journalled_and_the_policy_puts_it_back(
    tmp_path: Path, interrupts: Interrupts
) -> None:
    router = Scripted()
    router.divert_error = RouterError(SPEC, "no answer", applied=None)
    bench = Bench(tmp_path, router, interrupts)
    with pytest.raises(RouterError):
        divert(bench.run, bench.target, bench.routing)
    assert bench.rec.diverted and bench.rec.unconfirmed
    journal = bench.journal()
    assert journal is not None and journal.diverted == [SPEC]
    settle(bench.run, bench.target, bench.routing, Verdict())
    assert router.commands == ["divert", "restore"] and router.admin == "ready"
    assert bench.rec.restored and bench.journal() is None


def test_refused_divert_leaves_the_journal_without_it_and_sends_nothing_more(
    tmp_path: Path, interrupts: Interrupts
) -> None:
    router = Scripted()
    router.divert_error = RouterError(SPEC, "permission denied", applied=False)
    bench = Bench(tmp_path, router, interrupts)
    with pytest.raises(RouterError):
        divert(bench.run, bench.target, bench.routing)
    assert not bench.rec.diverted and not bench.rec.unconfirmed
    journal = bench.journal()
    assert journal is not None and journal.diverted == []
    settle(bench.run, bench.target, bench.routing, Verdict())
    assert router.commands == ["divert"] and bench.journal() is None


# -- the restore phase's own failures -----------------------------------------------------------


def diverted_bench(
    tmp_path: Path, router: Scripted, interrupts: Interrupts, **settings: object
) -> Bench:
    """A run that diverted `router` (it was ready) and got to the policy."""
    bench = Bench(tmp_path, router, interrupts, **settings)
    router.divert()
    router.commands.clear()
    bench.rec.diverted = True
    assert bench.routing.journal is not None
    bench.routing.journal.diverted.append(SPEC)
    return bench


def test_restore_failure_leaves_the_router_diverted_with_the_journal_note(
    tmp_path: Path, interrupts: Interrupts
) -> None:
    router = Scripted()
    bench = diverted_bench(tmp_path, router, interrupts)
    router.restore_error = RouterError(SPEC, "socket unreachable")
    settle(bench.run, bench.target, bench.routing, Verdict(signalled=True, healthy=True))
    assert router.commands == ["restore"] and router.admin == "drain"
    out = bench.out
    assert out.left_diverted and not bench.rec.restored
    assert isinstance(out.error, RouterError) and out.error.status == ExitStatus.ROUTER
    assert "socket unreachable" in str(out.error)
    assert bench.rec.error is not None and "socket unreachable" in bench.rec.error
    assert [p.status for p in out.phases if p.name == "restore"] == ["failed"]
    journal = bench.journal()
    assert journal is not None and journal.phase == "left-diverted"
    assert journal.note == "restoring a router failed" and journal.diverted == [SPEC]


def test_restore_failure_before_any_signal_says_the_restore_failed_not_the_app(
    tmp_path: Path, interrupts: Interrupts
) -> None:
    # Interrupted during the drain (nothing signalled), then the restore failed:
    # the journal must not blame the app, which was never touched.
    router = Scripted()
    bench = diverted_bench(tmp_path, router, interrupts)
    router.restore_error = RouterError(SPEC, "socket unreachable")
    settle(bench.run, bench.target, bench.routing, Verdict())
    assert bench.out.left_diverted
    journal = bench.journal()
    assert journal is not None and journal.note == "restoring a router failed"


@pytest.mark.parametrize(
    ("signalled", "healthy", "note"),
    [
        (False, None, "restoring a router failed"),
        (False, False, "restoring a router failed"),
        (True, True, "restoring a router failed"),
        (True, False, "the app was not proven healthy after the restart"),
        (True, None, "the app was not proven healthy after the restart"),
    ],
)
def test_left_diverted_note_blames_the_restore_only_where_the_policy_restores(
    signalled: bool, healthy: bool | None, note: str
) -> None:
    assert policy.left_diverted_note(signalled, healthy) == note


def test_operator_maint_set_during_the_run_is_left_alone_by_the_restore(
    tmp_path: Path, interrupts: Interrupts
) -> None:
    router = Scripted()
    bench = diverted_bench(tmp_path, router, interrupts)
    router.admin = "maint"  # the operator, during the run
    settle(bench.run, bench.target, bench.routing, Verdict(signalled=True, healthy=True))
    assert router.commands == [] and router.admin == "maint"
    assert not bench.rec.restored and bench.rec.error is not None
    assert bench.out.warnings == [f"{SPEC} was set to maint by someone during the run: left so"]
    assert bench.out.error is None


def test_unreadable_router_state_at_the_restore_is_still_restored(
    tmp_path: Path, interrupts: Interrupts
) -> None:
    router = Scripted()
    bench = diverted_bench(tmp_path, router, interrupts, lb_up_timeout=5.0)

    def unreachable(r: Scripted) -> None:
        raise RouterError(SPEC, "cannot read show stat")

    router.on_read = unreachable
    settle(bench.run, bench.target, bench.routing, Verdict(signalled=True, healthy=True))
    assert router.commands == ["restore"] and router.admin == "ready"
    assert bench.rec.restored and not bench.out.left_diverted and bench.out.error is None
    assert bench.journal() is None


# -- --lb-up-timeout ----------------------------------------------------------------------------


def test_lb_up_timeout_expiring_is_exit_6_with_the_routers_status(
    tmp_path: Path, interrupts: Interrupts
) -> None:
    router = Scripted()
    bench = diverted_bench(tmp_path, router, interrupts, lb_up_timeout=0.3)

    def checks_fail(r: Scripted) -> None:
        r.lb_up, r.status = False, "DOWN"

    router.on_read = checks_fail
    settle(bench.run, bench.target, bench.routing, Verdict(signalled=True, healthy=True))
    err = bench.out.error
    assert isinstance(err, UnhealthyError) and err.status == ExitStatus.UNHEALTHY == 6
    assert "does not see this server UP 0.3 s after it was put back (status DOWN)" in str(err)
    # It is back in rotation: not left diverted, the journal is done.
    assert router.commands == ["restore"] and bench.rec.restored and bench.rec.up_after is None
    assert not bench.out.left_diverted and bench.journal() is None
    assert router.reads > 2, "the router was asked again until the timeout"


def test_lb_up_seen_within_the_timeout_is_no_error(tmp_path: Path, interrupts: Interrupts) -> None:
    router = Scripted()
    bench = diverted_bench(tmp_path, router, interrupts, lb_up_timeout=30.0)

    def up_at_third_read(r: Scripted) -> None:
        r.lb_up = r.reads >= 3  # the router's checks pass after a moment

    router.on_read = up_at_third_read
    settle(bench.run, bench.target, bench.routing, Verdict(signalled=True, healthy=True))
    assert bench.out.error is None and bench.rec.up_after is not None
    assert router.reads == 3


def test_interrupt_during_the_lb_up_wait_stops_waiting_and_reports_it(
    tmp_path: Path, interrupts: Interrupts
) -> None:
    router = Scripted()
    bench = diverted_bench(tmp_path, router, interrupts, lb_up_timeout=30.0)

    def ctrl_c_at_third_read(r: Scripted) -> None:
        r.lb_up = False
        if r.reads == 3:
            interrupt_self()

    router.on_read = ctrl_c_at_third_read
    settle(bench.run, bench.target, bench.routing, Verdict(signalled=True, healthy=True))
    assert isinstance(bench.out.error, Interrupted)
    assert bench.out.error.status == ExitStatus.INTERRUPTED
    # The wait ended on the interrupt (no read after it), the restore already done.
    assert router.reads == 3
    assert router.commands == ["restore"] and bench.rec.restored and bench.journal() is None


# -- an interrupt after the signal, with a health URL -----------------------------------------


class Health(http.server.BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        code = 200 if self.path == "/ok" else 500
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def health_base() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_interrupt_after_the_signal_with_a_health_url_restores_a_healthy_app(
    tmp_path: Path, interrupts: Interrupts, health_base: str
) -> None:
    router = Scripted()
    bench = diverted_bench(tmp_path, router, interrupts, health_url=health_base + "/ok")
    # Signalled, then interrupted before the verdict: no phase knew the health.
    verdict = Verdict(signalled=True, healthy=None)
    settle(bench.run, bench.target, bench.routing, verdict)
    assert verdict.healthy is True
    assert router.commands == ["restore"] and bench.journal() is None


def test_interrupt_after_the_signal_with_a_failing_health_url_leaves_it_diverted(
    tmp_path: Path, interrupts: Interrupts, health_base: str
) -> None:
    router = Scripted()
    bench = diverted_bench(tmp_path, router, interrupts, health_url=health_base + "/fail")
    verdict = Verdict(signalled=True, healthy=None)
    settle(bench.run, bench.target, bench.routing, verdict)
    assert verdict.healthy is False
    assert router.commands == [] and router.admin == "drain" and bench.out.left_diverted
    journal = bench.journal()
    assert journal is not None and journal.phase == "left-diverted"
    assert journal.note == "the app was not proven healthy after the restart"
    assert any("left diverted" in m for _k, m in bench.messages)


def test_interrupt_during_the_drain_wait_is_acted_on_before_the_signal(
    tmp_path: Path, interrupts: Interrupts
) -> None:
    router = Scripted()

    def ctrl_c_while_busy(r: Scripted) -> None:
        r.sessions = 1
        interrupt_self()

    router.on_wait = ctrl_c_while_busy
    bench = Bench(tmp_path, router, interrupts)
    with pytest.raises(Interrupted):
        divert(bench.run, bench.target, bench.routing)
    assert router.commands == ["divert", "wait"], "one slice, then the interrupt was acted on"
    settle(bench.run, bench.target, bench.routing, Verdict())
    assert router.commands[-1] == "restore" and bench.journal() is None


# -- the drain wait's edges (what is counted in flight, and for how long) --------------------


def test_drain_counts_requests_in_flight_and_queued_at_the_signal(
    tmp_path: Path, interrupts: Interrupts
) -> None:
    router = Scripted()

    def busy(r: Scripted) -> None:
        r.sessions, r.queued = 2, 2

    router.on_wait = busy
    bench = Bench(tmp_path, router, interrupts, drain_timeout=0.0)
    assert divert(bench.run, bench.target, bench.routing)
    assert bench.rec.sessions_at_signal == 4
    assert bench.out.warnings == [
        f"{SPEC}: 4 request(s) still in flight after 0 s; they get the group's drain window"
    ]


def test_drain_with_nothing_in_flight_warns_nothing_and_says_zero(
    tmp_path: Path, interrupts: Interrupts
) -> None:
    router = Scripted(peers_up=2)
    bench = Bench(tmp_path, router, interrupts)
    bench.rec.state = router.state()
    assert divert(bench.run, bench.target, bench.routing)
    assert bench.rec.sessions_at_signal == 0 and bench.out.warnings == []
    assert ("divert", f"{SPEC}: drain (2 other server(s) UP)") in bench.messages
    assert bench.rec.out_at is not None


def test_drain_waits_while_requests_wait_only_in_the_queue(
    tmp_path: Path, interrupts: Interrupts
) -> None:
    router = Scripted()
    queue = [2, 1, 0]

    def queued(r: Scripted) -> None:
        r.sessions, r.queued = 0, queue.pop(0)

    router.on_wait = queued
    bench = Bench(tmp_path, router, interrupts)
    assert divert(bench.run, bench.target, bench.routing)
    assert router.commands == ["divert", "wait", "wait", "wait"] and queue == []


def test_drain_of_a_router_that_cannot_count_warns_and_goes_on_to_the_next(
    tmp_path: Path, interrupts: Interrupts
) -> None:
    blind = Scripted()
    blind.sessions_known = False
    second = Scripted(name="web1b")

    def busy(r: Scripted) -> None:
        r.sessions = 1

    second.on_wait = busy
    bench = Bench(tmp_path, blind, interrupts, more=(second,), drain_timeout=0.0)
    assert divert(bench.run, bench.target, bench.routing)
    assert bench.rec.sessions_at_signal is None
    assert bench.recs[1].sessions_at_signal == 1, "the next router was still waited for"
    assert bench.out.warnings[0] == (
        f"{SPEC} cannot count requests in flight: not waited for at the router; requests "
        "still running get the group's drain window"
    )


def test_drain_deadline_adds_a_routers_detection_delay(
    tmp_path: Path, interrupts: Interrupts
) -> None:
    class Watched(Scripted):
        settle_delay = 0.3  # a health-file router: the LB sees the file change later

    plain, watched = Scripted(), Watched()
    for router in (plain, watched):
        router.on_wait = lambda r: setattr(r, "sessions", 1)
    bench = Bench(tmp_path, plain, interrupts, drain_timeout=0.0)
    divert(bench.run, bench.target, bench.routing)
    assert plain.commands.count("wait") == 1, "no delay: the 0 s drain ends at once"
    (tmp_path / "w").mkdir()
    bench = Bench(tmp_path / "w", watched, interrupts, drain_timeout=0.0)
    divert(bench.run, bench.target, bench.routing)
    assert watched.commands.count("wait") > 1, "the drain waited for the detection delay"


def test_drain_never_diverts_a_router_the_operator_had_out(
    tmp_path: Path, interrupts: Interrupts
) -> None:
    ours, operators = Scripted(), Scripted("maint", name="web1b")
    bench = Bench(tmp_path, ours, interrupts, more=(operators,))
    assert divert(bench.run, bench.target, bench.routing)
    assert ours.commands[0] == "divert" and "divert" not in operators.commands
    assert bench.recs[0].out_at is not None and bench.recs[1].out_at is None


def test_a_router_without_peer_counts_never_ends_the_drain_for_peers(
    tmp_path: Path, interrupts: Interrupts
) -> None:
    router = Scripted(peers_up=None)  # a health file: it cannot count the others
    waits = [1, 1, 0]

    def draining(r: Scripted) -> None:
        r.sessions = waits.pop(0)

    router.on_wait = draining
    bench = Bench(tmp_path, router, interrupts, few_peers="refuse")
    assert divert(bench.run, bench.target, bench.routing)
    assert "restore" not in router.commands and waits == []


@pytest.mark.parametrize(
    ("min_peers", "up", "failing", "lost"),
    [
        (2, 2, ("web3",), True),  # one of two failing: 1 healthy, 2 needed
        (2, 2, (), False),
        (3, 4, ("web3",), False),  # 3 healthy of 4
        (1, 3, ("web3",), False),  # more than enough is enough
        ("all", 1, (), False),  # "all" mid-drain: one healthy peer carries it
        ("all", 1, ("web3",), True),
    ],
)
def test_peers_lost_mid_drain_counts_healthy_peers_against_min_peers(
    tmp_path: Path,
    interrupts: Interrupts,
    min_peers: int | str,
    up: int,
    failing: tuple[str, ...],
    lost: bool,
) -> None:
    router = Scripted(peers_up=up)
    waits = [1, 0]

    def mid_drain(r: Scripted) -> None:
        r.sessions, r.peers_failing = waits.pop(0), failing

    router.on_wait = mid_drain
    bench = Bench(tmp_path, router, interrupts, min_peers=min_peers)
    assert divert(bench.run, bench.target, bench.routing) is (not lost)
    assert ("restore" in router.commands) is lost


# -- too few peers before the divert ----------------------------------------------------------


def test_too_few_peers_before_the_divert_rolls_in_place_under_if_few_peers_rolling(
    tmp_path: Path, interrupts: Interrupts
) -> None:
    router = Scripted(peers_up=0)
    bench = Bench(tmp_path, router, interrupts)
    assert divert(bench.run, bench.target, bench.routing) is False
    assert router.commands == []
    assert bench.out.warnings == [
        f"{SPEC}: 0 other server(s) UP, --min-peers 1 needed: restarting in place, one "
        "process at a time, without diverting"
    ]


def test_too_few_peers_before_the_divert_is_refused_under_if_few_peers_refuse(
    tmp_path: Path, interrupts: Interrupts
) -> None:
    router = Scripted(peers_up=0)
    bench = Bench(tmp_path, router, interrupts, few_peers="refuse")
    with pytest.raises(RouterError) as err:
        divert(bench.run, bench.target, bench.routing)
    assert router.commands == []
    assert str(err.value) == (
        f"{SPEC}: 0 other server(s) UP, --min-peers 1 needed; refusing to take this host out "
        "too (--if-few-peers refuse). If a host was left out by an earlier run, repair it "
        "there (`wsgi-drain undrain --group myapp`) or find why its checks fail, then rerun"
    )


def test_a_collision_at_the_recount_backs_off_and_refuses_with_nothing_signalled(
    tmp_path: Path, interrupts: Interrupts
) -> None:
    router = Scripted(peers_up=1)

    def another_run_diverted(r: Scripted) -> None:
        if r.commands == ["divert"]:
            r.peers_up, r.peers_out = 0, ("web2 (drain)",)

    router.on_read = another_run_diverted
    bench = Bench(tmp_path, router, interrupts)
    with pytest.raises(RouterError) as err:
        divert(bench.run, bench.target, bench.routing)
    assert str(err.value).endswith("put back, nothing signalled")
    assert router.commands == ["divert", "restore"]
    assert not bench.rec.diverted and not bench.rec.restored and bench.rec.back_at is None
    journal = bench.journal()
    assert journal is not None and journal.diverted == [] and bench.out.backoffs == 1


# -- requests that reached Apache directly ----------------------------------------------------


def host_bench(
    tmp_path: Path,
    interrupts: Interrupts,
    monkeypatch: pytest.MonkeyPatch,
    held: list[object],
    **settings: object,
) -> Bench:
    """A run whose group has a socket; `_held` (what the daemons hold) answers from `held`."""
    from wsgi_drain.restart import divert as phase

    bench = Bench(tmp_path, Scripted(), interrupts, **settings)
    socket = object()  # only its presence is read: the holdings come from `held`
    bench.target.procs = dataclasses.replace(bench.target.procs, socket=socket)  # type: ignore[arg-type]
    monkeypatch.setattr(phase, "_held", lambda target: held.pop(0) if held else set())
    monkeypatch.setattr(phase, "HOST_POLL", 0.01)
    return bench


def test_host_requests_that_bypassed_the_router_are_waited_for(
    tmp_path: Path, interrupts: Interrupts, monkeypatch: pytest.MonkeyPatch
) -> None:
    held: list[object] = [{11, 12}, {12, 13}, set()]
    bench = host_bench(tmp_path, interrupts, monkeypatch, held)
    assert divert(bench.run, bench.target, bench.routing)
    assert held == [] and bench.out.host_in_flight_at_signal == 0
    assert any(
        m.startswith("host: 2 request(s) in flight that did not come through the router")
        for _k, m in bench.messages
    )
    assert bench.out.warnings == []


def test_host_requests_still_running_at_the_drain_timeout_are_counted_and_warned(
    tmp_path: Path, interrupts: Interrupts, monkeypatch: pytest.MonkeyPatch
) -> None:
    held: list[object] = [{11}] * 1000
    bench = host_bench(tmp_path, interrupts, monkeypatch, held, drain_timeout=0.05)
    assert divert(bench.run, bench.target, bench.routing)
    assert bench.out.host_in_flight_at_signal == 1
    assert any(m.endswith("waiting up to 0 s") for _k, m in bench.messages), bench.messages
    assert bench.out.warnings == [
        "host: 1 request(s) that did not come through the router still in flight after "
        "0.05 s; they get the group's drain window"
    ]


def test_host_requests_wait_never_asks_to_sleep_past_the_drain_timeout(
    tmp_path: Path, interrupts: Interrupts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each pause is the poll or what remains, whichever is less: the last one is cut
    to what is left of the deadline (on a clock that moves only by the pauses)."""
    from wsgi_drain.restart import divert as phase

    held: list[object] = [{11}] * 1000
    bench = host_bench(tmp_path, interrupts, monkeypatch, held)
    monkeypatch.setattr(phase, "HOST_POLL", 0.02)
    clock = SleepClock()
    monkeypatch.setattr(phase.time, "sleep", clock.sleep)
    phase.wait_host_requests(bench.run, bench.target, Deadline(0.05, clock=clock))
    monkeypatch.undo()
    assert clock.slept == [0.02, 0.02, pytest.approx(0.01)]
    assert bench.out.host_in_flight_at_signal == 1


def test_host_sockets_unreadable_is_said_not_waited_for(
    tmp_path: Path, interrupts: Interrupts, monkeypatch: pytest.MonkeyPatch
) -> None:
    held: list[object] = [None]
    bench = host_bench(tmp_path, interrupts, monkeypatch, held)
    assert divert(bench.run, bench.target, bench.routing)
    assert bench.out.warnings == [
        "cannot read the daemons' sockets: requests that bypassed the router are not awaited"
    ]


def test_host_requests_held_are_read_from_the_group_socket_of_its_processes(
    tmp_path: Path, interrupts: Interrupts
) -> None:
    """`_held` for real: this process stands for the daemon, holding one accepted
    connection to the group's unix socket (a request in flight), then none."""
    path = tmp_path / "wsgi.sock"
    with socket.socket(socket.AF_UNIX) as listener, socket.socket(socket.AF_UNIX) as client:
        listener.bind(str(path))
        listener.listen()
        client.connect(str(path))
        conn, _ = listener.accept()
        benches = []
        for held in (True, False):
            if not held:
                conn.close()  # the request ended
            where = tmp_path / f"held-{held}"
            where.mkdir()
            bench = Bench(where, Scripted(), interrupts, drain_timeout=0.05)
            bench.target.procs = dataclasses.replace(
                bench.target.procs,
                socket=GroupSocket(path=str(path), inode=0),
                processes=(DaemonProcess(pid=os.getpid(), create_time=0.0, title=""),),
            )
            assert divert(bench.run, bench.target, bench.routing)
            benches.append(bench)
    busy, idle = benches
    assert busy.out.host_in_flight_at_signal == 1
    assert busy.out.warnings == [
        "host: 1 request(s) that did not come through the router still in flight after "
        "0.05 s; they get the group's drain window"
    ]
    assert idle.out.host_in_flight_at_signal == 0 and idle.out.warnings == []


# -- the restore phase's edges -----------------------------------------------------------------


class CountingInterrupts(Interrupts):
    """The real Interrupts, recording how long each wait asked to sleep."""

    def __init__(self) -> None:
        super().__init__()
        self.sleeps: list[float] = []

    def sleep(self, timeout: float) -> None:
        self.sleeps.append(timeout)
        super().sleep(timeout)


def test_lb_up_wait_polls_at_most_every_tenth_of_a_second_within_the_timeout(
    tmp_path: Path,
) -> None:
    with CountingInterrupts() as counting:
        router = Scripted()
        bench = diverted_bench(tmp_path, router, counting, lb_up_timeout=0.35)
        router.on_read = lambda r: setattr(r, "lb_up", False)
        settle(bench.run, bench.target, bench.routing, Verdict(signalled=True, healthy=True))
    assert counting.sleeps and all(0 <= s <= 0.1 for s in counting.sleeps), counting.sleeps
    assert sum(counting.sleeps) <= 0.35 + 1e-6, "never asked to sleep past the timeout"


def test_lb_up_after_is_the_time_from_the_restore_to_up(tmp_path: Path) -> None:
    with Interrupts() as caught:
        router = Scripted()
        bench = diverted_bench(tmp_path, router, caught, lb_up_timeout=30.0)
        router.on_read = lambda r: setattr(r, "lb_up", r.reads >= 3)
        before = time.monotonic()
        settle(bench.run, bench.target, bench.routing, Verdict(signalled=True, healthy=True))
        spent = time.monotonic() - before
    up_after = bench.rec.up_after
    assert up_after is not None and 0 < up_after <= spent, (up_after, spent)


def test_lb_up_after_is_the_monotonic_time_since_the_wait_began(
    tmp_path: Path, interrupts: Interrupts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """150 s from the restore to UP reads 150 s, on a clock of any value (a host up
    for less time than the wait, too)."""
    from wsgi_drain.restart import restore as phase

    router = Scripted()
    router.lb_up = True
    bench = diverted_bench(tmp_path, router, interrupts, lb_up_timeout=300.0)
    ticks = iter([100.0, 250.0])
    monkeypatch.setattr(phase.time, "monotonic", lambda: next(ticks))
    phase._wait_lb_up(bench.run, [(router, bench.rec)])
    monkeypatch.undo()
    assert bench.rec.up_after == 150.0


def test_lb_up_timeout_zero_does_not_wait_and_is_no_error(
    tmp_path: Path, interrupts: Interrupts
) -> None:
    router = Scripted()
    bench = diverted_bench(tmp_path, router, interrupts, lb_up_timeout=0.0)
    router.on_read = lambda r: setattr(r, "lb_up", False)
    settle(bench.run, bench.target, bench.routing, Verdict(signalled=True, healthy=True))
    assert bench.out.error is None and bench.rec.restored


def test_lb_up_timeout_keeps_an_earlier_error(tmp_path: Path, interrupts: Interrupts) -> None:
    router = Scripted()
    bench = diverted_bench(tmp_path, router, interrupts, lb_up_timeout=0.2)
    router.on_read = lambda r: setattr(r, "lb_up", False)
    earlier = UnhealthyError("the warm-up failed")
    bench.out.error = earlier
    settle(bench.run, bench.target, bench.routing, Verdict(signalled=True, healthy=True))
    assert bench.out.error is earlier


class Members:
    def __init__(self, pids: tuple[int, ...]) -> None:
        self.pids = pids


@pytest.mark.parametrize(
    ("pids", "restored"),
    [
        ((21, 22), True),  # complete, every process new
        ((21,), False),  # one short of processes=2
        ((21, 22, 23), True),
        ((11, 21), False),  # an old process still there
        (None, False),  # the group cannot be read
    ],
)
def test_interrupt_after_the_signal_without_a_health_url_restores_only_a_replaced_group(
    tmp_path: Path,
    interrupts: Interrupts,
    monkeypatch: pytest.MonkeyPatch,
    pids: tuple[int, ...] | None,
    restored: bool,
) -> None:
    from wsgi_drain.errors import NotFoundError
    from wsgi_drain.restart import restore as phase

    def read() -> Members:
        if pids is None:
            raise NotFoundError("Apache is gone")
        return Members(pids)

    monkeypatch.setattr(phase, "reader", lambda run, target: read)
    router = Scripted()
    bench = diverted_bench(tmp_path, router, interrupts)
    old = (11, 12)
    bench.target.procs = dataclasses.replace(
        bench.target.procs,
        processes=tuple(DaemonProcess(pid=p, create_time=0.0, title="") for p in old),
    )
    verdict = Verdict(signalled=True, healthy=None)
    settle(bench.run, bench.target, bench.routing, verdict)
    assert verdict.healthy is restored
    assert ("restore" in router.commands) is restored and bench.out.left_diverted is not restored


def test_begin_journal_takes_over_a_router_left_by_an_earlier_run(
    tmp_path: Path, interrupts: Interrupts
) -> None:
    ours, adopted = Scripted(), Scripted("drain", name="web1b")
    bench = Bench(tmp_path, ours, interrupts, more=(adopted,))
    bench.recs[1].adopted = True
    bench.rec.before = None
    journal = begin_journal(bench.run, bench.routing)
    assert journal.before == {SPEC: "", adopted.spec: "ready"}
    assert journal.diverted == [adopted.spec] and bench.recs[1].diverted
    assert not bench.rec.diverted
    saved = bench.journal()
    assert saved is not None and saved.diverted == [adopted.spec]


def test_a_collision_backs_off_only_what_this_run_diverted(
    tmp_path: Path, interrupts: Interrupts
) -> None:
    ours, operators = Scripted(peers_up=1), Scripted("maint", name="web1b")

    def another_run_diverted(r: Scripted) -> None:
        if r.commands == ["divert"]:
            r.peers_up, r.peers_out = 0, ("web2 (drain)",)

    ours.on_read = another_run_diverted
    bench = Bench(tmp_path, ours, interrupts, more=(operators,))
    with pytest.raises(RouterError):
        divert(bench.run, bench.target, bench.routing)
    assert ours.commands == ["divert", "restore"]
    assert operators.commands == [] and operators.reads == 0, "the operator's was not touched"
    assert bench.out.warnings == []


def test_drain_waits_in_short_slices_so_an_interrupt_is_acted_on_promptly(
    tmp_path: Path, interrupts: Interrupts
) -> None:
    slices: list[float] = []

    class Slicing(Scripted):
        def wait_drained(self, deadline: Deadline) -> RouterState:
            slices.append(deadline.remaining())
            return super().wait_drained(deadline)

    router = Slicing()
    router.on_wait = lambda r: setattr(r, "sessions", 1 if len(slices) < 3 else 0)
    bench = Bench(tmp_path, router, interrupts, drain_timeout=30.0)
    assert divert(bench.run, bench.target, bench.routing)
    assert len(slices) == 3 and all(0 < left <= 0.1 for left in slices), slices
