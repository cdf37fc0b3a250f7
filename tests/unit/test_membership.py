"""The membership re-check right before a signal, on real child processes.

`signals.open_handle` opens a pidfd and only then re-checks, with
`discovery.still_member`, that the process is the one found: the same parent,
not a zombie, the same start time, still holding the group's socket (or, when
membership was proven by title, still showing the title).  Each test below
breaks exactly one of those conditions on a real process and sees the
re-check refuse it; the first one shows that a true member passes, so a
re-check that always refused would fail too.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.unit.children import SLEEPER, traced
from wsgi_drain import procfacts, procfs
from wsgi_drain.apacheconf import parse_config
from wsgi_drain.discovery import ApacheInstance, DaemonProcess, still_member
from wsgi_drain.identity import GroupSocket
from wsgi_drain.signals import open_handle


@pytest.fixture
def instance(tmp_path: Path) -> ApacheInstance:
    """This test process plays the Apache parent: the children are its daemons."""
    conf = tmp_path / "httpd.conf"
    conf.write_text("WSGIDaemonProcess myapp\n")
    return ApacheInstance(
        pid=os.getpid(),
        create_time=psutil.Process().create_time(),
        exe=sys.executable,
        config_path=conf,
        config=parse_config(conf, environ={}),
    )


@pytest.fixture
def group_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, GroupSocket]]:
    """A listening unix socket, as mod_wsgi's parent binds one per group."""
    path = tmp_path / f"wsgi.{os.getpid()}.0.1.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen()
    try:
        yield listener, GroupSocket(str(path), os.fstat(listener.fileno()).st_ino, 1, "0")
    finally:
        listener.close()


def spawn(
    started: list[subprocess.Popen[str]], pass_fds: tuple[int, ...] = ()
) -> tuple[subprocess.Popen[str], DaemonProcess]:
    child = subprocess.Popen(
        [sys.executable, "-c", SLEEPER], stdout=subprocess.PIPE, text=True, pass_fds=pass_fds
    )
    started.append(child)
    assert child.stdout is not None
    assert child.stdout.readline() == "ready\n"
    found = DaemonProcess(child.pid, psutil.Process(child.pid).create_time(), sys.executable)
    return child, found


def test_membership_recheck_passes_a_true_member(
    instance: ApacheInstance,
    group_socket: tuple[socket.socket, GroupSocket],
    started: list[subprocess.Popen[str]],
) -> None:
    listener, sock = group_socket
    _, proc = spawn(started, pass_fds=(listener.fileno(),))
    assert still_member(instance, sock, proc)
    assert still_member(instance, None, proc)  # proven by title: the title still shows
    handle = open_handle(instance, sock, proc)
    assert handle is not None and handle.pid == proc.pid
    handle.close()


def test_membership_recheck_refuses_another_parent(
    instance: ApacheInstance,
    group_socket: tuple[socket.socket, GroupSocket],
    started: list[subprocess.Popen[str]],
) -> None:
    listener, sock = group_socket
    _, proc = spawn(started, pass_fds=(listener.fileno(),))
    # The same process, but the instance found is another parent (this one's).
    other = ApacheInstance(
        os.getppid(), instance.create_time, instance.exe, instance.config_path, instance.config
    )
    assert not still_member(other, sock, proc)
    assert open_handle(other, sock, proc) is None


def test_membership_recheck_refuses_a_zombie(
    instance: ApacheInstance, started: list[subprocess.Popen[str]]
) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"], text=True)
    started.append(child)
    started_at = psutil.Process(child.pid).create_time()
    # Not reaped: it stays a zombie of this parent until wait().
    done = threading.Event()
    for _ in range(200):
        if procfs.state_of(child.pid) == "Z":
            break
        done.wait(0.05)
    assert procfs.state_of(child.pid) == "Z"
    assert procfs.parent_of(child.pid) == os.getpid()
    # A zombie holds no fds and shows no title (its cmdline reads empty), so
    # only the state check tells it apart from a member found with that title.
    zombie = DaemonProcess(child.pid, started_at, procfs.title(child.pid))
    assert zombie.title == ""
    assert not still_member(instance, None, zombie)
    assert open_handle(instance, None, zombie) is None


def test_membership_recheck_passes_a_member_a_debugger_holds_stopped(
    instance: ApacheInstance,
    group_socket: tuple[socket.socket, GroupSocket],
    started: list[subprocess.Popen[str]],
) -> None:
    # Its state "t" sorts after "Z": the zombie check refuses a zombie, no other state.
    listener, sock = group_socket
    _, proc = spawn(started, pass_fds=(listener.fileno(),))
    with traced(proc.pid):
        assert still_member(instance, sock, proc)


def test_membership_recheck_refuses_another_start_time(
    instance: ApacheInstance,
    group_socket: tuple[socket.socket, GroupSocket],
    started: list[subprocess.Popen[str]],
) -> None:
    listener, sock = group_socket
    _, proc = spawn(started, pass_fds=(listener.fileno(),))
    # What a reused pid looks like: same pid, parent and socket, later start.
    reused = DaemonProcess(proc.pid, proc.create_time - 1.0, proc.title)
    assert not still_member(instance, sock, reused)
    assert open_handle(instance, sock, reused) is None
    # Any other start time, later ones too: only the same one is the same process.
    later = DaemonProcess(proc.pid, proc.create_time + 1.0, proc.title)
    assert not still_member(instance, sock, later)


def test_membership_recheck_refuses_a_process_without_the_group_socket(
    instance: ApacheInstance,
    group_socket: tuple[socket.socket, GroupSocket],
    started: list[subprocess.Popen[str]],
) -> None:
    _, sock = group_socket
    _, proc = spawn(started)  # same parent, start time and title; no socket
    assert not still_member(instance, sock, proc)
    assert open_handle(instance, sock, proc) is None


def test_membership_recheck_refuses_another_title(
    instance: ApacheInstance, started: list[subprocess.Popen[str]]
) -> None:
    _, proc = spawn(started)
    renamed = DaemonProcess(proc.pid, proc.create_time, "(wsgi:other)")
    assert not still_member(instance, None, renamed)
    # Any other title, whichever way it sorts.
    longer = DaemonProcess(proc.pid, proc.create_time, proc.title + "x")
    assert not still_member(instance, None, longer)
    assert open_handle(instance, None, renamed) is None


def test_membership_recheck_refuses_an_exited_process(
    instance: ApacheInstance, started: list[subprocess.Popen[str]]
) -> None:
    child, proc = spawn(started)
    child.kill()
    child.wait(timeout=10)
    assert not still_member(instance, None, proc)
    assert open_handle(instance, None, proc) is None


def test_membership_recheck_refuses_a_process_that_exits_between_its_reads(
    instance: ApacheInstance,
    group_socket: tuple[socket.socket, GroupSocket],
    started: list[subprocess.Popen[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Gone after its parent was read, before its start time was: a race the
    # kernel will not stage on demand, so psutil's answer is simulated.
    listener, sock = group_socket
    _, proc = spawn(started, pass_fds=(listener.fileno(),))
    assert still_member(instance, sock, proc)

    def gone(pid: int) -> float:
        raise ProcessLookupError(f"process {pid} is gone")

    monkeypatch.setattr(procfacts, "create_time", gone)
    assert not still_member(instance, sock, proc)
