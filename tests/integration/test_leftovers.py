"""Leftovers on the real stack: an app whose every daemon starts two children at import
(lab/app.py `children`), restarted by the installed command behind a real HAProxy.

The children of the old daemons are listed (none of the new ones'), `--leftovers stop`
ends them and leaves the new daemons' children alone, `check` warns while any runs and is
OK once none does, and the shutdown hook of docs/app-children.md makes the report clean.
Every child these tests made is killed at the end, by pid (psutil: pid + create time).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import psutil
import pytest

from lab import ModWsgi, Stack, skip_or_fail, two_hosts
from lab.errors import LabUnavailable
from lab.procs import is_gone, kill
from tests.integration.conftest import Run, restart_args, run_cli
from wsgi_drain.deadline import Deadline

pytestmark = pytest.mark.integration

# Explicit timeouts (no trap warning in check); a short shutdown-timeout bounds the stop.
TIMEOUTS = {"graceful-timeout": 15, "shutdown-timeout": 3}


def children_of(pids: list[int]) -> dict[int, psutil.Process]:
    """Every live descendant of `pids`, by pid (psutil objects guard against pid reuse)."""
    found: dict[int, psutil.Process] = {}
    for pid in pids:
        try:
            for kid in psutil.Process(pid).children(recursive=True):
                found[kid.pid] = kid
        except psutil.NoSuchProcess:
            continue
    return found


def app_children(script: str) -> dict[int, psutil.Process]:
    """The processes running this stack's copy of app_child.py (ours alone: its own path)."""
    found = {}
    for proc in psutil.process_iter(["cmdline"]):
        if script in (proc.info["cmdline"] or []) and not is_gone(proc):
            found[proc.pid] = proc
    return found


@pytest.fixture
def seen() -> Iterator[dict[int, psutil.Process]]:
    """Every child a test saw; those still running at the end are killed."""
    procs: dict[int, psutil.Process] = {}
    yield procs
    kill(procs.values())


@pytest.fixture
def plain(tmp_path: Path, modwsgi: ModWsgi, seen: dict[int, psutil.Process]) -> Iterator[Stack]:
    yield from _stack(tmp_path, modwsgi, "plain", seen)


@pytest.fixture
def hooked(tmp_path: Path, modwsgi: ModWsgi, seen: dict[int, psutil.Process]) -> Iterator[Stack]:
    yield from _stack(tmp_path, modwsgi, "hook", seen)


@pytest.fixture
def hanging(tmp_path: Path, modwsgi: ModWsgi, seen: dict[int, psutil.Process]) -> Iterator[Stack]:
    """Plain children, and daemons that hang in shutdown until shutdown-timeout aborts them
    (longer than the run takes to give up on them and end)."""
    options = {**TIMEOUTS, "shutdown-timeout": 15}
    yield from _stack(tmp_path, modwsgi, "plain", seen, hang=True, options=options)


def _stack(
    tmp_path: Path,
    modwsgi: ModWsgi,
    mode: str,
    seen: dict[int, psutil.Process],
    *,
    hang: bool = False,
    options: dict[str, int] | None = None,
) -> Iterator[Stack]:
    script: str | None = None
    try:
        with ExitStack() as stop:
            try:
                stack = stop.enter_context(
                    two_hosts(
                        tmp_path,
                        modwsgi,
                        preload=True,
                        daemon_options=options or TIMEOUTS,
                        children=mode,
                        hang=hang,
                    )
                )
            except LabUnavailable as err:
                skip_or_fail(str(err))
            script = str(stack.a.app_dir / "app_child.py")
            yield stack
    finally:
        # Apache is stopped: nothing starts a child any more; `seen` ends those still running.
        if script is not None:
            seen.update(app_children(script))


def daemons_and_children(
    stack: Stack, seen: dict[int, psutil.Process]
) -> tuple[list[int], set[int]]:
    """The group's daemons (each has imported the app) and their children, two each."""
    daemons = stack.a.daemon_pids()
    stack.a.wait_loaded(daemons)
    deadline = Deadline(20.0)
    kids = children_of(daemons)
    while len(kids) < 2 * len(daemons) and not deadline.expired():
        time.sleep(0.05)  # the app starts them as it imports: already done, or nearly
        kids = children_of(daemons)
    seen.update(kids)
    return daemons, set(kids)


old_children = daemons_and_children


def restart(stack: Stack, *extra: str) -> Run:
    return run_cli(*restart_args(stack, "--json", "--quiet", *extra))


def check(stack: Stack) -> Run:
    return run_cli(
        "check", "--group", "myapp", "--apache-pidfile", str(stack.a.pid_file),
        "--health-url", f"{stack.a.url}/health", "--state-dir", str(stack.state_dir),
    )  # fmt: skip


def new_children(stack: Stack, seen: dict[int, psutil.Process]) -> set[int]:
    return daemons_and_children(stack, seen)[1]


def test_leftovers_restart_lists_every_child_of_the_old_daemons_and_check_warns(
    plain: Stack, seen: dict[int, psutil.Process]
) -> None:
    daemons, old = old_children(plain, seen)
    assert len(old) == 6
    run = restart(plain)
    assert run.returncode == 0, run.stdout + run.stderr
    data = run.json()
    left = data["leftovers"]
    assert {d["pid"] for d in left} == old  # every child of the old daemons
    assert {d["daemon_pid"] for d in left} == set(daemons)
    assert all(d["ending"] is None and "app_child.py" in " ".join(d["cmdline"]) for d in left)
    assert "6 processes left behind by the old daemons, still running" in data["message"]
    assert not new_children(plain, seen) & {d["pid"] for d in left}  # none of the new ones'
    assert all(not is_gone(seen[pid]) for pid in old)  # report only: they still run

    # Seen later: check says WARNING with the count, status lists them.
    later = check(plain)
    assert later.returncode == 1, later.stdout
    first = later.stdout.splitlines()[0]
    assert first.startswith("WSGI-DRAIN WARNING - myapp: 6 process(es) left behind"), first
    assert "leftovers=6;0;;0;" in first
    status = run_cli("status", "--json", "--state-dir", str(plain.state_dir), "-g", "myapp")
    assert {d["pid"] for d in status.json()["leftovers"]} == old


def test_leftovers_stop_leaves_none_alive_and_the_new_daemons_children_untouched(
    plain: Stack, seen: dict[int, psutil.Process]
) -> None:
    _daemons, old = old_children(plain, seen)
    run = restart(plain, "--leftovers", "stop")
    assert run.returncode == 0, run.stdout + run.stderr
    data = run.json()
    assert {d["pid"] for d in data["leftovers"]} == old
    assert {d["ending"] for d in data["leftovers"]} == {"terminated"}
    assert "6 processes left behind by the old daemons: 6 terminated" in data["message"]
    assert all(is_gone(seen[pid]) for pid in old)
    new = new_children(plain, seen)
    assert len(new) == 6 and all(not is_gone(seen[pid]) for pid in new)
    later = check(plain)
    assert later.returncode == 0, later.stdout
    assert "leftovers=0;0;;0;" in later.stdout.splitlines()[0]


def test_leftovers_rolling_mode_names_and_stops_them_too(
    plain: Stack, seen: dict[int, psutil.Process]
) -> None:
    _daemons, old = old_children(plain, seen)
    run = run_cli(
        *restart_args(plain, haproxy=False),
        "--mode",
        "rolling",
        "--leftovers",
        "stop",
        "--json",
        "--quiet",
    )
    assert run.returncode == 0, run.stdout + run.stderr
    data = run.json()
    assert data["mode"] == "rolling"
    assert {d["pid"] for d in data["leftovers"]} == old
    assert all(is_gone(seen[pid]) for pid in old)
    assert all(not is_gone(seen[pid]) for pid in new_children(plain, seen))


def test_leftovers_documented_shutdown_hook_makes_the_report_clean(
    hooked: Stack, seen: dict[int, psutil.Process]
) -> None:
    daemons, old = old_children(hooked, seen)
    assert len(old) == 6
    run = restart(hooked)
    assert run.returncode == 0, run.stdout + run.stderr
    data = run.json()
    assert data["leftovers"] == [], data["leftovers"]
    assert "left behind" not in data["message"]
    assert all(is_gone(seen[pid]) for pid in old)
    assert len(new_children(hooked, seen)) == 6
    assert check(hooked).returncode == 0
    # This mod_wsgi ran the app's subscribe_shutdown callbacks as each old daemon stopped.
    for pid in daemons:
        said = (hooked.a.app_dir / "loaded" / f"{pid}.stopping").read_text()
        assert said.startswith("('process_stopping',)") and "shutdown_reason" in said, said


def test_leftovers_a_stuck_daemon_keeps_its_children_until_it_is_gone(
    hanging: Stack, seen: dict[int, psutil.Process]
) -> None:
    """Past the deadline (1 s) the daemons still hang in shutdown: exit 5, nothing left
    behind, nothing signalled; once shutdown-timeout aborts them, check sees their children."""
    daemons, old = old_children(hanging, seen)
    run = restart(hanging, "--timeout", "1", "--leftovers", "stop")
    assert run.returncode == 5, run.stdout + run.stderr
    data = run.json()
    assert data["leftovers"] == []
    assert all(not is_gone(seen[pid]) for pid in old)  # not signalled while their daemon lives
    stuck = [psutil.Process(pid) for pid in daemons]
    deadline = Deadline(60.0)
    while not all(is_gone(p) for p in stuck):  # aborted at shutdown-timeout (15 s)
        assert not deadline.expired(), "the hung daemons were never aborted"
        time.sleep(0.1)
    later = run_cli(
        "check", "--group", "myapp", "--apache-pidfile", str(hanging.a.pid_file),
        "--state-dir", str(hanging.state_dir), "--json",
    )  # fmt: skip
    report = later.json()
    assert report["leftovers"] == 6, report
    assert any(
        f["level"] == "WARNING" and "6 process(es) left behind" in f["message"]
        for f in report["findings"]
    ), report["findings"]
