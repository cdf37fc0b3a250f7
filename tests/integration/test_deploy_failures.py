"""Deploys that go wrong, told plainly: the verdict names the cause in the app's own words.

Each case is new code that fails on the real stack (Apache + mod_wsgi behind
HAProxy, under load): the run must stop, keep the backend diverted (so no
user reaches the broken app), exit 6, and say why on its first line, with
the relevant error-log lines in the report.
"""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from lab import LabUnavailable, LoadLoop, ModWsgi, Outcome, Stack, skip_or_fail
from lab.stack import two_hosts
from tests.integration.conftest import Run, restart_args, run_cli

pytestmark = pytest.mark.integration


@contextmanager
def preloaded_stack(root: Path, modwsgi: ModWsgi) -> Iterator[Stack]:
    try:
        with two_hosts(root, modwsgi, preload=True) as stack:
            yield stack
    except LabUnavailable as err:
        skip_or_fail(str(err))


def restart_under_load(stack: Stack) -> tuple[Run, LoadLoop]:
    load = LoadLoop(stack.haproxy.url + "/", max_requests=3000, max_seconds=40)
    load.start()
    try:
        time.sleep(0.5)
        run = run_cli(*restart_args(stack, "--json"))
        time.sleep(0.5)
    finally:
        load.stop()
    return run, load


def assert_users_saw_nothing(load: LoadLoop) -> None:
    summary = load.summary()
    failed = {k: v for k, v in summary.counts.items() if k != Outcome.OK and v}
    assert summary.total > 20, f"load loop sent too little to mean anything: {summary}"
    assert not failed, f"failed requests: {failed} of {summary.total}"


def test_import_error_is_named_and_the_backend_stays_diverted(
    tmp_path: Path, modwsgi: ModWsgi
) -> None:
    with preloaded_stack(tmp_path, modwsgi) as stack:
        # Preloaded, so the old processes hold the old code before the deploy.
        stack.a.wait_loaded(stack.a.daemon_pids())
        stack.a.set_broken(True)  # the new code imports a module the deploy forgot

        run, load = restart_under_load(stack)
        report = run.json()
        left = stack.haproxy.server_states()["a"].status

    assert run.returncode == 6, run.stderr
    assert report["verdict"] == "unhealthy"
    message = str(report["message"])
    assert message.startswith("the new code fails to load: ModuleNotFoundError"), message
    app_log = "\n".join(report["app_log"])  # type: ignore[arg-type]
    assert "Traceback (most recent call last):" in app_log
    assert "ModuleNotFoundError: No module named 'lab_missing_dependency'" in app_log
    assert app_log.count("Traceback") == 1, "repeats of the same traceback were not removed"
    assert report["left_diverted"] is True
    assert left in ("DRAIN", "DOWN")
    assert_users_saw_nothing(load)


def test_crash_loop_is_named_within_seconds_and_the_backend_stays_diverted(
    tmp_path: Path, modwsgi: ModWsgi
) -> None:
    with preloaded_stack(tmp_path, modwsgi) as stack:
        stack.a.wait_loaded(stack.a.daemon_pids())
        stack.a.set_crash(True)  # the new code kills the interpreter as it loads

        run, load = restart_under_load(stack)

        report = run.json()
        assert run.returncode == 6, run.stderr
        message = str(report["message"])
        found = re.match(
            r"crash loop: replacements die at start: (\d+) exits in ([\d.]+) s", message
        )
        assert found, message
        assert int(found.group(1)) >= 2
        # The verdict comes from the deaths themselves, not from the watch
        # deadline (30 s here) or the health probe's patience.
        assert float(found.group(2)) < 10, message
        assert "terminated" in message, "the exit status mod_wsgi logged is not named"
        assert any("terminated" in line for line in report["app_log"])  # type: ignore[union-attr]
        assert report["left_diverted"] is True
        assert stack.haproxy.server_states()["a"].status in ("DRAIN", "DOWN")
        assert_users_saw_nothing(load)


def test_shutdown_hang_is_inspected_while_it_hangs_and_named(
    tmp_path: Path, modwsgi: ModWsgi
) -> None:
    try:
        with two_hosts(
            tmp_path, modwsgi, hang=True, daemon_options={"shutdown-timeout": 3}
        ) as stack:
            # Each daemon loads the app (and its never-ending non-daemon thread)
            # on its first request; make every one of `a`'s load it.
            old = stack.a.daemon_pids()
            deadline = time.monotonic() + 20
            while not all((stack.a.app_dir / "loaded" / str(p)).exists() for p in old):
                assert time.monotonic() < deadline, "the app never loaded in every process"
                urllib.request.urlopen(stack.a.url + "/", timeout=5).read()
            run, load = restart_under_load(stack)
            state = stack.haproxy.server_states()["a"].status
    except LabUnavailable as err:
        skip_or_fail(str(err))

    report = run.json()
    assert run.returncode == 0, run.stderr
    first = str(report["message"])
    assert "blocked interpreter shutdown" in first and "lab-hang" in first, first
    hung = [p for p in report["processes"] if p["hung_in_shutdown"]]  # type: ignore[union-attr]
    assert len(hung) == 3
    assert all("lab-hang" in p["hang_threads"] for p in hung), hung
    warnings = "\n".join(report["warnings"])  # type: ignore[arg-type]
    assert "requests still running were cut off" not in warnings
    assert "no request was in flight" in warnings
    assert state.startswith("UP")
    assert_users_saw_nothing(load)
