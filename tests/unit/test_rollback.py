"""--rollback and the truth with no router: the rules, each with a case that breaks it.

The phases themselves run against a real stack in
tests/integration/test_rollback.py; here are the pure rules (when a rollback
runs, what the run says of the traffic, which processes are replaced, when
a dead parent is a death) and the bounded program run, on real children.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import cast

import pytest

from wsgi_drain import newcode, privilege
from wsgi_drain.apacheconf import DaemonGroup
from wsgi_drain.config import Settings, resolve
from wsgi_drain.discovery import DaemonProcess, GroupProcesses
from wsgi_drain.errors import (
    ApacheDiedError,
    ConfigError,
    CrashLoopError,
    Interrupted,
    NotReplacedError,
    RolledBack,
    UnhealthyError,
)
from wsgi_drain.interrupts import Interrupts
from wsgi_drain.outcome import Outcome, RouterRecord
from wsgi_drain.program import parse_argv, run_bounded
from wsgi_drain.restart import apache_died, policy, rollback
from wsgi_drain.restart.policy import Verdict
from wsgi_drain.restart.records import Run
from wsgi_drain.restart.serving import NewCodeServingError, Serving
from wsgi_drain.state import Journal
from wsgi_drain.status import ExitStatus

PYTHON = sys.executable


# -- when the rollback runs ------------------------------------------------------------


@pytest.mark.parametrize(
    "err",
    [
        UnhealthyError("the new code fails to load"),
        CrashLoopError("crash loop"),
        NotReplacedError("replacement 12 of pid 10 exited right after it started"),
    ],
)
def test_rollback_runs_when_the_new_code_is_known_bad_after_the_signal(err: Exception) -> None:
    assert rollback.applies(err, Verdict(signalled=True, healthy=False))  # type: ignore[arg-type]


def test_rollback_never_runs_before_the_signal() -> None:
    # Nothing signalled: the old code still serves, untouched.
    assert not rollback.applies(UnhealthyError("x"), Verdict(signalled=False, healthy=False))


def test_rollback_does_not_run_when_the_new_code_is_not_known_bad() -> None:
    # A process stuck in shutdown (the old code's hang) leaves healthy None.
    assert not rollback.applies(NotReplacedError("stuck"), Verdict(signalled=True, healthy=None))


@pytest.mark.parametrize("err", [Interrupted("interrupted by SIGINT"), ApacheDiedError("dead")])
def test_rollback_does_not_run_when_interrupted_or_apache_died(err: Exception) -> None:
    assert not rollback.applies(err, Verdict(signalled=True, healthy=False))  # type: ignore[arg-type]


def test_rolled_back_is_exit_8_and_a_failed_rollback_is_exit_6() -> None:
    from wsgi_drain.errors import RollbackFailedError

    assert ExitStatus.ROLLED_BACK == 8
    assert RolledBack("rolled back").status == ExitStatus.ROLLED_BACK
    assert RollbackFailedError("both").status == ExitStatus.UNHEALTHY


def test_rollback_replaces_every_process_but_those_never_signalled() -> None:
    group = cast(DaemonGroup, object())  # only carried along
    procs = tuple(DaemonProcess(pid, 1.0, "(wsgi:myapp)") for pid in (10, 11, 20))
    current = GroupProcesses(group, None, procs, "title")
    # Rolling mode: 10 and 11 were never signalled (old code); 20 replaced 12.
    broken = rollback.new_code_processes(current, untouched={10, 11})
    assert broken.pids == (20,)
    # Drain mode: every process was signalled.
    assert rollback.new_code_processes(current, untouched=set()).pids == (10, 11, 20)


def test_rollback_replaces_what_an_earlier_run_left_on_failing_code() -> None:
    # 30 was on the old code; 31 an earlier run left on the failing code (its journal).
    assert rollback.never_signalled({30, 31, 32}, signalled={32}, left={31}) == {30}
    assert rollback.never_signalled({30, 31}, signalled=set(), left=set()) == {30, 31}


# -- the truth with no router ----------------------------------------------------------


def test_no_undrain_advice_where_nothing_was_diverted() -> None:
    untouched = RouterRecord(name="haproxy:lb/a", before="ready")
    assert policy.stays_out([], "myapp") == ""
    assert policy.stays_out([untouched], "myapp") == ""
    diverted = RouterRecord(name="haproxy:lb/a", before="ready", diverted=True)
    assert "wsgi-drain undrain --group myapp" in policy.stays_out([diverted], "myapp")


def test_cause_only_strips_the_advice_of_a_failure_that_was_rolled_back() -> None:
    diverted = RouterRecord(name="haproxy:lb/a", before="ready", diverted=True)
    message = "the new code fails to load: X" + policy.stays_out([diverted], "myapp")
    assert policy.cause_only(message) == "the new code fails to load: X"


def test_new_code_is_told_only_when_signalled_known_bad_and_nothing_diverted() -> None:
    assert policy.tells_new_code(True, False, diverted=False, new_code=1)
    assert not policy.tells_new_code(True, False, diverted=True, new_code=1)
    assert not policy.tells_new_code(True, None, diverted=False, new_code=1)
    assert not policy.tells_new_code(True, True, diverted=False, new_code=1)
    assert not policy.tells_new_code(False, False, diverted=False, new_code=1)
    assert not policy.tells_new_code(True, False, diverted=False, new_code=0)


def test_the_truth_names_the_processes_their_share_and_the_fix() -> None:
    serving = Serving(new=(20,), old=(10, 11))
    words = serving.describe("myapp")
    assert "1 of 3 process(es) (pid 20) run the new code" in words
    assert "about 33% of requests" in words
    assert "2 still run the old code" in words
    assert "nothing was diverted" in words
    assert "Roll back the code, then run `wsgi-drain restart --group myapp` again" in words
    assert "undrain" not in words
    err = NewCodeServingError(UnhealthyError("the new code fails to load: X"), serving, "myapp")
    assert err.status == ExitStatus.UNHEALTHY
    assert str(err).startswith("the new code fails to load: X; 1 of 3")
    assert NewCodeServingError(NotReplacedError("x"), serving, "g").status == 5


def test_check_is_critical_while_a_process_on_the_failing_code_runs() -> None:
    journal = Journal(group="myapp", pid=1, started=0.0, phase=newcode.NEW_CODE_PHASE)
    journal.new_code = [20, 21]
    assert newcode.still_serving(journal, lambda pid: pid == 21) == [21]
    assert newcode.still_serving(journal, lambda pid: False) == []
    words = newcode.new_code_words(journal, "myapp", [21])
    assert "pid 21" in words and "Roll back the code" in words and "undrain" not in words


def test_a_journal_of_new_code_serving_undiverted_never_advises_undrain() -> None:
    journal = Journal(group="myapp", pid=1, started=0.0, phase=newcode.NEW_CODE_PHASE)
    assert "undrain" not in newcode.fix_for(journal, "myapp")
    assert "wsgi-drain restart --group myapp" in newcode.fix_for(journal, "myapp")
    journal.phase = "left-diverted"
    assert newcode.fix_for(journal, "myapp") == "wsgi-drain undrain --group myapp"


def test_a_run_that_died_in_its_rollback_says_so() -> None:
    journal = Journal(group="myapp", pid=1, started=0.0)
    assert newcode.rollback_words(journal) == ""
    journal.rollback = "/srv/rollback (started 16:00:00)"
    assert "during its rollback (/srv/rollback" in newcode.rollback_words(journal)


def test_the_journal_keeps_new_code_and_rollback(tmp_path: Path) -> None:
    journal = Journal(group="myapp", pid=os.getpid(), started=1.0, phase=newcode.NEW_CODE_PHASE)
    journal.new_code, journal.rollback = [20], "/srv/rollback"
    journal.save(tmp_path)
    loaded = Journal.load(tmp_path, "myapp")
    assert loaded is not None
    assert (loaded.new_code, loaded.rollback) == ([20], "/srv/rollback")


# -- Apache died -----------------------------------------------------------------------


def test_a_parent_gone_with_its_pid_file_left_naming_it_died() -> None:
    assert apache_died.died(True, 100, named=100, named_alive=False)
    # The pid file names another pid that is not running either: died.
    assert apache_died.died(True, 100, named=101, named_alive=False)


def test_a_parent_replaced_or_stopped_cleanly_is_a_restart_not_a_death() -> None:
    assert not apache_died.died(False, 100, named=100, named_alive=True)
    # A new parent is named: Apache was stopped and started (apache_restarted follows it).
    assert not apache_died.died(True, 100, named=200, named_alive=True)
    # No pid file: a clean stop, perhaps a start under way.
    assert not apache_died.died(True, 100, named=None, named_alive=False)


def test_pidfile_pid_reads_the_file_and_none_when_missing(tmp_path: Path) -> None:
    path = tmp_path / "httpd.pid"
    assert apache_died.pidfile_pid(path) is None
    path.write_text("4242\n")
    assert apache_died.pidfile_pid(path) == 4242


# -- the program: argv, bounded, its output kept --------------------------------------------


def test_rollback_argv_is_split_like_a_shell_and_needs_an_absolute_path() -> None:
    assert parse_argv("/srv/rb 'my app' v1", "--rollback") == ("/srv/rb", "my app", "v1")
    assert parse_argv(["/srv/rb", "a b"], "rollback") == ("/srv/rb", "a b")
    with pytest.raises(ConfigError, match="absolute path"):
        parse_argv("rollback.sh", "--rollback")
    with pytest.raises(ConfigError):
        parse_argv("/srv/rb 'unclosed", "--rollback")
    with pytest.raises(ConfigError):
        parse_argv("", "--rollback")


def test_rollback_in_the_toml_group_table_is_an_argv() -> None:
    data = {"groups": {"myapp": {"rollback": ["/srv/rb", "myapp"], "rollback_timeout": 5}}}
    settings = resolve("myapp", {}, data, "/etc/wsgi-drain.toml")
    assert settings.rollback == ("/srv/rb", "myapp")
    assert settings.rollback_timeout == 5.0
    with pytest.raises(ConfigError, match="absolute path"):
        resolve("myapp", {}, {"groups": {"myapp": {"rollback": ["rb"]}}}, "f.toml")
    with pytest.raises(ConfigError):
        resolve("myapp", {}, {"groups": {"myapp": {"rollback_timeout": 0}}}, "f.toml")


def test_rollback_is_refused_under_sudo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setenv("SUDO_USER", "deploy")
    with pytest.raises(privilege.SudoRefused, match="--rollback"):
        privilege.refuse_under_sudo({"rollback": "/srv/rb"})
    privilege.refuse_under_sudo({"rollback": None})  # not given: nothing refused


def test_the_program_output_and_status_are_kept() -> None:
    result = run_bounded([PYTHON, "-c", "print('switched back'); raise SystemExit(1)"], 10)
    assert result.returncode == 1 and not result.ok
    assert "switched back" in result.output
    assert "failed with exit status 1" in result.describe()


def test_a_hanging_program_is_killed_with_its_process_group_at_the_timeout(
    tmp_path: Path,
) -> None:
    pid_file = tmp_path / "child.pid"
    # The program starts a child in its own process group, then hangs.
    script = (
        "import subprocess, sys, time\n"
        f"c = subprocess.Popen([{PYTHON!r}, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(c.pid))\n"
        "print('hanging', flush=True)\n"
        "time.sleep(60)\n"
    )
    result = run_bounded([PYTHON, "-c", script], 1.5)
    assert result.timed_out and result.returncode is None
    assert "hanging" in result.output
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("the program's child outlived the timeout")


def test_an_interrupt_kills_the_program_at_once() -> None:
    read_fd, write_fd = os.pipe()
    try:
        os.write(write_fd, b"x")
        result = run_bounded(
            [PYTHON, "-c", "import time; time.sleep(60)"], 30, wake_fd=read_fd, stop=lambda: True
        )
        assert result.interrupted and not result.timed_out and result.returncode is None
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_a_program_that_cannot_start_is_a_failure_not_a_traceback() -> None:
    result = run_bounded(["/nonexistent/rollback"], 5)
    assert not result.ok and result.start_error is not None
    assert "could not be started" in result.describe()


def _run(routers: list[RouterRecord]) -> Run:
    outcome = Outcome(group="myapp", mode="drain", requested_mode="drain", signal="SIGUSR1")
    outcome.routers.extend(routers)
    return Run(Settings(group="myapp"), lambda phase, message: None, Interrupts(), outcome)


def test_apache_died_says_who_when_and_that_the_backend_stays_out() -> None:
    diverted = RouterRecord(name="haproxy:lb/a", before="ready", diverted=True)
    words = apache_died.died_message(_run([diverted]), 2210, 0.04)
    assert words.startswith(
        "Apache (pid 2210) died 0.04 s after the signal; nothing serves here; the backend "
        "stays out of rotation"
    ), words
    assert "wsgi-drain undrain --group myapp" in words and "Start Apache again" in words


def test_apache_died_with_nothing_diverted_never_says_out_of_rotation_nor_undrain() -> None:
    words = apache_died.died_message(_run([]), 2210, 0.04)
    assert words.startswith("Apache (pid 2210) died 0.04 s after the signal; nothing serves here")
    assert "out of rotation" not in words and "undrain" not in words
    assert "nothing was diverted" in words
