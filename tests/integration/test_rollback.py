"""A broken deploy on one server, and the way back (`--rollback`); Apache dying mid-run.

On the real stack: one Apache (preloaded app, so the old processes hold the
old code before the deploy), load straight at it, `restart --mode rolling`
after the deploy made the new code raise at import.  Without --rollback the
run must say who serves what (no `undrain`: nothing was diverted) and
`check` must be CRITICAL; with it the old code must serve again within
seconds.  Then the same in drain mode through HAProxy, the crash loop, the
rollback that fails or hangs, and the Apache parent SIGKILLed right after
the signal.  `pytest -k rollback`, `-k apache_died`.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psutil
import pytest

from lab import ApacheLab, LabUnavailable, LoadLoop, ModWsgi, Outcome, Stack, skip_or_fail
from lab.load import Sample
from lab.stack import two_hosts
from tests.integration.conftest import Run, restart_args, run_cli, wsgi_drain_command

pytestmark = pytest.mark.integration


@contextmanager
def one_server(root: Path, modwsgi: ModWsgi) -> Iterator[ApacheLab]:
    """One Apache, the app preloaded and loaded by every process (the old code)."""
    lab = ApacheLab(root / "a", modwsgi=modwsgi, preload=True)
    try:
        lab.start()
    except LabUnavailable as err:
        lab.stop()
        skip_or_fail(str(err))
    try:
        lab.wait_loaded(lab.daemon_pids())
        yield lab
    finally:
        lab.stop()


@contextmanager
def preloaded_stack(root: Path, modwsgi: ModWsgi) -> Iterator[Stack]:
    try:
        with two_hosts(root, modwsgi, preload=True) as stack:
            stack.a.wait_loaded(stack.a.daemon_pids())
            yield stack
    except LabUnavailable as err:
        skip_or_fail(str(err))


def rolling_args(lab: ApacheLab, state_dir: Path, *extra: str) -> list[str]:
    return [
        "restart", "--group", "myapp", "--apache-pidfile", str(lab.pid_file), "--mode",
        "rolling", "--health-url", f"{lab.url}/health", "--state-dir", str(state_dir),
        "--json", *extra,
    ]  # fmt: skip


def rollback_program(lab: ApacheLab) -> str:
    """The deploy's way back: put the previous state of the app back (the flag removed)."""
    return f"/bin/rm -f {lab.app_dir / 'broken'} {lab.app_dir / 'crash'}"


def under_load(url: str, args: list[str]) -> tuple[Run, list[Sample], float]:
    """Run the command with load at `url`; its result, every request, and when it started."""
    load = LoadLoop(url, max_requests=4000, max_seconds=60, clients=4)
    load.start()
    try:
        time.sleep(0.5)
        started = time.monotonic()
        run = run_cli(*args)
        time.sleep(1.0)
    finally:
        load.stop()
    return run, load.results(), started


def failed(samples: list[Sample]) -> list[Sample]:
    return [s for s in samples if s.outcome != Outcome.OK]


def check(lab: ApacheLab, state_dir: Path, *extra: str) -> tuple[int, str]:
    done = subprocess.run(
        [
            *wsgi_drain_command(),
            "check",
            "--group",
            "myapp",
            "--apache-pidfile",
            str(lab.pid_file),
            "--state-dir",
            str(state_dir),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode, done.stdout


def every_process_answers_200(lab: ApacheLab) -> None:
    """Enough concurrent requests that every process (threads=5 each) must take some."""
    pids = set(lab.daemon_pids())
    lab.wait_loaded(sorted(pids))  # each has loaded the app (the old code)

    def get() -> tuple[int, int]:
        with urllib.request.urlopen(f"{lab.url}/busy?s=0.5", timeout=30) as answer:
            return answer.status, int(answer.headers["X-Pid"])

    with concurrent.futures.ThreadPoolExecutor(max_workers=15) as pool:
        answers = list(pool.map(lambda _i: get(), range(15)))
    assert all(status == 200 for status, _pid in answers), answers
    assert {pid for _status, pid in answers} == pids, (answers, pids)


# -- one server, rolling mode, load straight at Apache ---------------------------------


def test_without_rollback_a_broken_deploy_names_the_processes_on_new_code_and_no_undrain(
    tmp_path: Path, modwsgi: ModWsgi
) -> None:
    with one_server(tmp_path, modwsgi) as lab:
        old = set(lab.daemon_pids())
        lab.set_broken(True)
        run, _samples, _started = under_load(lab.url + "/", rolling_args(lab, tmp_path / "state"))
        status, line = check(lab, tmp_path / "state")
        report = run.json()
        new_code = set(lab.daemon_pids()) - old

    assert run.returncode == 6, run.stdout + run.stderr
    message = str(report["message"])
    assert "the new code fails to load: ModuleNotFoundError" in message, message
    assert "undrain" not in message and "undrain" not in run.stderr, message
    assert "nothing was diverted" in message and "Roll back the code" in message, message
    serving = report["serving"]
    assert set(serving["new_code"]) == new_code and new_code, (serving, new_code)
    assert f"(pid {' '.join(map(str, sorted(new_code)))}) run the new code" in message
    assert len(serving["old_code"]) == 3 - len(new_code)
    assert status == 2 and "on new code that fails" in line, line
    assert "undrain" not in line


def test_rollback_restoring_the_previous_file_exits_8_and_every_process_answers_200(
    tmp_path: Path, modwsgi: ModWsgi
) -> None:
    with one_server(tmp_path, modwsgi) as lab:
        lab.set_broken(True)
        args = rolling_args(lab, tmp_path / "state", "--rollback", rollback_program(lab))
        run, samples, started = under_load(lab.url + "/", args)
        report = run.json()
        every_process_answers_200(lab)
        status, line = check(lab, tmp_path / "state")

    assert run.returncode == 8, run.stdout + run.stderr
    assert report["verdict"] == "rolled_back"
    assert str(report["message"]).startswith("rolled back: the new code failed"), report
    assert report["rollback"]["exit_status"] == 0
    late = [s for s in failed(samples) if s.start > started + 3.0]
    assert not late, f"{len(late)} requests failed later than 3 s after the command started"
    assert status in (0, 1) and "new code" not in line, line  # WARNING: the lab's traps


def test_rollback_of_a_crash_loop_exits_8(tmp_path: Path, modwsgi: ModWsgi) -> None:
    with one_server(tmp_path, modwsgi) as lab:
        lab.set_crash(True)  # the new code exits the interpreter at import
        args = rolling_args(lab, tmp_path / "state", "--rollback", rollback_program(lab))
        run, _samples, _started = under_load(lab.url + "/", args)
        report = run.json()
        every_process_answers_200(lab)

    assert run.returncode == 8, run.stdout + run.stderr
    assert "crash loop" in str(report["message"]) or "exited right after" in str(
        report["message"]
    ), report["message"]


def test_rollback_program_that_fails_exits_6_naming_both_failures(
    tmp_path: Path, modwsgi: ModWsgi
) -> None:
    with one_server(tmp_path, modwsgi) as lab:
        lab.set_broken(True)
        program = "/bin/sh -c 'echo cannot find the previous release >&2; exit 1'"
        args = rolling_args(lab, tmp_path / "state", "--rollback", program)
        run, _samples, _started = under_load(lab.url + "/", args)
        report = run.json()

    assert run.returncode == 6, run.stdout + run.stderr
    message = str(report["message"])
    assert "the new code fails to load: ModuleNotFoundError" in message, message
    assert "the rollback failed too" in message and "exit status 1" in message, message
    assert "cannot find the previous release" in report["rollback"]["output"]
    assert "undrain" not in message


def test_rollback_program_that_hangs_is_killed_at_its_timeout_exits_6(
    tmp_path: Path, modwsgi: ModWsgi
) -> None:
    with one_server(tmp_path, modwsgi) as lab:
        lab.set_broken(True)
        args = rolling_args(
            lab, tmp_path / "state", "--rollback", "/bin/sleep 600", "--rollback-timeout", "2"
        )
        run, _samples, _started = under_load(lab.url + "/", args)
        report = run.json()

    assert run.returncode == 6, run.stdout + run.stderr
    message = str(report["message"])
    assert "the new code fails to load" in message, message
    assert "did not finish within its timeout and was killed" in message, message
    assert report["rollback"]["timed_out"] is True


# -- drain mode through HAProxy ----------------------------------------------------------


def test_rollback_through_haproxy_in_drain_mode_exits_8_nothing_failed_server_up(
    tmp_path: Path, modwsgi: ModWsgi
) -> None:
    with preloaded_stack(tmp_path, modwsgi) as stack:
        stack.a.set_broken(True)
        args = restart_args(stack, "--json", "--rollback", rollback_program(stack.a))
        run, samples, _started = under_load(stack.haproxy.url + "/", args)
        report = run.json()
        state = stack.haproxy.server_states()["a"].status
        every_process_answers_200(stack.a)

    assert run.returncode == 8, run.stdout + run.stderr
    assert report["verdict"] == "rolled_back"
    assert "undrain" not in str(report["message"])
    assert [r["restored"] for r in report["routers"]] == [True]
    assert not failed(samples), f"{len(failed(samples))} of {len(samples)} requests failed"
    assert state.startswith("UP"), state


# -- Apache dies right after the signal --------------------------------------------------


def test_apache_died_after_the_signal_ends_the_run_within_2_s_and_stays_out_of_rotation(
    tmp_path: Path, modwsgi: ModWsgi
) -> None:
    with preloaded_stack(tmp_path, modwsgi) as stack:
        parent = stack.a.parent_pid
        family = psutil.Process(parent).children()
        journal = stack.state_dir / "myapp.journal.json"
        load = LoadLoop(stack.haproxy.url + "/", max_requests=4000, max_seconds=60, clients=4)
        load.start()
        try:
            time.sleep(0.5)
            command = [*wsgi_drain_command(), *restart_args(stack, "--json")]
            proc = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            try:
                limit = time.monotonic() + 60
                while time.monotonic() < limit and proc.poll() is None:
                    try:
                        if json.loads(journal.read_text()).get("phase") == "watch":
                            break  # the signal has gone
                    except (OSError, ValueError):
                        pass
                    time.sleep(0.005)
                # Stopped, the parent forks no more workers: every child it has is
                # then in `family` (one forked after the first read was left running,
                # reparented to init, as a whole Apache to the tests that count them).
                os.kill(parent, signal.SIGSTOP)
                family = psutil.Process(parent).children()
                os.kill(parent, signal.SIGKILL)
                killed = time.monotonic()
                out, err = proc.communicate(timeout=60)
                ended = time.monotonic() - killed
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            time.sleep(1.0)
        finally:
            load.stop()
            for child in family:  # the dead parent's daemons and workers: ours to end
                with suppress(psutil.Error):
                    child.kill()
        state = stack.haproxy.server_states()["a"].status
        status, line = check(stack.a, stack.state_dir)
        samples = load.results()

    report = json.loads(out)
    message = str(report["message"])
    assert proc.returncode == 6, out + err
    assert ended < 2.0, f"the run ended {ended:.2f} s after Apache was killed: {message}"
    assert message.startswith(f"Apache (pid {parent}) died "), message
    assert "after the signal; nothing serves here; the backend stays out of rotation" in message
    assert state.startswith(("DRAIN", "MAINT", "DOWN")), state
    assert status == 2, line
    assert not failed(samples), f"{len(failed(samples))} of {len(samples)} requests failed"


def test_dry_run_shows_the_rollback_program(tmp_path: Path, modwsgi: ModWsgi) -> None:
    with one_server(tmp_path, modwsgi) as lab:
        run = run_cli(
            *rolling_args(lab, tmp_path / "state", "--dry-run", "--rollback", "/srv/rb 'my app'")
        )
    assert run.returncode == 0, run.stderr
    plan = "\n".join(run.json()["plan"])
    assert "run /srv/rb 'my app'" in plan, plan


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL])
def test_rollback_interrupted_follows_the_failure_policy_and_the_journal_says_so(
    tmp_path: Path, sig: signal.Signals
) -> None:
    modwsgi: ModWsgi = "debian"
    state = tmp_path / "state"
    journal = state / "myapp.journal.json"
    with one_server(tmp_path, modwsgi) as lab:
        lab.set_broken(True)
        args = rolling_args(lab, state, "--rollback", "/bin/sleep 45")
        command = [*wsgi_drain_command(), *args]
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        program: list[psutil.Process] = []
        try:
            limit = time.monotonic() + 60
            while time.monotonic() < limit and proc.poll() is None:
                try:
                    if json.loads(journal.read_text()).get("rollback"):
                        break  # the rollback has started
                except (OSError, ValueError):
                    pass
                time.sleep(0.02)
            time.sleep(0.3)
            program = psutil.Process(proc.pid).children()
            assert program, "the rollback program is not running"
            proc.send_signal(sig)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if sig == signal.SIGKILL:  # killed outright: its program is ours to end
                for child in program:
                    with suppress(psutil.Error):
                        child.kill()
        status, line = check(lab, state)
        listing = run_cli("status", "--group", "myapp", "--state-dir", str(state))

    recorded = json.loads(journal.read_text())
    assert "/bin/sleep 45" in recorded["rollback"]
    assert status == 2, line
    if sig == signal.SIGKILL:
        assert "during its rollback (/bin/sleep 45" in line, line
        assert "during its rollback" in listing.stdout, listing.stdout
        return
    assert proc.returncode == 130, out + err
    message = str(json.loads(out)["message"])
    assert f"interrupted by {sig.name}" in message and "during the rollback" in message, message
    assert "the new code had failed" in message and "undrain" not in message, message
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in program)
    assert "on new code that fails" in line, line
    assert "during its rollback" in listing.stdout, listing.stdout
