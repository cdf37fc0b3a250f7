"""procfs readers and the pidfd watch, on real child processes."""

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.children import SLEEPER, reap
from wsgi_drain import procfs
from wsgi_drain.deadline import Deadline
from wsgi_drain.discovery import DaemonProcess
from wsgi_drain.errors import Interrupted
from wsgi_drain.interrupts import Interrupts
from wsgi_drain.signals import Handle
from wsgi_drain.watch import died_within, wait_exits


@pytest.fixture
def sleepers() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    reap(started)


def spawn(
    started: list[subprocess.Popen[str]], pass_fds: tuple[int, ...] = ()
) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", SLEEPER], stdout=subprocess.PIPE, text=True, pass_fds=pass_fds
    )
    started.append(child)
    assert child.stdout is not None
    assert child.stdout.readline() == "ready\n"
    return child


def handle(child: subprocess.Popen[str]) -> Handle:
    return Handle(DaemonProcess(child.pid, 0.0, "t"), os.pidfd_open(child.pid))


def test_children_lists_direct_children_only(sleepers: list[subprocess.Popen[str]]) -> None:
    a, b = spawn(sleepers), spawn(sleepers)
    kids = procfs.children(os.getpid())
    assert a.pid in kids and b.pid in kids
    assert procfs.parent_of(a.pid) == os.getpid()
    assert procfs.state_of(a.pid) in {"S", "R"}


def test_socket_inodes_see_an_inherited_listener(
    tmp_path: Path, sleepers: list[subprocess.Popen[str]]
) -> None:
    # Like mod_wsgi: the parent binds the group's socket, the child inherits it.
    path = tmp_path / "wsgi.123.0.1.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen()
    try:
        inode = os.fstat(listener.fileno()).st_ino
        child = spawn(sleepers, pass_fds=(listener.fileno(),))
        other = spawn(sleepers)
        assert inode in procfs.socket_inodes(os.getpid())
        assert inode in procfs.socket_inodes(child.pid)
        assert inode not in procfs.socket_inodes(other.pid)
        assert procfs.unix_socket_paths()[inode] == str(path)
    finally:
        listener.close()


def test_title_reads_argv0(sleepers: list[subprocess.Popen[str]]) -> None:
    child = spawn(sleepers)
    assert procfs.title(child.pid) == sys.executable
    assert procfs.title(999_999_999) == ""


def test_wait_exits_wakes_on_each_exit(sleepers: list[subprocess.Popen[str]]) -> None:
    a, b, c = spawn(sleepers), spawn(sleepers), spawn(sleepers)
    handles = [handle(a), handle(b), handle(c)]
    exited: list[int] = []
    a.terminate()
    b.terminate()
    with Interrupts() as interrupts:
        alive = wait_exits(handles, Deadline(1.0), interrupts, lambda h, t: exited.append(h.pid))
    assert sorted(exited) == sorted([a.pid, b.pid])
    assert [h.pid for h in alive] == [c.pid]
    for h in handles:
        h.close()


def test_sigterm_to_self_interrupts_the_wait(sleepers: list[subprocess.Popen[str]]) -> None:
    a = spawn(sleepers)
    h = handle(a)
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM))
    with Interrupts() as interrupts:
        timer.start()
        deadline = Deadline(30.0)
        with pytest.raises(Interrupted, match="SIGTERM"):
            wait_exits([h], deadline, interrupts, lambda h, t: None)
        assert not deadline.expired()  # the interrupt ended the wait, not the deadline
    timer.join()
    h.close()
    # The previous handler is back.
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_started_at_is_on_the_boot_clock_to_a_clock_tick() -> None:
    """A process's start, from /proc, on the same clock as boot_clock() (no whole-second btime)."""
    tick = 1 / os.sysconf("SC_CLK_TCK")
    before = procfs.boot_clock()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        after = procfs.boot_clock()
        started = procfs.started_at(child.pid)
        assert started is not None
        assert before - tick <= started <= after + tick, (before, started, after)
    finally:
        child.kill()
        child.wait()
    assert procfs.started_at(child.pid) is None


def test_crash_settle_sees_a_replacement_that_dies_inside_the_settle_window() -> None:
    """The rolling/crash-loop rule: a process that dies 0.3 s old, with settle 0.6 s, died.

    Judged by psutil's create_time() (boot time in whole seconds) it could look up to a
    second older than it is, so the watch ended at once and the death went unseen.
    """
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3)"])
    try:
        with Interrupts() as interrupts:
            died = died_within([child.pid], 0.6, interrupts)
    finally:
        child.wait()
    assert died == {child.pid}


def test_crash_settle_lets_a_healthy_process_pass() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        with Interrupts() as interrupts:
            died = died_within([child.pid], 0.3, interrupts)
        assert died == set()
    finally:
        child.kill()
        child.wait()
