"""`identity.observe`: what /proc shows of a running instance, on real processes.

This test process plays the Apache parent: it binds group sockets named as
mod_wsgi names them (`<WSGISocketPrefix>.<parent pid>.<generation>.<id>.sock`)
and starts children that inherit them, as daemons do.  Each test changes one
fact (the socket's pid or prefix, who holds it, a TCP listener kept, another
binary) and sees what observe makes of it; the first shows a true daemon
observed field by field.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.unit.children import SLEEPER
from tests.unit.servers import bind
from wsgi_drain import procfacts, procfs
from wsgi_drain.apacheconf import ApacheConfig, parse_config
from wsgi_drain.identity import GroupSocket, observe, sockets_by_name

ME = os.getpid()


@pytest.fixture
def config(tmp_path: Path) -> ApacheConfig:
    conf = tmp_path / "httpd.conf"
    conf.write_text(f"WSGISocketPrefix {tmp_path}/run/wsgi\nWSGIDaemonProcess myapp\n")
    (tmp_path / "run").mkdir()
    return parse_config(conf, server_root=tmp_path, environ={})


def spawn(
    started: list[subprocess.Popen[str]], *fds: int, argv: list[str] | None = None
) -> subprocess.Popen[str]:
    command = argv or [sys.executable, "-c", SLEEPER]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, pass_fds=fds)
    started.append(child)
    if argv is None:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
    return child


def create_time() -> float:
    return psutil.Process().create_time()


def test_observe_a_daemon_holding_its_groups_socket_field_by_field(
    tmp_path: Path,
    config: ApacheConfig,
    listeners: list[socket.socket],
    started: list[subprocess.Popen[str]],
) -> None:
    path = tmp_path / "run" / f"wsgi.{ME}.3.1.sock"
    sock = bind(listeners, path)
    child = spawn(started, sock.fileno())
    obs = observe(config, ME, create_time())
    inode = os.fstat(sock.fileno()).st_ino
    assert obs.sockets == {1: GroupSocket(path=str(path), inode=inode, id=1, generation="3")}
    mine = [c for c in obs.children if c.pid == child.pid]
    assert len(mine) == 1
    (daemon,) = mine
    assert daemon.create_time == psutil.Process(child.pid).create_time()
    assert daemon.title == procfs.title(child.pid) and daemon.title
    assert daemon.uid == os.getuid()
    assert daemon.wsgi_ids == frozenset({1})
    assert daemon.holds_listener is False and daemon.same_exe is True
    assert obs.members(1) == (daemon,)
    assert obs.parent_pid == ME
    assert obs.title_room == procfs.argv0_length(ME) > 0
    assert obs.parent_title == procfs.title(ME)
    assert obs.as_root is (os.getuid() == 0)
    assert obs.loaded_at is not None and obs.loaded_at >= create_time() - 1


def test_observe_ignores_sockets_of_another_pid_or_outside_the_prefix(
    tmp_path: Path,
    config: ApacheConfig,
    listeners: list[socket.socket],
    started: list[subprocess.Popen[str]],
) -> None:
    other_pid = bind(listeners, tmp_path / "run" / f"wsgi.{ME + 1}.0.2.sock")
    elsewhere = bind(listeners, tmp_path / f"other.{ME}.0.3.sock")
    ours = bind(listeners, tmp_path / "run" / f"wsgi.{ME}.0.1.sock")
    child = spawn(started, other_pid.fileno(), elsewhere.fileno(), ours.fileno())
    obs = observe(config, ME, create_time())
    assert set(obs.sockets) == {1}
    (daemon,) = [c for c in obs.children if c.pid == child.pid]
    assert daemon.wsgi_ids == frozenset({1})


def test_observe_without_a_prefix_takes_any_path_named_for_the_parent(
    tmp_path: Path, listeners: list[socket.socket]
) -> None:
    conf = tmp_path / "plain.conf"
    conf.write_text("WSGIDaemonProcess myapp\n")
    plain = parse_config(conf, server_root=tmp_path, environ={})
    assert plain.socket_prefix is None
    bind(listeners, tmp_path / f"anything.{ME}.u7.4.sock")
    sockets, loaded = sockets_by_name(plain, ME, create_time())
    assert set(sockets) == {4} and sockets[4].generation == "u7"
    assert loaded is not None


def test_observe_leaves_out_a_socket_file_the_parent_no_longer_holds(
    tmp_path: Path,
    config: ApacheConfig,
    listeners: list[socket.socket],
    started: list[subprocess.Popen[str]],
) -> None:
    # An earlier generation's listener: still open (in a child), but not the parent's.
    lingering = bind(listeners, tmp_path / "run" / f"wsgi.{ME}.0.5.sock")
    child = spawn(started, lingering.fileno())
    listeners.remove(lingering)
    lingering.close()
    obs = observe(config, ME, create_time())
    assert 5 not in obs.sockets
    assert all(c.pid != child.pid for c in obs.children), "it holds no socket of the parent's"
    by_name, _ = sockets_by_name(config, ME, create_time())
    assert 5 in by_name, "by name alone it shows (an unprivileged check cannot tell)"


def test_observe_a_child_keeping_apaches_tcp_listener_is_no_daemon(
    tmp_path: Path,
    config: ApacheConfig,
    listeners: list[socket.socket],
    started: list[subprocess.Popen[str]],
) -> None:
    group = bind(listeners, tmp_path / "run" / f"wsgi.{ME}.0.1.sock")
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen()
    listeners.append(tcp)
    worker = spawn(started, group.fileno(), tcp.fileno())
    obs = observe(config, ME, create_time())
    (child,) = [c for c in obs.children if c.pid == worker.pid]
    assert child.holds_listener is True and child.wsgi_ids == frozenset({1})
    assert worker.pid not in {c.pid for c in obs.members(1)}


def test_observe_a_child_of_another_binary_is_no_daemon(
    tmp_path: Path,
    config: ApacheConfig,
    listeners: list[socket.socket],
    started: list[subprocess.Popen[str]],
) -> None:
    sleep = shutil.which("sleep")
    assert sleep is not None
    group = bind(listeners, tmp_path / "run" / f"wsgi.{ME}.0.1.sock")
    logger = spawn(started, group.fileno(), argv=[sleep, "60"])
    for _ in range(500):  # until the exec is done: then /proc shows the new binary
        # The exe link changes before the new argv is readable: wait for both.
        if procfs.exe(logger.pid) == os.path.realpath(sleep) and procfs.title(logger.pid):
            break
        time.sleep(0.01)
    obs = observe(config, ME, create_time())
    (child,) = [c for c in obs.children if c.pid == logger.pid]
    assert child.same_exe is False and child.title == sleep
    assert obs.members(1) == ()


# An "Apache parent" that binds its group socket (named for its own pid), forks a
# piped logger that execs another binary, then execs its own binary: both keep the socket.
EXEC_TREE = """\
import os, socket, sys
prefix, logger, apache = sys.argv[1:]
sock = socket.socket(socket.AF_UNIX)
sock.bind(f"{prefix}.{os.getpid()}.0.1.sock")
sock.listen()
sock.set_inheritable(True)
pid = os.fork()
if pid == 0:
    os.execv(logger, [logger, "60"])
sys.stdout.write(f"{pid}\\n")
sys.stdout.flush()
os.execv(apache, [apache, "60"])
"""


def test_observe_another_binary_is_no_daemon_even_when_its_path_sorts_first(
    tmp_path: Path, config: ApacheConfig, started: list[subprocess.Popen[str]]
) -> None:
    # The exe links are compared for equality: /usr/bin/rotatelogs sorts before
    # /usr/sbin/apache2, and is no daemon for that.  Both binaries are copies of
    # sleep here, named so that the logger's path sorts before the parent's.
    sleep = shutil.which("sleep")
    assert sleep is not None
    logger, apache = tmp_path / "a-logger", tmp_path / "z-apache"
    for copy in (logger, apache):
        shutil.copy(sleep, copy)
    prefix = str(config.socket_prefix)
    parent = subprocess.Popen(
        [sys.executable, "-c", EXEC_TREE, prefix, str(logger), str(apache)],
        stdout=subprocess.PIPE,
        text=True,
    )
    started.append(parent)
    assert parent.stdout is not None
    piped = int(parent.stdout.readline())
    try:
        for _ in range(500):  # until both execs are done
            if (procfs.exe(parent.pid), procfs.exe(piped)) == (str(apache), str(logger)):
                break
            time.sleep(0.01)
        assert procfs.exe(piped) == str(logger) < str(apache) == procfs.exe(parent.pid)
        obs = observe(config, parent.pid, psutil.Process(parent.pid).create_time())
        assert set(obs.sockets) == {1}
        (child,) = obs.children
        assert child.pid == piped and child.same_exe is False
        assert obs.members(1) == ()
    finally:
        # The parent's child, not this test's: init reaps it once the parent is ended.
        os.kill(piped, 9)


def test_observe_a_child_with_no_group_socket_is_not_listed(
    config: ApacheConfig, started: list[subprocess.Popen[str]]
) -> None:
    child = spawn(started)
    assert all(c.pid != child.pid for c in observe(config, ME, create_time()).children)


# -- the edges the mutation run left --------------------------------------------------------


def test_observe_goes_on_past_a_child_that_holds_no_group_socket(
    tmp_path: Path,
    config: ApacheConfig,
    listeners: list[socket.socket],
    started: list[subprocess.Popen[str]],
) -> None:
    sock = bind(listeners, tmp_path / "run" / f"wsgi.{ME}.0.1.sock")
    others = [spawn(started) for _ in range(2)]  # forked first: listed before the daemon
    daemon = spawn(started, sock.fileno())
    pids = {c.pid for c in observe(config, ME, create_time()).children}
    assert daemon.pid in pids and not pids & {c.pid for c in others}


def test_observe_goes_on_past_a_child_that_has_exited(
    tmp_path: Path,
    config: ApacheConfig,
    listeners: list[socket.socket],
    started: list[subprocess.Popen[str]],
) -> None:
    sock = bind(listeners, tmp_path / "run" / f"wsgi.{ME}.0.1.sock")
    dead = subprocess.Popen([sys.executable, "-c", "pass"], pass_fds=(sock.fileno(),), text=True)
    started.append(dead)  # type: ignore[arg-type]
    for _ in range(500):  # a zombie until reaped: gone for observe
        if procfs.gone(dead.pid):
            break
        time.sleep(0.01)
    assert procfs.gone(dead.pid)
    daemon = spawn(started, sock.fileno())
    pids = {c.pid for c in observe(config, ME, create_time()).children}
    assert daemon.pid in pids and dead.pid not in pids


def test_observe_goes_on_past_a_child_gone_before_its_start_time_was_read(
    tmp_path: Path,
    config: ApacheConfig,
    listeners: list[socket.socket],
    started: list[subprocess.Popen[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Holding the socket when its fds were read, gone by its start time: a race
    # the kernel will not stage on demand, so that one read is simulated.
    sock = bind(listeners, tmp_path / "run" / f"wsgi.{ME}.0.1.sock")
    vanishing = spawn(started, sock.fileno())  # forked first: listed before the daemon
    daemon = spawn(started, sock.fileno())
    real = procfacts.create_time

    def gone_first(pid: int) -> float:
        if pid == vanishing.pid:
            raise ProcessLookupError(f"process {pid} is gone")
        return real(pid)

    monkeypatch.setattr(procfacts, "create_time", gone_first)
    pids = [c.pid for c in observe(config, ME, create_time()).children]
    assert procfs.children(ME).index(vanishing.pid) < procfs.children(ME).index(daemon.pid)
    assert daemon.pid in pids and vanishing.pid not in pids


def test_observe_ignores_a_socket_named_for_a_lower_pid_as_for_a_higher_one(
    tmp_path: Path,
    config: ApacheConfig,
    listeners: list[socket.socket],
    started: list[subprocess.Popen[str]],
) -> None:
    lower = bind(listeners, tmp_path / "run" / f"wsgi.{ME - 1}.0.2.sock")
    ours = bind(listeners, tmp_path / "run" / f"wsgi.{ME}.0.1.sock")
    spawn(started, lower.fileno(), ours.fileno())
    assert set(observe(config, ME, create_time()).sockets) == {1}
    assert set(sockets_by_name(config, ME, create_time())[0]) == {1}


@pytest.mark.parametrize("closed", ["daemon", "parent"])
def test_observe_an_exe_link_that_cannot_be_read_is_unknown_not_another_binary(
    tmp_path: Path,
    config: ApacheConfig,
    listeners: list[socket.socket],
    started: list[subprocess.Popen[str]],
    monkeypatch: pytest.MonkeyPatch,
    closed: str,
) -> None:
    # /proc/PID/exe refused (root is never refused: simulated), the other one read.
    sock = bind(listeners, tmp_path / "run" / f"wsgi.{ME}.0.1.sock")
    daemon = spawn(started, sock.fileno())
    refused = daemon.pid if closed == "daemon" else ME
    exe = procfs.exe
    monkeypatch.setattr(procfs, "exe", lambda pid: None if pid == refused else exe(pid))
    obs = observe(config, ME, create_time())
    (child,) = [c for c in obs.children if c.pid == daemon.pid]
    assert child.same_exe is None and obs.members(1) == (child,)


def test_observe_goes_on_past_a_socket_named_for_the_parent_outside_the_prefix(
    tmp_path: Path,
    config: ApacheConfig,
    listeners: list[socket.socket],
    started: list[subprocess.Popen[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # /proc/net/unix lists sockets in the kernel's hash order, which a test cannot
    # choose: the real listing is put in the order that stages the case.
    elsewhere = tmp_path / f"other.{ME}.0.3.sock"
    outside = bind(listeners, elsewhere)
    ours = bind(listeners, tmp_path / "run" / f"wsgi.{ME}.0.1.sock")
    spawn(started, outside.fileno(), ours.fileno())
    real = procfs.unix_socket_paths

    def outside_first(*, listening_only: bool = False) -> dict[int, str]:
        found = real(listening_only=listening_only)
        return dict(sorted(found.items(), key=lambda item: item[1] != str(elsewhere)))

    monkeypatch.setattr(procfs, "unix_socket_paths", outside_first)
    assert next(iter(outside_first(listening_only=True).values())) == str(elsewhere)
    assert set(observe(config, ME, create_time()).sockets) == {1}
    assert set(sockets_by_name(config, ME, create_time())[0]) == {1}


def test_observe_a_parent_gone_meanwhile_holds_no_socket_and_is_not_root(
    config: ApacheConfig,
) -> None:
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    exited.wait()
    obs = observe(config, exited.pid, 0.0)
    assert obs.sockets == {} and obs.children == () and obs.as_root is False


def test_sockets_by_name_gives_the_listener_not_a_connection_showing_its_path(
    tmp_path: Path,
    config: ApacheConfig,
    listeners: list[socket.socket],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The server side of an accepted connection shows the listener's path in
    # /proc/net/unix too; the real listing is put with the connections last.
    path = tmp_path / "run" / f"wsgi.{ME}.0.1.sock"
    listener = bind(listeners, path)
    client = socket.socket(socket.AF_UNIX)
    listeners.append(client)
    client.connect(str(path))
    accepted, _ = listener.accept()
    listeners.append(accepted)
    inode = os.fstat(listener.fileno()).st_ino
    real = procfs.unix_socket_paths

    def listener_first(*, listening_only: bool = False) -> dict[int, str]:
        found = real(listening_only=listening_only)
        return dict(sorted(found.items(), key=lambda item: item[0] != inode))

    monkeypatch.setattr(procfs, "unix_socket_paths", listener_first)
    assert os.fstat(accepted.fileno()).st_ino in listener_first(listening_only=False)
    sockets, _ = sockets_by_name(config, ME, create_time())
    assert sockets[1].inode == inode


def test_config_changes_skips_an_unreadable_path_and_reads_the_rest(tmp_path: Path) -> None:
    from wsgi_drain.identity import config_changes

    loop = tmp_path / "loop"
    loop.symlink_to(loop)  # ELOOP: not "gone", not readable
    edited = tmp_path / "edited.conf"
    edited.write_text("x")
    missing = tmp_path / "missing.conf"
    found = config_changes([loop, missing, edited], since=0.0)
    assert [(c.path, c.when is None) for c in found] == [(missing, True), (edited, False)]


def test_expected_title_needs_room_and_is_cut_to_it(tmp_path: Path) -> None:
    from wsgi_drain.identity import expected_title

    conf = tmp_path / "t.conf"
    conf.write_text("WSGIDaemonProcess myapp display-name=%{GROUP}\n")
    group = parse_config(conf, server_root=tmp_path, environ={}).group("myapp")
    assert expected_title(group, 0) is None
    assert expected_title(group, 1) == "("
    assert expected_title(group, 100) == "(wsgi:myapp)"


@pytest.mark.parametrize(
    ("count", "more"), [(1, ""), (3, ""), (4, " and 1 more"), (7, " and 4 more")]
)
def test_config_age_refusal_lists_three_and_counts_exactly_the_rest(
    tmp_path: Path, count: int, more: str
) -> None:
    from tests.unit.test_identity import PLAIN, UNTITLED, observation
    from tests.unit.test_identity import config as config_of
    from wsgi_drain.errors import IdentityError
    from wsgi_drain.identity import Change, prove

    cfg = config_of(tmp_path, UNTITLED)
    path = tmp_path / "httpd.conf"
    changes = [Change(path, time.time() + i) for i in range(count)]
    with pytest.raises(IdentityError) as err:
        prove(cfg, cfg.group("myapp"), observation(PLAIN), changes)
    text = str(err.value)
    assert text.count("httpd.conf (changed") == min(count, 3)
    if more:
        assert more in text
    else:
        assert " more" not in text


def test_stamp_shows_the_millisecond_exactly() -> None:
    from wsgi_drain.identity import _stamp

    assert _stamp(1.25).endswith(".250")
    assert _stamp(None) == "an unknown time"


def test_observe_an_earlier_generations_socket_still_open_does_not_hide_the_parents(
    tmp_path: Path,
    config: ApacheConfig,
    listeners: list[socket.socket],
    started: list[subprocess.Popen[str]],
) -> None:
    # After a graceful restart the old daemons still hold generation 0's
    # listeners (same group id) while the parent holds generation 3's.
    # /proc/net/unix lists them in no set order: several old ones make it
    # near certain that one is listed after the parent's.
    old = [bind(listeners, tmp_path / "run" / f"wsgi.{ME}.{gen}.1.sock") for gen in range(3)]
    draining = spawn(started, *(s.fileno() for s in old))
    for sock in old:
        listeners.remove(sock)
        sock.close()
    current = bind(listeners, tmp_path / "run" / f"wsgi.{ME}.3.1.sock")
    daemon = spawn(started, current.fileno())
    obs = observe(config, ME, create_time())
    assert obs.sockets[1].inode == os.fstat(current.fileno()).st_ino
    assert obs.sockets[1].generation == "3"
    assert [c.pid for c in obs.members(1)] == [daemon.pid]
    assert draining.pid not in {c.pid for c in obs.children}


def test_observe_finds_the_parents_socket_among_many_named_for_other_pids(
    tmp_path: Path,
    config: ApacheConfig,
    listeners: list[socket.socket],
    started: list[subprocess.Popen[str]],
) -> None:
    # /proc/net/unix lists sockets in no set order: with several of other
    # parents' (another Apache's, a pid reused), one is near certain to come first.
    for other in range(1, 6):
        bind(listeners, tmp_path / "run" / f"wsgi.{ME + other}.0.{other}.sock")
    ours = bind(listeners, tmp_path / "run" / f"wsgi.{ME}.0.1.sock")
    daemon = spawn(started, ours.fileno())
    obs = observe(config, ME, create_time())
    assert set(obs.sockets) == {1}
    assert [c.pid for c in obs.members(1)] == [daemon.pid]


def test_observe_an_apache_parent_not_running_as_root(
    tmp_path: Path, config: ApacheConfig, started: list[subprocess.Popen[str]]
) -> None:
    # Its daemons then run as its user: no uid to compare them with.
    if os.getuid() == 0:
        sleep = shutil.which("sleep")
        assert sleep is not None
        # Popen returns once the exec is done, so after the switch to nobody.
        parent = subprocess.Popen([sleep, "60"], user=65534, text=True)
        started.append(parent)  # type: ignore[arg-type]
        pid = parent.pid
    else:
        pid = ME
    assert procfs.real_uid(pid) != 0
    assert observe(config, pid, create_time()).as_root is False
    assert observe(config, ME, create_time()).as_root is (os.getuid() == 0)
