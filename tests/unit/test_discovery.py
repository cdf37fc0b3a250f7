"""`discovery`: finding the Apache parent and its group's processes, on real processes.

An "Apache parent" here is a real child process named `apache2` (a link of
that name to this Python, running a small script), so /proc shows what it
shows of a packaged Apache: the name, argv with -d/-f/-D/-C/-c, the
environment, the start time.  For the group's processes this test process
plays the parent, as tests/unit/test_membership.py does: it binds the group's
socket and starts children that inherit it (or that show a title).
"""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.unit.children import SLEEPER, traced
from tests.unit.servers import bind
from wsgi_drain import discovery, procfacts, procfs
from wsgi_drain.apacheconf import parse_config
from wsgi_drain.discovery import (
    ApacheInstance,
    DaemonProcess,
    GroupProcesses,
    find_apache,
    group_processes,
    instance_by_pid,
    reread,
    running_parents,
)
from wsgi_drain.errors import GroupNotRunningError, IdentityError, NotFoundError
from wsgi_drain.httpd import HttpdBinary

ME = os.getpid()

# The "Apache" script: says it is up, then sleeps; with `fork`, first forks a
# child of the same name (an MPM worker: an apache2 whose parent is apache2).
APACHE = """\
import os, sys, time
if "fork" in sys.argv:
    pid = os.fork()
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    sys.stdout.write(f"{pid}\\n")
    sys.stdout.flush()
    os.waitpid(pid, 0)
elif "exit" in sys.argv:
    sys.exit(0)
sys.stdout.write("ready\\n")
sys.stdout.flush()
time.sleep(60)
"""


@pytest.fixture
def apache2(tmp_path: Path) -> list[str]:
    """argv to start a process that /proc names `apache2`; append httpd's options."""
    bin_dir = tmp_path / "sbin"
    bin_dir.mkdir()
    link = bin_dir / "apache2"
    link.symlink_to(sys.executable)
    script = tmp_path / "apache.py"
    script.write_text(APACHE)
    return [str(link), str(script)]


def start(
    started: list[subprocess.Popen[str]],
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    ready: bool = True,
) -> subprocess.Popen[str]:
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)
    started.append(child)
    if ready:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
    return child


def wait_for(condition: object, what: str) -> None:
    for _ in range(1000):
        if callable(condition) and condition():
            return
        time.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


# -- httpd's argv -----------------------------------------------------------------------------


def test_argv_gives_server_root_config_defines_and_directives_attached_or_apart() -> None:
    argv = [
        "/usr/sbin/apache2", "-k", "start", "-d", "/srv/root", "-fconf/site.conf",
        "-D", "ONE", "-DTWO", "-C", "Define BEFORE 1", "-cLogLevel info", "-X",
    ]  # fmt: skip
    assert discovery._parse_argv(argv) == (
        Path("/srv/root"),
        Path("conf/site.conf"),
        ("ONE", "TWO"),
        ("Define BEFORE 1",),
        ("LogLevel info",),
    )
    assert discovery._parse_argv(["/usr/sbin/apache2", "-dattached"])[0] == Path("attached")


def test_argv_zero_is_the_program_never_an_option() -> None:
    # A login-style argv[0] ("-apache2") is the name it was started by, not -a...
    assert discovery._parse_argv(["-Dprogram", "-f", "x.conf"]) == (
        None,
        Path("x.conf"),
        (),
        (),
        (),
    )


def test_argv_an_option_missing_its_value_at_the_end_takes_an_empty_one() -> None:
    assert discovery._parse_argv(["/usr/sbin/apache2", "-D"])[2] == ("",)


# -- the pid file -----------------------------------------------------------------------------


def test_pid_file_is_read_stripped(tmp_path: Path) -> None:
    pidfile = tmp_path / "apache2.pid"
    pidfile.write_text(" 4242\n")
    assert discovery._read_pidfile(pidfile) == 4242


def test_pid_file_missing_says_so(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=r"pid file .*missing\.pid does not exist"):
        discovery._read_pidfile(tmp_path / "missing.pid")


def test_pid_file_unreadable_says_why(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=r"cannot read Apache pid file .*: Is a directory"):
        discovery._read_pidfile(tmp_path)


def test_pid_file_without_a_pid_is_refused_without_echoing_its_content(tmp_path: Path) -> None:
    pidfile = tmp_path / "shadow"
    pidfile.write_text("root:secret-hash:19000\n")
    with pytest.raises(NotFoundError) as raised:
        discovery._read_pidfile(pidfile)
    assert "does not hold a pid" in str(raised.value)
    assert "secret" not in str(raised.value)


# -- the running parent -----------------------------------------------------------------------


def site(root: Path, text: str = "WSGIDaemonProcess ${APP}\n") -> Path:
    root.mkdir(exist_ok=True)
    conf = root / "httpd.conf"
    conf.write_text(text)
    return conf


def test_instance_by_pid_reads_a_running_apache_its_argv_and_environment(
    tmp_path: Path, apache2: list[str], started: list[subprocess.Popen[str]]
) -> None:
    root = tmp_path / "root"
    site(
        root, "WSGIDaemonProcess ${APP}\n<IfDefine FLAG>\nWSGIDaemonProcess flagged\n</IfDefine>\n"
    )
    argv = [*apache2, "-d", str(root), "-f", "httpd.conf", "-D", "FLAG"]
    argv += ["-C", "WSGIDaemonProcess first", "-c", "WSGIDaemonProcess last"]
    child = start(started, argv, env={"APP": "fromenv"})
    instance = instance_by_pid(child.pid, None, source="test")
    assert instance.pid == child.pid
    assert instance.create_time == psutil.Process(child.pid).create_time()
    assert instance.exe == os.path.realpath(sys.executable)
    assert instance.config_path == root / "httpd.conf"  # -f relative to -d
    assert [g.name for g in instance.config.groups] == ["first", "fromenv", "flagged", "last"]
    assert instance.express is None
    assert instance.describe() == f"Apache pid {child.pid} ({root / 'httpd.conf'})"


def test_instance_by_pid_takes_the_given_configuration_over_argv(
    tmp_path: Path, apache2: list[str], started: list[subprocess.Popen[str]]
) -> None:
    other = site(tmp_path / "other", "WSGIDaemonProcess given\n")
    child = start(started, [*apache2, "-f", str(site(tmp_path / "root"))], env={"APP": "argv"})
    instance = instance_by_pid(child.pid, other, source="test")
    assert instance.config_path == other
    assert [g.name for g in instance.config.groups] == ["given"]


def test_instance_by_pid_absolute_config_is_not_put_under_the_server_root(
    tmp_path: Path, apache2: list[str], started: list[subprocess.Popen[str]]
) -> None:
    conf = site(tmp_path / "conf")
    child = start(
        started, [*apache2, "-d", str(tmp_path / "elsewhere"), "-f", str(conf)], env={"APP": "a"}
    )
    assert instance_by_pid(child.pid, None, source="test").config_path == conf


def test_instance_by_pid_without_f_uses_the_packaged_file_under_d(
    tmp_path: Path, apache2: list[str], started: list[subprocess.Popen[str]]
) -> None:
    # Debian's apache2ctl starts a second instance with -d alone: apache2.conf under it.
    root = tmp_path / "root"
    root.mkdir()
    (root / "apache2.conf").write_text("WSGIDaemonProcess debian\n")
    child = start(started, [*apache2, "-d", str(root)])
    instance = instance_by_pid(child.pid, None, source="test")
    assert instance.config_path == root / "apache2.conf"
    assert [g.name for g in instance.config.groups] == ["debian"]


def test_instance_by_pid_reads_envvars_when_apaches_environment_is_closed(
    tmp_path: Path,
    apache2: list[str],
    started: list[subprocess.Popen[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Not allowed to read Apache's environment (an unprivileged check; as root
    # the kernel always allows it, so the refusal is simulated).
    conf = site(tmp_path / "root")
    (conf.parent / "envvars").write_text("export APP=fromenvvars\n")
    child = start(started, [*apache2, "-f", str(conf)], env={"APP": "fromenv"})

    def closed(pid: int) -> dict[str, str]:
        raise PermissionError(f"/proc/{pid}/environ")

    monkeypatch.setattr(procfacts, "environ", closed)
    instance = instance_by_pid(child.pid, None, source="test")
    assert [g.name for g in instance.config.groups] == ["fromenvvars"]


def test_instance_by_pid_ignores_envvars_when_apaches_environment_is_read(
    tmp_path: Path, apache2: list[str], started: list[subprocess.Popen[str]]
) -> None:
    conf = site(tmp_path / "root")
    (conf.parent / "envvars").write_text("export APP=fromenvvars\n")
    child = start(started, [*apache2, "-f", str(conf)], env={"APP": "fromenv"})
    instance = instance_by_pid(child.pid, None, source="test")
    assert [g.name for g in instance.config.groups] == ["fromenv"]


def test_instance_by_pid_refuses_a_missing_configuration(
    tmp_path: Path, apache2: list[str], started: list[subprocess.Popen[str]]
) -> None:
    child = start(started, [*apache2, "-f", str(tmp_path / "missing.conf")])
    with pytest.raises(
        NotFoundError, match="missing.conf, which cannot be read; pass --apache-config"
    ):
        instance_by_pid(child.pid, None, source="test")


def test_instance_by_pid_refuses_a_process_that_is_not_apache(
    started: list[subprocess.Popen[str]],
) -> None:
    child = start(started, [sys.executable, "-c", SLEEPER])
    name = psutil.Process(child.pid).name()
    with pytest.raises(NotFoundError) as raised:
        instance_by_pid(child.pid, None, source="pid file /run/x.pid")
    assert str(raised.value) == (
        f"pid file /run/x.pid names pid {child.pid}, which is {name!r}, not Apache"
    )


def test_instance_by_pid_one_that_is_not_apache_hints_at_a_container() -> None:
    if psutil.Process(1).name() in discovery.APACHE_NAMES:
        pytest.fail("pid 1 of this machine is Apache: the test needs another pid 1")
    with pytest.raises(NotFoundError, match="names pid 1, which is .*, not Apache: a pid file "
                       "written inside a container"):  # fmt: skip
        instance_by_pid(1, None, source="test")


def test_instance_by_pid_a_pid_that_has_exited_is_a_stale_pid_file(
    started: list[subprocess.Popen[str]],
) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    with pytest.raises(
        NotFoundError, match=f"names pid {child.pid}, which is not running: the pid file is stale"
    ):
        instance_by_pid(child.pid, None, source="test")


def test_find_apache_by_pid_file(
    tmp_path: Path, apache2: list[str], started: list[subprocess.Popen[str]]
) -> None:
    child = start(started, [*apache2, "-f", str(site(tmp_path / "root"))], env={"APP": "app"})
    pidfile = tmp_path / "apache2.pid"
    pidfile.write_text(f"{child.pid}\n")
    assert find_apache(pidfile=pidfile).pid == child.pid
    child.kill()
    child.wait()
    with pytest.raises(
        NotFoundError, match=f"pid file {pidfile} names pid {child.pid}, which is not"
    ):
        find_apache(pidfile=pidfile)


def test_find_apache_by_configuration_reads_its_pid_file_through_envvars(
    tmp_path: Path, apache2: list[str], started: list[subprocess.Popen[str]]
) -> None:
    conf = site(tmp_path / "root", "PidFile ${RUN_DIR}/apache2.pid\nWSGIDaemonProcess app\n")
    run = tmp_path / "run"
    run.mkdir()
    (conf.parent / "envvars").write_text(f"export RUN_DIR={run}\n")
    child = start(started, [*apache2, "-f", str(conf)])
    (run / "apache2.pid").write_text(f"{child.pid}\n")
    found = find_apache(config_path=conf)
    assert found.pid == child.pid and found.config_path == conf
    (run / "apache2.pid").write_text("99999999\n")
    with pytest.raises(NotFoundError, match=f"PidFile {run}/apache2.pid of {conf} names pid"):
        find_apache(config_path=conf)


def test_find_apache_by_configuration_without_pid_file_or_file_refuses(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="missing.conf does not exist"):
        find_apache(config_path=tmp_path / "missing.conf")
    conf = site(tmp_path / "root", "WSGIDaemonProcess app\n")
    with pytest.raises(NotFoundError, match="sets no PidFile; pass --apache-pidfile"):
        find_apache(config_path=conf)


def test_find_apache_one_running_parent_is_used(
    tmp_path: Path,
    apache2: list[str],
    started: list[subprocess.Popen[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    child = start(started, [*apache2, "-f", str(site(tmp_path / "root"))], env={"APP": "app"})
    # Other Apaches may run on this host (the integration suite's): only ours counts.
    monkeypatch.setattr(
        discovery, "running_parents", lambda: [p for p in running_parents() if p.pid == child.pid]
    )
    assert find_apache().pid == child.pid
    monkeypatch.setattr(discovery, "running_parents", lambda: [])
    with pytest.raises(NotFoundError, match="no running Apache found"):
        find_apache()


def test_running_parents_lists_apache_parents_not_their_workers_nor_zombies(
    apache2: list[str], started: list[subprocess.Popen[str]]
) -> None:
    parent = start(started, [*apache2, "fork"], ready=False)
    assert parent.stdout is not None
    worker = int(parent.stdout.readline())
    wait_for(lambda: procfs.parent_of(worker) == parent.pid, "the worker forked")
    exited = start(started, [*apache2, "exit"], ready=False)
    wait_for(lambda: procfs.state_of(exited.pid) == "Z", "the exited one is a zombie")
    pids = {p.pid for p in running_parents()}
    try:
        assert parent.pid in pids
        assert worker not in pids, "an apache2 whose parent is apache2 is a worker"
        assert exited.pid not in pids, "a zombie serves nothing"
    finally:
        os.kill(worker, 9)


def test_running_parents_skips_a_process_gone_before_it_was_read(
    apache2: list[str], started: list[subprocess.Popen[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Listed, then gone before its name was read: a race the kernel will not
    # stage on demand, so the listing is given; the pid itself has really exited.
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    exited.wait()
    parent = start(started, apache2)
    monkeypatch.setattr(procfacts, "pids", lambda: [exited.pid, parent.pid])
    assert [p.pid for p in running_parents()] == [parent.pid]


def test_running_parents_lists_apache_as_pid_1_of_a_container_whose_parent_is_no_process(
    apache2: list[str], started: list[subprocess.Popen[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Inside a container Apache as PID 1 has parent pid 0, which /proc does not
    # have: its name cannot be read (for real here), so it is no Apache's worker.
    parent = start(started, apache2)
    ppid = procfacts.ppid
    monkeypatch.setattr(procfacts, "pids", lambda: [parent.pid])
    monkeypatch.setattr(procfacts, "ppid", lambda pid: 0 if pid == parent.pid else ppid(pid))
    with pytest.raises(ProcessLookupError):
        procfacts.name(0)
    assert [p.pid for p in running_parents()] == [parent.pid]


def test_running_parents_lists_an_apache_parent_a_debugger_holds_stopped(
    apache2: list[str], started: list[subprocess.Popen[str]]
) -> None:
    # "t" sorts after "Z": only a zombie is left out, not every state past it.
    parent = start(started, apache2)
    with traced(parent.pid):
        assert parent.pid in {p.pid for p in running_parents()}


def test_instance_by_pid_reads_an_apache_a_debugger_holds_stopped_not_a_zombie(
    tmp_path: Path, apache2: list[str], started: list[subprocess.Popen[str]]
) -> None:
    child = start(started, [*apache2, "-f", str(site(tmp_path / "root"))], env={"APP": "app"})
    with traced(child.pid):
        instance = instance_by_pid(child.pid, None, source="test")
    assert instance.pid == child.pid and [g.name for g in instance.config.groups] == ["app"]


# -- the group's processes, this test process as the parent ------------------------------------


def this_process_as_apache(tmp_path: Path, text: str) -> ApacheInstance:
    conf = tmp_path / "httpd.conf"
    conf.write_text(f"WSGISocketPrefix {tmp_path}/run/wsgi\n{text}")
    (tmp_path / "run").mkdir()
    # The sockets are made after the configuration was read, a clock tick later at least.
    probe = tmp_path / "probe"
    probe.write_text("")
    while os.stat(probe).st_ctime <= os.stat(conf).st_ctime:
        probe.write_text("")
    return ApacheInstance(
        pid=ME,
        create_time=psutil.Process().create_time(),
        exe=sys.executable,
        config_path=conf,
        config=parse_config(conf, server_root=tmp_path, environ={}),
    )


def daemon(
    started: list[subprocess.Popen[str]], *fds: int, title: str | None = None
) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [title or sys.executable, "-c", SLEEPER],
        executable=sys.executable,
        stdout=subprocess.PIPE,
        text=True,
        pass_fds=fds,
    )
    started.append(child)
    assert child.stdout is not None and child.stdout.readline() == "ready\n"
    return child


def test_group_processes_are_the_holders_of_the_proven_socket(
    tmp_path: Path, listeners: list[socket.socket], started: list[subprocess.Popen[str]]
) -> None:
    instance = this_process_as_apache(tmp_path, "WSGIDaemonProcess myapp processes=2\n")
    sock = bind(listeners, tmp_path / "run" / f"wsgi.{ME}.0.1.sock")
    members = [daemon(started, sock.fileno()) for _ in range(2)]
    daemon(started)  # a worker: holds no group socket
    found = group_processes(instance, instance.group("myapp"))
    assert found.method == "socket" and found.identity is not None
    assert found.socket is not None and found.socket.inode == os.fstat(sock.fileno()).st_ino
    assert sorted(found.pids) == sorted(c.pid for c in members)
    for proc in found.processes:
        assert proc.create_time == psutil.Process(proc.pid).create_time()
        assert proc.title == procfs.title(proc.pid)
    assert found.identity.socket == found.socket


def test_group_processes_of_a_group_without_its_socket_is_not_running(
    tmp_path: Path, listeners: list[socket.socket]
) -> None:
    instance = this_process_as_apache(tmp_path, "WSGIDaemonProcess myapp\n")
    with pytest.raises(GroupNotRunningError):
        group_processes(instance, instance.group("myapp"))


def test_reread_follows_the_proven_socket_and_proves_afresh_when_it_is_replaced(
    tmp_path: Path, listeners: list[socket.socket], started: list[subprocess.Popen[str]]
) -> None:
    instance = this_process_as_apache(tmp_path, "WSGIDaemonProcess myapp processes=3\n")
    path = tmp_path / "run" / f"wsgi.{ME}.0.1.sock"
    sock = bind(listeners, path)
    first = daemon(started, sock.fileno())
    before = group_processes(instance, instance.group("myapp"))
    second = daemon(started, sock.fileno())
    now = reread(instance, before)
    assert sorted(now.pids) == sorted([first.pid, second.pid])
    assert now.identity is before.identity and now.socket == before.socket
    assert now.group is before.group and now.method == "socket"

    # Apache restarted: a new generation's socket; the old one lingers in the draining daemons.
    listeners.remove(sock)
    sock.close()
    fresh = bind(listeners, tmp_path / "run" / f"wsgi.{ME}.1.1.sock")
    third = daemon(started, fresh.fileno())
    again = reread(instance, before)
    assert again.pids == (third.pid,)
    assert again.socket is not None and again.socket.inode == os.fstat(fresh.fileno()).st_ino
    assert again.identity is not before.identity, "proven afresh"


def test_reread_without_a_proven_socket_proves_the_group(
    tmp_path: Path, listeners: list[socket.socket], started: list[subprocess.Popen[str]]
) -> None:
    instance = this_process_as_apache(tmp_path, "WSGIDaemonProcess myapp\n")
    sock = bind(listeners, tmp_path / "run" / f"wsgi.{ME}.0.1.sock")
    child = daemon(started, sock.fileno())
    group = instance.group("myapp")
    by_title = GroupProcesses(group, None, (), "title")
    assert reread(instance, by_title).pids == (child.pid,)
    assert reread(instance, by_title).method == "socket"


def test_group_processes_by_title_when_the_daemons_fds_cannot_be_read(
    tmp_path: Path, started: list[subprocess.Popen[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # An unprivileged check (root never is refused by the kernel: simulated).
    instance = this_process_as_apache(
        tmp_path, "WSGIDaemonProcess myapp display-name=%{GROUP}\nWSGIDaemonProcess other\n"
    )
    monkeypatch.setattr(discovery.procfs, "children_fds_readable", lambda pid: False)
    ours = [daemon(started, title="(wsgi:myapp)") for _ in range(2)]
    daemon(started, title="(wsgi:other)")
    daemon(started, title="(wsgi:alpha)")  # sorts before ours: another group all the same
    exited = subprocess.Popen(["(wsgi:myapp)", "-c", "pass"], executable=sys.executable)
    started.append(exited)  # type: ignore[arg-type]
    wait_for(lambda: procfs.gone(exited.pid), "the exited one is gone")
    found = group_processes(instance, instance.group("myapp"))
    assert found.method == "title" and found.socket is None and found.identity is None
    assert sorted(found.pids) == sorted(c.pid for c in ours)
    assert all(p.title == "(wsgi:myapp)" for p in found.processes)
    assert [p.create_time for p in found.processes] == [
        psutil.Process(p.pid).create_time() for p in found.processes
    ]


def test_title_path_goes_on_past_an_exited_child_listed_before_the_daemons(
    tmp_path: Path, started: list[subprocess.Popen[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    instance = this_process_as_apache(tmp_path, "WSGIDaemonProcess myapp display-name=%{GROUP}\n")
    monkeypatch.setattr(discovery.procfs, "children_fds_readable", lambda pid: False)
    exited = subprocess.Popen(["(wsgi:myapp)", "-c", "pass"], executable=sys.executable)
    started.append(exited)  # type: ignore[arg-type]
    wait_for(lambda: procfs.gone(exited.pid), "the exited one is gone")  # a zombie, not reaped
    ours = daemon(started, title="(wsgi:myapp)")  # forked after: listed after it
    assert procfs.children(ME).index(exited.pid) < procfs.children(ME).index(ours.pid)
    assert group_processes(instance, instance.group("myapp")).pids == (ours.pid,)


def test_title_path_fds_of_the_parent_unreadable_is_the_title_path_too(
    tmp_path: Path, started: list[subprocess.Popen[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    instance = this_process_as_apache(tmp_path, "WSGIDaemonProcess myapp display-name=%{GROUP}\n")
    monkeypatch.setattr(discovery.procfs, "fds_readable", lambda pid: False)
    child = daemon(started, title="(wsgi:myapp)")
    assert group_processes(instance, instance.group("myapp")).pids == (child.pid,)


def test_title_path_without_display_name_cannot_tell_daemons_from_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    instance = this_process_as_apache(tmp_path, "WSGIDaemonProcess myapp\n")
    monkeypatch.setattr(discovery.procfs, "fds_readable", lambda pid: False)
    with pytest.raises(NotFoundError, match="sets no display-name"):
        group_processes(instance, instance.group("myapp"))


def long_name(letter: str) -> str:
    """A group name too long for argv[0] of this process: its title is cut."""
    return "shared" + letter * (procfs.argv0_length(ME) + 4)


def test_title_path_a_cut_title_another_group_shares_is_refused_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ours, theirs = long_name("a"), long_name("a") + "b"
    instance = this_process_as_apache(
        tmp_path,
        "WSGIDaemonProcess alpha display-name=%{GROUP}\n"  # sorts before: shares nothing
        f"WSGIDaemonProcess {ours} display-name=%{{GROUP}}\n"
        f"WSGIDaemonProcess {theirs} display-name=%{{GROUP}}\n"
        "WSGIDaemonProcess third display-name=%{GROUP}\n",
    )
    monkeypatch.setattr(discovery.procfs, "fds_readable", lambda pid: False)
    with pytest.raises(IdentityError) as raised:
        group_processes(instance, instance.group(ours))
    message = str(raised.value)
    assert f"does not tell them from {theirs}'s; run as root" in message
    assert "start Apache by its full path" in message


def test_title_path_a_cut_title_of_one_group_is_refused_when_the_files_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No socket files: Apache's start time is the load time, and the files are newer.
    instance = this_process_as_apache(
        tmp_path, f"WSGIDaemonProcess {long_name('c')} display-name=%{{GROUP}}\n"
    )
    monkeypatch.setattr(discovery.procfs, "fds_readable", lambda pid: False)
    with pytest.raises(IdentityError, match="cannot be proven to be the one on disk"):
        group_processes(instance, instance.config.groups[0])


def test_title_path_a_cut_title_of_one_group_proves_it_when_the_files_are_older(
    tmp_path: Path,
    listeners: list[socket.socket],
    started: list[subprocess.Popen[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = long_name("d")
    instance = this_process_as_apache(
        tmp_path, f"WSGIDaemonProcess {name} display-name=%{{GROUP}}\n"
    )
    bind(listeners, tmp_path / "run" / f"wsgi.{ME}.0.1.sock")
    monkeypatch.setattr(discovery.procfs, "fds_readable", lambda pid: False)
    title = f"(wsgi:{name})"[: procfs.argv0_length(ME)]
    child = daemon(started, title=title)
    assert group_processes(instance, instance.config.groups[0]).pids == (child.pid,)


def test_error_log_of_a_group_is_its_vhosts_else_the_main_one(tmp_path: Path) -> None:
    conf = tmp_path / "httpd.conf"
    conf.write_text(
        f"ErrorLog {tmp_path}/main.log\nWSGIDaemonProcess plain\n"
        f"<VirtualHost *:80>\nErrorLog {tmp_path}/site.log\n"
        "WSGIDaemonProcess site\n</VirtualHost>\n"
    )
    config = parse_config(conf, server_root=tmp_path, environ={})
    instance = ApacheInstance(ME, 0.0, sys.executable, conf, config)
    assert instance.error_log_of(config.group("site")) == tmp_path / "site.log"
    assert instance.error_log_of(config.group("plain")) == tmp_path / "main.log"


def test_process_of_an_exited_pid_is_none(started: list[subprocess.Popen[str]]) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert discovery._process(child.pid) is None
    alive = daemon(started)
    found = discovery._process(alive.pid)
    assert found == DaemonProcess(
        alive.pid, psutil.Process(alive.pid).create_time(), procfs.title(alive.pid)
    )


@pytest.mark.parametrize("room", [2, 6])
def test_title_path_a_title_cut_to_its_prefix_or_less_names_no_group(
    tmp_path: Path,
    started: list[subprocess.Popen[str]],
    monkeypatch: pytest.MonkeyPatch,
    room: int,
) -> None:
    # Apache started by a short name ("httpd" is 5): "(wsgi:" or less is all that shows.
    instance = this_process_as_apache(tmp_path, "WSGIDaemonProcess myapp display-name=%{GROUP}\n")
    parent = daemon(started, title="x" * room)
    short = dataclasses.replace(instance, pid=parent.pid, create_time=time.time())
    monkeypatch.setattr(discovery.procfs, "fds_readable", lambda pid: False)
    with pytest.raises(IdentityError) as raised:
        group_processes(short, short.group("myapp"))
    title = "(wsgi:myapp)"[:room]
    assert f"titled {title!r}, which does not tell them from other groups's" in str(raised.value)


def test_title_path_a_title_cut_after_its_prefix_is_proven_by_unchanged_files(
    tmp_path: Path, started: list[subprocess.Popen[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    instance = this_process_as_apache(tmp_path, "WSGIDaemonProcess myapp display-name=%{GROUP}\n")
    parent = daemon(started, title="x" * 7)  # "(wsgi:m": one group only, files older
    short = dataclasses.replace(instance, pid=parent.pid, create_time=time.time())
    monkeypatch.setattr(discovery.procfs, "fds_readable", lambda pid: False)
    found = group_processes(short, short.group("myapp"))
    assert found.method == "title" and found.pids == ()


def test_group_processes_a_configuration_edited_after_apache_loaded_it_is_not_trusted(
    tmp_path: Path, listeners: list[socket.socket], started: list[subprocess.Popen[str]]
) -> None:
    # No titles: only the files' position could name the socket, and they changed since.
    instance = this_process_as_apache(tmp_path, "WSGIDaemonProcess myapp\n")
    sock = bind(listeners, tmp_path / "run" / f"wsgi.{ME}.0.1.sock")
    daemon(started, sock.fileno())
    group = instance.group("myapp")
    assert group_processes(instance, group).method == "socket"
    loaded = os.stat(tmp_path / "run" / f"wsgi.{ME}.0.1.sock").st_ctime
    while os.stat(instance.config_path).st_ctime <= loaded:
        instance.config_path.write_text(instance.config_path.read_text())
    with pytest.raises(IdentityError, match="changed after Apache loaded it"):
        group_processes(instance, group)


def test_reread_of_a_record_without_its_proof_proves_the_group_afresh(
    tmp_path: Path, listeners: list[socket.socket], started: list[subprocess.Popen[str]]
) -> None:
    instance = this_process_as_apache(tmp_path, "WSGIDaemonProcess myapp\n")
    sock = bind(listeners, tmp_path / "run" / f"wsgi.{ME}.0.1.sock")
    child = daemon(started, sock.fileno())
    proven = group_processes(instance, instance.group("myapp"))
    unproven = dataclasses.replace(proven, identity=None)  # a socket, but no proof kept
    again = reread(instance, unproven)
    assert again.identity is not None and again.pids == (child.pid,)


def test_instance_by_pid_an_httpd_takes_the_rhel_layout_under_d(
    tmp_path: Path, started: list[subprocess.Popen[str]], apache2: list[str]
) -> None:
    link = Path(apache2[0]).with_name("httpd")
    link.symlink_to(sys.executable)
    root = tmp_path / "root"
    (root / "conf").mkdir(parents=True)
    (root / "conf" / "httpd.conf").write_text("WSGIDaemonProcess rhel\n")
    child = start(started, [str(link), apache2[1], "-d", str(root)])
    instance = instance_by_pid(child.pid, None, source="test")
    assert instance.config_path == root / "conf" / "httpd.conf"
    assert [g.name for g in instance.config.groups] == ["rhel"]


def test_instance_by_pid_without_the_exe_link_takes_argv0(
    tmp_path: Path,
    apache2: list[str],
    started: list[subprocess.Popen[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # /proc/PID/exe of another user's process is closed to an unprivileged
    # check (never to root: simulated); an absolute argv[0] is the next best.
    root = tmp_path / "root"
    site(root)
    # Only argv[0] is absolute here: the script and the last word are relative.
    argv = [apache2[0], Path(apache2[1]).name, "-d", str(root), "-f", "httpd.conf"]
    child = subprocess.Popen(
        argv, stdout=subprocess.PIPE, text=True, cwd=tmp_path, env={"APP": "a"}
    )
    started.append(child)
    assert child.stdout is not None and child.stdout.readline() == "ready\n"
    monkeypatch.setattr(discovery.procfs, "exe", lambda pid: None)
    assert instance_by_pid(child.pid, None, source="test").exe == apache2[0]


def test_instance_by_pid_without_the_exe_link_a_relative_argv0_names_no_binary(
    tmp_path: Path,
    apache2: list[str],
    started: list[subprocess.Popen[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # "apache2" found through PATH: which file that was cannot be told afterwards.
    argv = ["apache2", apache2[1], "-f", str(site(tmp_path / "root"))]
    child = subprocess.Popen(
        argv, executable=apache2[0], stdout=subprocess.PIPE, text=True, env={"APP": "a"}
    )
    started.append(child)
    assert child.stdout is not None and child.stdout.readline() == "ready\n"
    monkeypatch.setattr(discovery.procfs, "exe", lambda pid: None)
    instance = instance_by_pid(child.pid, None, source="test")
    assert instance.exe == "" and [g.name for g in instance.config.groups] == ["a"]


def test_instance_by_pid_asks_the_running_binary_through_proc_else_an_absolute_argv0(
    tmp_path: Path,
    apache2: list[str],
    started: list[subprocess.Popen[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # /proc/PID/exe is the binary running even when an upgrade replaced the file
    # since; only when it cannot be read (another user's process) is argv[0] asked.
    asked: list[Path | None] = []
    binary = discovery.HttpdBinary

    def recorded(path: Path | None) -> HttpdBinary:
        asked.append(path)
        return binary(path)

    monkeypatch.setattr(discovery, "HttpdBinary", recorded)
    child = start(started, [*apache2, "-f", str(site(tmp_path / "root"))], env={"APP": "a"})
    instance_by_pid(child.pid, None, source="test")
    monkeypatch.setattr(discovery.procfs, "exe", lambda pid: None)
    instance_by_pid(child.pid, None, source="test")
    assert asked == [Path(f"/proc/{child.pid}/exe"), Path(apache2[0])]


def test_instance_by_pid_with_our_very_environment_still_reads_apaches(
    tmp_path: Path,
    apache2: list[str],
    started: list[subprocess.Popen[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Read, it equals ours (inherited): envvars is for when it cannot be read, not then.
    monkeypatch.setenv("APP", "fromenv")
    conf = site(tmp_path / "root")
    (conf.parent / "envvars").write_text("export APP=fromenvvars\n")
    child = start(started, [*apache2, "-f", str(conf)], env=dict(os.environ))
    assert psutil.Process(child.pid).environ() == dict(os.environ)
    assert [g.name for g in instance_by_pid(child.pid, None, source="t").config.groups] == [
        "fromenv"
    ]


def test_instance_by_pid_not_allowed_to_read_it_says_run_as_root(
    apache2: list[str],
    tmp_path: Path,
    started: list[subprocess.Popen[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Another user's process, for a user without CAP_SYS_PTRACE (root is never refused: simulated).
    child = start(started, [*apache2, "-f", str(site(tmp_path / "root"))], env={"APP": "a"})

    def refused(pid: int) -> list[str]:
        raise PermissionError(f"/proc/{pid}/cmdline")

    monkeypatch.setattr(procfacts, "argv", refused)
    with pytest.raises(NotFoundError, match=rf"not allowed to inspect pid {child.pid} \(pid file"):
        instance_by_pid(child.pid, None, source="pid file /run/a.pid")


def test_reread_a_new_socket_with_a_lower_inode_is_proven_afresh(
    tmp_path: Path, listeners: list[socket.socket], started: list[subprocess.Popen[str]]
) -> None:
    # Inode numbers are no clock: a new generation's may be lower than the one proven.
    instance = this_process_as_apache(tmp_path, "WSGIDaemonProcess myapp\n")
    sock = bind(listeners, tmp_path / "run" / f"wsgi.{ME}.0.1.sock")
    daemon(started, sock.fileno())
    proven = group_processes(instance, instance.group("myapp"))
    assert proven.socket is not None
    higher = dataclasses.replace(proven.socket, inode=proven.socket.inode + 1_000_000)
    again = reread(instance, dataclasses.replace(proven, socket=higher))
    assert again.identity is not proven.identity, "proven afresh"
