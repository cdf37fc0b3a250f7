"""`procfacts`: the facts `check` reads from /proc give what psutil gives, on real processes.

The check no longer imports psutil (issue 22: its import cost every cron
run), but a daemon's start time recorded by discovery is compared, before
any signal, with one read later, and the restart's other paths still use
psutil: the two must agree to the bit, and the names, argv and environment
the Apache parent is recognised by must be psutil's own.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.unit.children import SLEEPER, traced
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


def test_procfacts_a_cut_name_stays_cut_when_argv_is_refused(
    started: list[subprocess.Popen[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An LSM may refuse the command line while the stat reads (root is never refused
    # by the kernel: simulated): psutil then gives the cut name, not AccessDenied.
    long_name = tmp_path / "wsgi-drain-a-long-program-name"
    long_name.symlink_to(sys.executable)
    pid = _sleeper(started, [str(long_name), "-c", SLEEPER])

    def refused(pid: int) -> list[str]:
        raise PermissionError(f"/proc/{pid}/cmdline")

    monkeypatch.setattr(procfacts, "argv", refused)
    assert procfacts.name(pid) == "wsgi-drain-a-lo"


def test_procfacts_a_name_of_14_characters_is_whole_never_extended_from_argv(
    started: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    # Only a name the kernel may have cut (15 characters) is extended, as psutil does.
    link = tmp_path / "wsgi-drain-14c"
    link.symlink_to(sys.executable)
    pid = _sleeper(started, ["wsgi-drain-14c-longer", "-c", SLEEPER], executable=str(link))
    assert procfacts.name(pid) == "wsgi-drain-14c" == psutil.Process(pid).name()


def test_procfacts_one_argv_word_with_spaces_is_split_as_a_rewritten_title(
    started: list[subprocess.Popen[str]],
) -> None:
    # A title written over argv[0] ("nginx: master process ...") is one NUL-ended
    # word with spaces: psutil splits it at the spaces.  The script comes on stdin.
    child = subprocess.Popen(
        ["a title with spaces"],
        executable=sys.executable,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    started.append(child)
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write(SLEEPER)
    child.stdin.close()
    assert child.stdout.readline() == "ready\n"
    assert Path(f"/proc/{child.pid}/cmdline").read_bytes() == b"a title with spaces\0"
    assert procfacts.argv(child.pid) == ["a", "title", "with", "spaces"]
    assert procfacts.argv(child.pid) == psutil.Process(child.pid).cmdline()


@pytest.mark.parametrize("digits", range(1, 8))
def test_procfacts_stat_is_parsed_whatever_the_pids_length(
    started: list[subprocess.Popen[str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    digits: int,
) -> None:
    # The name starts one past the first "(", whose offset is the pid's length:
    # a real process's stat, put under a pid of each length in a /proc of files.
    pid = _sleeper(started, [sys.executable, "-c", SLEEPER])
    proc = psutil.Process(pid)
    expected = (proc.name(), proc.ppid(), proc.create_time())
    stat = Path(f"/proc/{pid}/stat").read_bytes()
    other = int("7" * digits)
    (tmp_path / str(other)).mkdir()
    (tmp_path / str(other) / "stat").write_bytes(str(other).encode() + stat[stat.index(b" (") :])
    shutil.copy("/proc/stat", tmp_path / "stat")  # btime, for the start time
    monkeypatch.setattr(procfacts, "PROC", str(tmp_path))
    assert (procfacts.name(other), procfacts.ppid(other), procfacts.create_time(other)) == expected


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


def test_procfacts_a_zombie_has_a_name_but_no_argv_as_psutil_says(
    started: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    # Exited, not reaped: its stat still reads, its cmdline is empty.  A name the
    # kernel cut cannot be extended from argv, so the cut one stands (psutil's answer).
    long_name = tmp_path / "wsgi-drain-a-long-program-name"
    long_name.symlink_to(sys.executable)
    zombie = subprocess.Popen([str(long_name), "-c", "pass"], text=True)
    started.append(zombie)
    for _ in range(500):
        if procfs.state_of(zombie.pid) == "Z":
            break
        time.sleep(0.01)
    assert procfs.state_of(zombie.pid) == "Z"
    assert procfacts.name(zombie.pid) == "wsgi-drain-a-lo" == psutil.Process(zombie.pid).name()
    with pytest.raises(ProcessLookupError):
        procfacts.argv(zombie.pid)
    with pytest.raises(psutil.ZombieProcess):
        psutil.Process(zombie.pid).cmdline()
    assert procfacts._zombie(zombie.pid) is True


def test_procfacts_a_file_missing_of_a_live_process_is_not_gone_but_of_a_dead_one_is(
    started: list[subprocess.Popen[str]],
) -> None:
    # psutil's rule: a live process without the file is that file's error, not "gone".
    with pytest.raises(FileNotFoundError):
        procfacts._read(os.getpid(), "no-such-file")
    assert procfacts._zombie(os.getpid()) is False
    reaped = subprocess.Popen([sys.executable, "-c", "pass"])
    reaped.wait(timeout=30)
    with pytest.raises(ProcessLookupError):
        procfacts._read(reaped.pid, "no-such-file")
    assert procfacts._zombie(reaped.pid) is False, "gone is not a zombie"


def test_procfacts_a_process_a_debugger_holds_stopped_is_no_zombie(
    started: list[subprocess.Popen[str]],
) -> None:
    # Its state "t" sorts after "Z": only "Z" is a zombie.
    pid = _sleeper(started, [sys.executable, "-c", SLEEPER])
    with traced(pid):
        assert procfacts._zombie(pid) is False
        with pytest.raises(FileNotFoundError):
            procfacts._read(pid, "no-such-file")


# A process whose environment block holds what no dict can: an entry without "=",
# one starting with "=", and an empty one (a double NUL, where psutil stops).
ODD_ENVIRON = """\
import ctypes, sys
libc = ctypes.CDLL(None)
words = [b"sleep", b"60"]
env = [b"A=1", b"NOEQUALS", b"=lead", b"B=x=y", b"", b"C=after"]
argv = (ctypes.c_char_p * 3)(*words, None)
envp = (ctypes.c_char_p * 7)(*env, None)
libc.execve(sys.argv[1].encode(), argv, envp)
"""


def test_procfacts_environ_skips_entries_without_a_key_and_ends_at_an_empty_one(
    started: list[subprocess.Popen[str]],
) -> None:
    sleep = shutil.which("sleep")
    assert sleep is not None
    child = subprocess.Popen([sys.executable, "-c", ODD_ENVIRON, sleep], text=True)
    started.append(child)
    cmdline, environ = (Path(f"/proc/{child.pid}/{name}") for name in ("cmdline", "environ"))
    for _ in range(500):  # until the exec is done
        # The exe link changes before the new argv and environment are readable.
        done = procfs.exe(child.pid) == os.path.realpath(sleep)
        if done and cmdline.read_bytes() and environ.read_bytes():
            break
        time.sleep(0.01)
    assert cmdline.read_bytes() == b"sleep\x0060\x00"
    assert b"\0\0C=after" in environ.read_bytes()
    assert procfacts.environ(child.pid) == {"A": "1", "B": "x=y"}
    assert procfacts.environ(child.pid) == psutil.Process(child.pid).environ()


def test_process_info_age_is_the_time_since_its_start(
    started: list[subprocess.Popen[str]],
) -> None:
    # Bracketed by the clock read before and after: no threshold, no sleep.
    pid = _sleeper(started, [sys.executable, "-c", SLEEPER])
    began = procfacts.create_time(pid)
    before = time.time()
    info = process_info(pid)
    after = time.time()
    assert info is not None
    assert before - began <= info.age <= after - began


def test_process_info_of_a_process_not_ours_to_read_is_unknown_not_gone(
    started: list[subprocess.Popen[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # /proc mounted hidepid=1 refuses another user's files (root is never refused: simulated).
    pid = _sleeper(started, [sys.executable, "-c", SLEEPER])

    def refused(pid: int) -> procfacts.Usage:
        raise PermissionError(f"/proc/{pid}/stat")

    monkeypatch.setattr(procfacts, "usage", refused)
    assert process_info(pid) == procfacts.ProcessInfo(
        pid=pid, age=0.0, rss=None, threads=None, state="?"
    )


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
