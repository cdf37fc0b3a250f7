"""Leftovers on real child processes: what a daemon started is recorded with its ancestry proven,
named once the daemon has gone, ended only through the pidfds opened then, and recorded for
`check`.  A test child plays the old daemon; the processes it starts are its app's children.
Every process started here is killed and reaped by pid (the orphans through their pidfds)."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.children import SLEEPER, reap
from wsgi_drain import leftovers_record, procfs
from wsgi_drain.config import resolve
from wsgi_drain.descendants import Descendant, Descendants, end, exited
from wsgi_drain.errors import ConfigError
from wsgi_drain.restart.leftovers import summary

# The old daemon: two children (one in a session of its own: detached on purpose) and a
# grandchild; it prints their pids, then reaps the first child if told to, then sleeps.
DAEMON = """
import signal, subprocess, sys, time
if 'deaf' in sys.argv:  # an ignored signal stays ignored across fork and exec
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
sleep = [sys.executable, '-c', 'import time; time.sleep(60)', 'lab-child']
middle = [sys.executable, '-c', 'import subprocess, sys, time\\n'
          'p = subprocess.Popen(sys.argv[1:])\\nprint(p.pid, flush=True)\\ntime.sleep(60)'] + sleep
first = subprocess.Popen(sleep)
detached = subprocess.Popen(sleep, start_new_session=True)
parent = subprocess.Popen(middle, stdout=subprocess.PIPE, text=True)
grandchild = parent.stdout.readline().strip()
print(first.pid, detached.pid, parent.pid, grandchild, flush=True)
if sys.argv[1] == 'reap-first':
    first.wait()
    print('reaped', flush=True)
time.sleep(60)
"""


class Daemon:
    """A stand-in old daemon (our child) and the pids of what it started."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", DAEMON, *(args or ("sleep",))], stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        self.kids = [int(w) for w in self.proc.stdout.readline().split()]
        self.fd = os.pidfd_open(self.proc.pid)
        # Pidfds of every process it started, for the clean-up: never a bare pid.
        self._fds = [os.pidfd_open(pid) for pid in self.kids]
        # Each has exec'd its program (a child caught between fork and exec shows no argv yet).
        wait_until(lambda: all("lab-child" in procfs.cmdline(pid) for pid in self.kids))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def exit(self) -> None:
        """The daemon goes (as mod_wsgi's does): what it started is reparented and runs on."""
        self.proc.kill()
        self.proc.wait(timeout=10)

    def cleanup(self) -> None:
        for fd in self._fds:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(fd, signal.SIGKILL)
            os.close(fd)
        os.close(self.fd)
        reap([self.proc])


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.cleanup()


def recorded(daemon: Daemon) -> Descendants:
    tracker = Descendants()
    family = tracker.record(daemon.pid, daemon.fd)
    assert family is not None
    return tracker


def wait_until(predicate: object, timeout: float = 10.0) -> None:
    end_at = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < end_at, "timed out"
        time.sleep(0.02)


def test_leftovers_record_every_descendant_detached_and_grandchild_included(
    daemons: list[Daemon],
) -> None:
    daemon = Daemon()
    daemons.append(daemon)
    tracker = recorded(daemon)
    members = tracker.families[0].members
    assert sorted(m.pid for m in members) == sorted(daemon.kids)
    assert sorted(m.pid for m in tracker.held()) == sorted(daemon.kids)
    for member in members:
        assert member.daemon_pid == daemon.pid
        assert member.ticks == procfs.start_ticks(member.pid)
        assert "lab-child" in member.cmdline
    tracker.close()


def test_leftovers_not_left_behind_while_the_daemon_lives(daemons: list[Daemon]) -> None:
    daemon = Daemon()
    daemons.append(daemon)
    tracker = recorded(daemon)
    assert tracker.left_behind() == []  # a stuck daemon keeps its descendants
    assert sorted(m.pid for m in tracker.held()) == sorted(daemon.kids)
    tracker.close()


def test_leftovers_named_once_the_daemon_has_gone(daemons: list[Daemon]) -> None:
    daemon = Daemon()
    daemons.append(daemon)
    tracker = recorded(daemon)
    daemon.exit()
    left = tracker.left_behind()
    assert sorted(p.pid for p in left) == sorted(daemon.kids)
    assert all(p.ending is None and p.age >= 0 for p in left)
    assert tracker.held() == []
    assert summary(left, stop=False) == (
        "4 processes left behind by the old daemons, still running (--leftovers stop ends them)"
    )
    tracker.close()


def test_leftovers_stop_ends_each_through_its_pidfd_sigkill_for_the_deaf(
    daemons: list[Daemon],
) -> None:
    daemon = Daemon("sleep", "deaf")  # every child ignores SIGTERM
    daemons.append(daemon)
    tracker = recorded(daemon)
    daemon.exit()
    left = tracker.left_behind()
    assert end(left, 0.3)
    assert {p.ending for p in left} == {"killed"}
    assert all(p.signals == ["SIGTERM", "SIGKILL"] for p in left)
    assert all(procfs.gone(pid) for pid in daemon.kids)
    assert summary(left, stop=True) == "4 processes left behind by the old daemons: 4 killed"
    tracker.close()


def test_leftovers_stop_terminates_those_that_heed_sigterm(daemons: list[Daemon]) -> None:
    daemon = Daemon()
    daemons.append(daemon)
    tracker = recorded(daemon)
    daemon.exit()
    left = tracker.left_behind()
    assert end(left, 10.0)
    assert {p.ending for p in left} == {"terminated"}
    assert all(p.signals == ["SIGTERM"] for p in left)
    tracker.close()


def test_leftovers_one_that_exited_by_itself_is_not_left_behind(daemons: list[Daemon]) -> None:
    daemon = Daemon("reap-first")
    daemons.append(daemon)
    tracker = recorded(daemon)
    first = daemon.kids[0]
    signal.pidfd_send_signal(daemon._fds[0], signal.SIGKILL)
    assert daemon.proc.stdout is not None
    assert daemon.proc.stdout.readline().strip() == "reaped"
    daemon.exit()
    assert first not in [p.pid for p in tracker.left_behind()]
    tracker.close()


def test_leftovers_a_pid_reused_by_an_unrelated_process_is_never_signalled(
    daemons: list[Daemon],
) -> None:
    """The real thing: a recorded child exits, the kernel hands its pid to an unrelated process
    (forced through ns_last_pid, root only), and --leftovers stop runs on what was recorded."""
    if not os.access("/proc/sys/kernel/ns_last_pid", os.W_OK):
        if os.environ.get("CI") == "true":
            pytest.fail("needs root to make the kernel reuse a pid: run CI as root", pytrace=False)
        pytest.skip("needs root to make the kernel reuse a pid (ns_last_pid)")
    unrelated: subprocess.Popen[str] | None = None
    for _attempt in range(20):
        daemon = Daemon("reap-first")
        daemons.append(daemon)
        tracker = recorded(daemon)
        member = next(m for m in tracker.families[0].members if m.pid == daemon.kids[0])
        signal.pidfd_send_signal(daemon._fds[0], signal.SIGKILL)
        assert daemon.proc.stdout is not None
        assert daemon.proc.stdout.readline().strip() == "reaped"  # its pid is free again
        Path("/proc/sys/kernel/ns_last_pid").write_text(str(member.pid - 1))
        candidate = subprocess.Popen(
            [sys.executable, "-c", SLEEPER], stdout=subprocess.PIPE, text=True
        )
        if candidate.pid == member.pid:
            unrelated = candidate
            break
        reap([candidate])  # another process on the host forked first: try again
        tracker.close()
    else:
        pytest.fail("the kernel did not reuse a pid in 20 attempts")
    try:
        assert unrelated.stdout is not None and unrelated.stdout.readline() == "ready\n"
        member.ending = None  # as if it had been named before it exited
        assert end([member], 0.2)
        assert member.ending == "exited" and member.signals == []
        assert unrelated.poll() is None, "the process that reused the pid was signalled"
        # The record for check: the pid runs, but it is not the process recorded.
        entry = leftovers_record.Entry.of(member)
        assert procfs.start_ticks(member.pid) != member.ticks
        assert not entry.running and not entry.left_behind
    finally:
        reap([unrelated])
        tracker.close()


def test_leftovers_a_process_that_is_not_a_child_is_never_recorded(
    daemons: list[Daemon],
) -> None:
    """A sibling of the daemon (our own child, like it) is not its descendant."""
    daemon = Daemon()
    daemons.append(daemon)
    sibling = subprocess.Popen([sys.executable, "-c", SLEEPER], stdout=subprocess.PIPE, text=True)
    try:
        tracker = recorded(daemon)
        assert sibling.pid not in [m.pid for m in tracker.families[0].members]
        daemon.exit()
        left = tracker.left_behind()
        end(left, 5.0)
        assert sibling.poll() is None
        tracker.close()
    finally:
        reap([sibling])


def test_leftovers_a_daemon_gone_before_the_record_has_none(daemons: list[Daemon]) -> None:
    daemon = Daemon()
    daemons.append(daemon)
    daemon.exit()
    tracker = Descendants()
    assert tracker.record(daemon.pid, daemon.fd) is None
    assert exited(daemon.fd)


# -- the record check and status read ----------------------------------------------------------


def test_leftovers_record_is_0640_atomic_and_re_proven(
    daemons: list[Daemon], tmp_path: Path
) -> None:
    state = tmp_path / "state"
    daemon = Daemon()
    daemons.append(daemon)
    tracker = recorded(daemon)
    leftovers_record.save(state, "my app", tracker.held())
    path = leftovers_record.path_for(state, "my app")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert not list(state.glob(".*.tmp"))
    # The daemon lives: recorded, not left behind.
    assert len(leftovers_record.load(state, "my app")) == 4
    assert leftovers_record.still_left(state, "my app") == []
    daemon.exit()
    assert sorted(e.pid for e in leftovers_record.still_left(state, "my app")) == sorted(
        daemon.kids
    )
    found, problems = leftovers_record.all_left(state)
    assert list(found) == ["my app"] and problems == []
    end(tracker.left_behind(), 5.0)
    assert leftovers_record.still_left(state, "my app") == []
    # A later run with nothing running removes the record.
    leftovers_record.save(state, "my app", [])
    assert not path.exists()
    tracker.close()


def test_leftovers_record_unreadable_is_an_error_naming_the_file(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    path = leftovers_record.path_for(state, "myapp")
    path.write_text("{not json")
    with pytest.raises(leftovers_record.RecordError, match=str(path)):
        leftovers_record.load(state, "myapp")
    path.write_text('{"schema": "wsgi-drain/leftovers/v1", "group": "myapp", "processes": [{}]}')
    with pytest.raises(leftovers_record.RecordError, match="invalid process entry"):
        leftovers_record.load(state, "myapp")


def test_leftovers_record_entry_of_another_process_is_not_running() -> None:
    me = os.getpid()
    ticks = procfs.start_ticks(me)
    assert ticks is not None
    same = leftovers_record.Entry(me, ticks, ("x",), 1, 0, time.time())
    other = leftovers_record.Entry(me, ticks - 1, ("x",), 1, 0, time.time())
    assert same.running and not other.running


# -- the setting -------------------------------------------------------------------------------


def test_leftovers_setting_from_toml_and_its_typo_refused() -> None:
    data = {"groups": {"myapp": {"leftovers": "stop"}}}
    assert resolve("myapp", {}, data, "f.toml").leftovers == "stop"
    assert resolve("myapp", {"leftovers": "report"}, data, "f.toml").leftovers == "report"
    assert resolve("myapp", {}, {}, "f.toml").leftovers == "report"
    with pytest.raises(ConfigError, match="leftovers = 'kill'"):
        resolve("myapp", {}, {"groups": {"myapp": {"leftovers": "kill"}}}, "f.toml")


def test_leftovers_descendant_describes_its_command() -> None:
    proc = Descendant(1, 0, 2, 0, ["python3", "-c", "x"])
    assert proc.command == "python3 -c x"
    assert Descendant(1, 0, 2, 0, []).command == "?"


def test_leftovers_check_warns_with_count_in_perfdata_and_textfile(
    daemons: list[Daemon], tmp_path: Path
) -> None:
    from wsgi_drain import report, report_check
    from wsgi_drain.check import CheckResult, Thresholds, _leftovers_rule
    from wsgi_drain.config import Settings
    from wsgi_drain.inventory import gather
    from wsgi_drain.status import NagiosStatus

    settings = Settings(group="myapp", state_dir=tmp_path / "state")
    empty = CheckResult("myapp")
    _leftovers_rule(empty, settings)
    assert empty.leftovers == 0 and empty.status == NagiosStatus.OK
    daemon = Daemon()
    daemons.append(daemon)
    tracker = recorded(daemon)
    leftovers_record.save(settings.state_dir, "myapp", tracker.held())
    daemon.exit()
    result = CheckResult("myapp")
    _leftovers_rule(result, settings)
    assert result.status == NagiosStatus.WARNING and result.leftovers == 4
    assert result.findings[0].message.startswith(
        "4 process(es) left behind by replaced daemons of group 'myapp' still run (pids "
    )
    assert "leftovers=4;0;;0;" in report_check.check_perfdata(result, Thresholds())
    assert 'wsgi_drain_leftovers{group="myapp"} 4\n' in report_check.prometheus_text(result)
    inv = gather(
        group="myapp",
        apache_pidfile=tmp_path / "none.pid",
        apache_config=None,
        state_dir=settings.state_dir,
        file_data={},
        source="defaults",
    )
    assert sorted(e.pid for e in inv.leftovers["myapp"]) == sorted(daemon.kids)
    assert len(report.status_dict(inv)["leftovers"]) == 4
    end(tracker.left_behind(), 5.0)
    after = CheckResult("myapp")
    _leftovers_rule(after, settings)
    assert after.leftovers == 0 and after.status == NagiosStatus.OK
    tracker.close()


def test_leftovers_text_report_names_each_and_the_verdict_line_counts() -> None:
    import io

    from wsgi_drain import report
    from wsgi_drain.outcome import Outcome

    ticks = procfs.start_ticks(os.getpid())
    assert ticks is not None
    out = Outcome(group="myapp", mode="drain", requested_mode="drain", signal="SIGUSR1")
    out.leftovers = [Descendant(os.getpid(), ticks, 42, 0, ["python3", "worker.py"])]
    out.notes.append(summary(out.leftovers, stop=False))
    text = io.StringIO()
    report.print_restart(out, text)
    first, *rest = text.getvalue().splitlines()
    assert first.endswith(
        "; 1 process left behind by the old daemons, still running (--leftovers stop ends them)"
    )
    assert any(
        line.startswith(f"  left behind: pid {os.getpid()} from daemon 42, age ")
        and line.endswith("still running: python3 worker.py")
        for line in rest
    ), rest
    data = report.restart_dict(out)["leftovers"]
    assert data[0]["pid"] == os.getpid() and data[0]["daemon_pid"] == 42
    assert data[0]["cmdline"] == ["python3", "worker.py"] and data[0]["ending"] is None


def test_leftovers_app_children_doc_shows_exactly_the_code_the_lab_app_runs() -> None:
    """docs/app-children.md's example is lab/app.py's and lab/app_child.py's own code (tested
    on the real stack by the integration test of the shutdown hook)."""
    root = Path(__file__).resolve().parents[2]
    doc = (root / "docs" / "app-children.md").read_text()
    for name, marker in (("app.py", "the app's side"), ("app_child.py", "the child's side")):
        source = (root / "lab" / name).read_text()
        start = source.index(f"# --- docs/app-children.md: {marker} ---\n")
        start = source.index("\n", start) + 1
        region = source[start : source.index("# --- end ---", start)].rstrip(" ").strip("\n")
        assert f"```python\n{region}\n```" in doc, name
