"""`procfacts`: the facts `check` reads from /proc give what psutil gives, on real processes.

The check no longer imports psutil (issue 22: its import cost every cron
run), but a daemon's start time recorded by discovery is compared, before
any signal, with one read later, and the restart's other paths still use
psutil: the two must agree to the bit, and the names, argv and environment
the Apache parent is recognised by must be psutil's own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.unit.children import SLEEPER
from wsgi_drain import procfacts, procfs
from wsgi_drain.discovery import running_parents
from wsgi_drain.inventory import process_info


def _sleeper(started: list[subprocess.Popen[str]], argv: list[str], **kwargs: object) -> int:
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True,
                             **kwargs)  # type: ignore[call-overload]  # fmt: skip
    started.append(child)
    assert child.stdout is not None and child.stdout.readline() == "ready\n"
    return int(child.pid)


def test_procfacts_start_time_is_psutils_create_time_to_the_bit(
    started: list[subprocess.Popen[str]],
) -> None:
    pid = _sleeper(started, [sys.executable, "-c", SLEEPER])
    for who in (os.getpid(), pid, 1):
        assert procfacts.create_time(who) == psutil.Process(who).create_time()


def test_procfacts_name_argv_and_environ_are_psutils(
    started: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    # A name the kernel cuts at 15 characters, extended from argv[0] as psutil does.
    long_name = tmp_path / "wsgi-drain-a-long-program-name"
    long_name.symlink_to(sys.executable)
    env = {"A": "1", "B": "x=y", "C": "a\r\nb\rc"}
    cut = _sleeper(started, [str(long_name), "-c", SLEEPER], env=env)
    # One argv word with spaces in it: psutil splits it as a rewritten title.
    spaced = _sleeper(started, ["python with spaces", "-c", SLEEPER], executable=sys.executable)
    for pid in (cut, spaced, os.getpid()):
        proc = psutil.Process(pid)
        assert procfacts.name(pid) == proc.name()
        assert procfacts.argv(pid) == proc.cmdline()
        assert procfacts.environ(pid) == proc.environ()
        assert procfacts.ppid(pid) == proc.ppid()
    assert procfacts.name(cut) == "wsgi-drain-a-long-program-name"
    # Read as text with universal newlines, as psutil reads it.
    assert procfacts.environ(cut) == {"A": "1", "B": "x=y", "C": "a\nb\nc"}


def test_procfacts_usage_is_what_psutil_shows_of_a_process(
    started: list[subprocess.Popen[str]],
) -> None:
    pid = _sleeper(started, [sys.executable, "-c", SLEEPER])
    # Stopped, so that nothing of it moves between the two reads (the check's SIGSTOP rule).
    os.kill(pid, signal.SIGSTOP)
    for _ in range(100):
        if procfs.state_of(pid) == "T":
            break
        time.sleep(0.05)
    facts = procfacts.usage(pid)
    proc = psutil.Process(pid)
    with proc.oneshot():
        assert facts.create_time == proc.create_time()
        assert facts.rss == proc.memory_info().rss
        assert facts.threads == proc.num_threads()
        assert facts.state == proc.status() == "stopped"
    info = process_info(pid)
    assert info is not None and (info.rss, info.threads) == (facts.rss, facts.threads)
    assert info.state == "stopped"


def test_procfacts_a_gone_process_is_process_lookup_error(
    started: list[subprocess.Popen[str]],
) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=30)
    for read in (procfacts.create_time, procfacts.name, procfacts.argv, procfacts.usage):
        with pytest.raises(ProcessLookupError):
            read(child.pid)
    assert process_info(child.pid) is None


def test_procfacts_running_parents_scan_finds_what_psutil_finds(
    started: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    # A process named like Apache whose parent is not Apache: a parent, found by both scans.
    apache2 = tmp_path / "apache2"
    apache2.symlink_to(sys.executable)
    pid = _sleeper(started, [str(apache2), "-c", SLEEPER])
    by_psutil = set()
    for proc in psutil.process_iter(["name", "ppid"]):
        if proc.info["name"] == "apache2":
            try:
                parent = psutil.Process(proc.info["ppid"]).name()
            except psutil.Error:
                parent = ""
            if parent != "apache2":
                by_psutil.add(proc.pid)
    # Other Apaches on the host may come and go between two scans: ours is in both.
    assert pid in by_psutil
    assert pid in {p.pid for p in running_parents()}
