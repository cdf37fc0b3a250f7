"""Rules of the restart's phases that need no Apache: each checked on its own.

The watch deadline from the group's own timeouts (real configuration text
through the real parser), the crash-loop and settle rules on real child
processes, and the restore's "never touch what someone else changed" on a
recording Router (a fake of our own interface, not of a load balancer).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.children import reap
from wsgi_drain import procfs
from wsgi_drain.apacheconf import DaemonGroup, parse_config
from wsgi_drain.config import Settings
from wsgi_drain.deadline import Deadline
from wsgi_drain.errors import NotReplacedError
from wsgi_drain.interrupts import Interrupts
from wsgi_drain.outcome import Outcome, RouterRecord
from wsgi_drain.restart.crashloop import CRASH_EXITS, SETTLE, is_crash_loop, new_deaths
from wsgi_drain.restart.policy import Verdict
from wsgi_drain.restart.records import Routing, Run
from wsgi_drain.restart.restore import put_back, settle
from wsgi_drain.restart.rolling import settled_step
from wsgi_drain.restart.timing import IDLE_WAIT, RESPAWN_MARGIN, rolling_step, watch_deadline
from wsgi_drain.routers import RouterState
from wsgi_drain.state import Journal


def group_of(tmp_path: Path, options: str) -> DaemonGroup:
    conf = tmp_path / "httpd.conf"
    conf.write_text(f"WSGIDaemonProcess myapp processes=3 {options}\n")
    return parse_config(conf, server_root=tmp_path, environ={}).group("myapp")


# -- the watch deadline -------------------------------------------------------------------------


def test_drain_deadline_is_the_drain_window_plus_shutdown_timeout_plus_respawn(
    tmp_path: Path,
) -> None:
    group = group_of(tmp_path, "graceful-timeout=15 shutdown-timeout=5")
    assert watch_deadline(group, "drain", None, 3) == 15 + 5 + RESPAWN_MARGIN


def test_drain_deadline_uses_eviction_timeout_for_a_signalled_restart(tmp_path: Path) -> None:
    group = group_of(tmp_path, "graceful-timeout=15 eviction-timeout=40 shutdown-timeout=5")
    assert watch_deadline(group, "drain", None, 3) == 40 + 5 + RESPAWN_MARGIN


def test_rolling_deadline_is_one_step_per_process(tmp_path: Path) -> None:
    group = group_of(tmp_path, "graceful-timeout=15 shutdown-timeout=5")
    step = min(IDLE_WAIT, 15) + 5 + RESPAWN_MARGIN
    assert rolling_step(group) == step
    assert watch_deadline(group, "rolling", None, 3) == 3 * step
    # A group with no live process still gets one step.
    assert watch_deadline(group, "rolling", None, 0) == step


def test_rolling_step_never_waits_longer_than_a_short_drain_window(tmp_path: Path) -> None:
    group = group_of(tmp_path, "graceful-timeout=1 shutdown-timeout=5")
    assert rolling_step(group) == 1 + 5 + RESPAWN_MARGIN


def test_timeout_given_replaces_the_derived_deadline(tmp_path: Path) -> None:
    group = group_of(tmp_path, "graceful-timeout=15 shutdown-timeout=5")
    for mode in ("drain", "rolling"):
        assert watch_deadline(group, mode, 7.5, 3) == 7.5


# -- crash loop and settle, on real child processes ----------------------------------------------


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    reap(started)


def spawn(children: list[subprocess.Popen[bytes]], seconds: float) -> int:
    child = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({seconds})"])
    children.append(child)
    return child.pid


def gone_pids(pids: list[int]) -> set[int]:
    limit = Deadline(10.0)
    while not all(procfs.gone(p) for p in pids) and not limit.expired():
        time.sleep(0.01)
    return {p for p in pids if procfs.gone(p)}


def test_crash_loop_takes_crash_exits_deaths_of_new_processes(
    children: list[subprocess.Popen[bytes]],
) -> None:
    dying = [spawn(children, 0) for _ in range(CRASH_EXITS)]
    dead = gone_pids(dying)
    assert dead == set(dying)
    fewer = new_deaths(None, set(), sorted(dead)[: CRASH_EXITS - 1])
    assert not is_crash_loop(fewer), "one death short of CRASH_EXITS is not yet a crash loop"
    assert is_crash_loop(new_deaths(None, set(), dead))


def test_a_living_replacement_is_no_death(children: list[subprocess.Popen[bytes]]) -> None:
    living = spawn(children, 30)
    assert not procfs.gone(living)
    assert new_deaths(None, set(), {p for p in [living] if procfs.gone(p)}) == {}


def test_rolling_stops_when_the_replacement_dies_within_settle(
    children: list[subprocess.Popen[bytes]],
) -> None:
    new = spawn(children, 0)
    children[-1].wait()  # dead and reaped: a replacement that did not live
    with Interrupts() as interrupts, pytest.raises(NotReplacedError) as err:
        settled_step({new}, 4242, 1, 3, interrupts)
    assert f"replacement {new} of pid 4242 exited right after it started" in str(err.value)
    assert "stopped after 0 of 3 processes so the rest keep serving" in str(err.value)


def test_rolling_goes_on_when_the_replacement_lives_past_settle(
    children: list[subprocess.Popen[bytes]],
) -> None:
    new = spawn(children, 30)
    with Interrupts() as interrupts:
        settled_step({new}, 4242, 1, 3, interrupts)
    assert not procfs.gone(new), f"a replacement alive past SETTLE ({SETTLE} s) was not judged"


# -- restore: only the drain this run set is put back -------------------------------------------


class RecordingRouter:
    """Our own Router interface, recording every command it is given."""

    def __init__(self, admin: str) -> None:
        self.admin = admin
        self.commands: list[str] = []

    @property
    def name(self) -> str:
        return "recording:web1"

    def state(self) -> RouterState:
        return RouterState(name="web1", admin=self.admin, status="UP", sessions=0,
                           queued=0, peers_up=1)  # fmt: skip

    def divert(self) -> None:
        self.commands.append("divert")
        self.admin = "drain"

    def wait_drained(self, deadline: Deadline) -> RouterState:
        return self.state()

    def restore(self) -> None:
        self.commands.append("restore")
        self.admin = "ready"


def a_run(interrupts: Interrupts) -> Run:
    outcome = Outcome(group="myapp", mode="drain", requested_mode="drain", signal="SIGUSR1")
    return Run(Settings(group="myapp"), lambda kind, message: None, interrupts, outcome)


def test_put_back_restores_the_drain_this_run_set() -> None:
    router, rec = RecordingRouter("drain"), RouterRecord(name="recording:web1", diverted=True)
    with Interrupts() as interrupts:
        put_back(a_run(interrupts), router, rec)
    assert router.commands == ["restore"] and rec.restored


def test_put_back_leaves_a_state_someone_else_set_during_the_run() -> None:
    router, rec = RecordingRouter("maint"), RouterRecord(name="recording:web1", diverted=True)
    with Interrupts() as interrupts:
        run = a_run(interrupts)
        put_back(run, router, rec)
    assert router.commands == [] and not rec.restored
    assert run.outcome.warnings == [
        "recording:web1 was set to maint by someone during the run: left so"
    ]


def test_put_back_of_a_divert_never_applied_sends_nothing() -> None:
    router, rec = RecordingRouter("ready"), RouterRecord(name="recording:web1", diverted=True)
    with Interrupts() as interrupts:
        put_back(a_run(interrupts), router, rec)
    assert router.commands == [] and rec.restored


def test_routing_pairs_each_router_with_its_record() -> None:
    router, rec = RecordingRouter("ready"), RouterRecord(name="recording:web1")
    routing = Routing(routers=(("recording:web1", router),), records=[rec])
    assert routing.paired() == [(("recording:web1", router), rec)]


# -- the one failure policy, as the restore phase applies it -------------------------------


def _settle(
    tmp_path: Path, router: RecordingRouter, rec: RouterRecord, verdict: Verdict
) -> tuple[Run, Path]:
    """Run the restore phase's policy on one recorded router; the run and its journal path."""
    settings = Settings(group="myapp", state_dir=tmp_path, lb_up_timeout=0)
    journal = Journal(group="myapp", pid=os.getpid(), started=time.time(),
                      routers=["recording:web1"], before={"recording:web1": "ready"},
                      diverted=["recording:web1"] if rec.diverted else [])  # fmt: skip
    journal.save(tmp_path)
    routing = Routing(routers=(("recording:web1", router),), records=[rec], journal=journal)
    with Interrupts() as interrupts:
        run = Run(settings, lambda kind, message: None, interrupts, a_run(interrupts).outcome)
        # The target is read only when a signalled run has no verdict yet.
        settle(run, None, routing, verdict)  # type: ignore[arg-type]
    return run, Journal.path_for(tmp_path, "myapp")


def test_policy_signalled_and_unhealthy_leaves_the_router_diverted_and_keeps_the_journal(
    tmp_path: Path,
) -> None:
    router = RecordingRouter("drain")
    rec = RouterRecord(name="recording:web1", before="ready", diverted=True)
    run, journal = _settle(tmp_path, router, rec, Verdict(signalled=True, healthy=False))
    assert router.commands == [] and router.admin == "drain"
    assert run.outcome.left_diverted
    kept = Journal.load(tmp_path, "myapp")
    assert kept is not None and kept.phase == "left-diverted", journal


def test_policy_signalled_and_healthy_restores_the_router_and_ends_the_journal(
    tmp_path: Path,
) -> None:
    router = RecordingRouter("drain")
    rec = RouterRecord(name="recording:web1", before="ready", diverted=True)
    run, journal = _settle(tmp_path, router, rec, Verdict(signalled=True, healthy=True))
    assert router.commands == ["restore"] and not run.outcome.left_diverted
    assert not journal.exists()


def test_policy_nothing_signalled_restores_the_router(tmp_path: Path) -> None:
    router = RecordingRouter("drain")
    rec = RouterRecord(name="recording:web1", before="ready", diverted=True)
    run, _journal = _settle(tmp_path, router, rec, Verdict(signalled=False, healthy=None))
    assert router.commands == ["restore"] and not run.outcome.left_diverted


def test_policy_never_touches_a_router_the_operator_had_out_before_the_run(
    tmp_path: Path,
) -> None:
    router = RecordingRouter("maint")
    rec = RouterRecord(name="recording:web1", before="maint", diverted=False)
    _settle(tmp_path, router, rec, Verdict(signalled=True, healthy=True))
    assert router.commands == [] and router.admin == "maint"
