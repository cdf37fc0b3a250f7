"""The nginx router's divert, restore and drain wait against a real nginx master.

A small nginx (open source) runs here as this test's child, with its prefix,
pid file and logs under tmp_path, listening on a unix socket only (no port to
collide with).  Its upstream `app` is in its own file, which the router edits;
`/hold` goes to a listener of the test's that accepts and never answers, so a
test can keep a request in flight on an old worker.  The full restart with
Apache behind nginx is tests/integration/test_nginx_router.py's.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.nginx import temp_paths
from tests.unit.clock import SleepClock
from wsgi_drain.deadline import Deadline
from wsgi_drain.errors import RouterError
from wsgi_drain.routers.nginx import NginxRouter, NginxTarget, file_lock

UPSTREAM = """\
upstream app {
    server 127.0.0.1:9 max_fails=0;  # web1
    server 127.0.0.1:10;
    server 127.0.0.1:11 down;
}
"""
NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/bin")


@dataclass
class Nginx:
    root: Path
    upstream: Path
    pid_file: Path
    proc: subprocess.Popen[bytes]
    hold: socket.socket  # where /hold is proxied: accepts, never answers

    @property
    def master(self) -> int:
        return self.proc.pid

    def workers(self) -> set[int]:
        children = Path(f"/proc/{self.master}/task/{self.master}/children")
        return {int(p) for p in children.read_text().split()}

    def router(self, server: str = "127.0.0.1:9") -> NginxRouter:
        target = NginxTarget(self.upstream, server, self.pid_file)
        return NginxRouter(target, state_dir=self.root / "state")

    def request_held(self) -> socket.socket:
        """A request in flight through nginx (answered when the hold listener lets go)."""
        client = socket.socket(socket.AF_UNIX)
        client.connect(str(self.root / "nginx.sock"))
        client.sendall(b"GET /hold HTTP/1.1\r\nHost: t\r\n\r\n")
        return client


def _config(root: Path, hold: int) -> str:
    temp = root / "tmp"
    return f"""\
daemon off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log off;
{temp_paths(temp)}    include {root}/upstream.conf;
    include {root}/conf.d/*.conf;
    upstream hold {{ server 127.0.0.1:{hold}; }}
    server {{
        listen unix:{root}/nginx.sock;
        location /hold {{ proxy_pass http://hold; proxy_read_timeout 60s; }}
        location / {{ proxy_pass http://app; }}
    }}
}}
"""


def _until(condition: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    deadline = Deadline(timeout)
    while not condition():
        if deadline.expired():
            pytest.fail(f"not within {timeout:g} s: {what}")
        time.sleep(0.02)


def start_nginx(root: Path, *, upstream_text: str = UPSTREAM, link: bool = False) -> Nginx:
    if NGINX is None:
        if os.environ.get("CI") == "true":
            pytest.fail("nginx not found: CI installs it (scripts/setup)")
        pytest.skip("nginx not found: apt-get install nginx")
    for directory in (root, root / "conf.d", root / "tmp"):
        directory.mkdir(parents=True, exist_ok=True)
    os.chmod(root / "tmp", 0o1777)  # workers run as nobody when we are root
    upstream = root / "upstream.conf"
    if link:  # Debian's sites-enabled/X -> ../sites-available/X
        (root / "available").mkdir()
        (root / "available" / "app.conf").write_text(upstream_text)
        upstream.symlink_to(Path("available") / "app.conf")
    else:
        upstream.write_text(upstream_text)
    hold = socket.socket()
    hold.bind(("127.0.0.1", 0))
    hold.listen(8)
    (root / "nginx.conf").write_text(_config(root, hold.getsockname()[1]))
    argv = [NGINX, "-p", str(root), "-c", str(root / "nginx.conf"), "-e", str(root / "error.log")]
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    ng = Nginx(root, upstream, root / "nginx.pid", proc, hold)
    try:
        _until(lambda: proc.poll() is not None or (ng.pid_file.exists() and ng.workers()),
               "nginx started")  # fmt: skip
        if proc.poll() is not None:
            pytest.fail(f"nginx exited: {(root / 'error.log').read_text()[-2000:]}")
    except BaseException:
        stop_nginx(ng)
        raise
    return ng


def stop_nginx(ng: Nginx) -> None:
    ng.hold.close()
    if ng.proc.poll() is None:
        ng.proc.send_signal(signal.SIGTERM)
        try:
            ng.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(ng.proc.pid, signal.SIGKILL)
            ng.proc.wait(10)


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Nginx]:
    ng = start_nginx(tmp_path / "nginx")
    try:
        yield ng
    finally:
        stop_nginx(ng)


def test_nginx_divert_marks_the_line_reloads_and_restore_puts_it_back(nginx: Nginx) -> None:
    router = nginx.router()
    before = nginx.workers()
    assert router.state().admin == "ready"
    router.divert()
    text = nginx.upstream.read_text()
    assert "    server 127.0.0.1:9 max_fails=0 down; # wsgi-drain  # web1\n" in text
    assert nginx.workers() - before, "the divert returned before nginx started new workers"
    state = router.wait_drained(Deadline(30))
    assert (state.admin, state.status, state.sessions, state.queued) == (
        "drain", "DOWN (marked)", 0, 0,
    )  # fmt: skip
    assert (state.peers_up, state.peers_out) == (1, ("127.0.0.1:11 (maint)",))
    assert not nginx.workers() & before
    reloaded = nginx.workers()
    router.restore()
    assert nginx.upstream.read_text() == UPSTREAM  # byte-identical
    assert nginx.workers() - reloaded
    assert (router.state().admin, router.state().status) == ("ready", "UP")


def test_nginx_drain_counts_old_workers_until_their_requests_end(nginx: Nginx) -> None:
    """A request in flight on the worker from before the reload: the drain is not
    done until that worker has finished it and exited."""
    client = nginx.request_held()
    nginx.hold.settimeout(10)
    upstream_side, _ = nginx.hold.accept()  # nginx's worker is waiting on us now
    old = nginx.workers()
    router = nginx.router()
    try:
        router.divert()
        state = router.wait_drained(Deadline(0))
        assert state.sessions == len(old) == 1
        assert router.state().sessions == 1
        upstream_side.close()  # the request ends (502), so does the old worker
        assert router.wait_drained(Deadline(30)).sessions == 0
        assert not nginx.workers() & old
    finally:
        upstream_side.close()
        client.close()


def test_nginx_operators_down_is_never_removed_nor_reloaded(tmp_path: Path) -> None:
    """`server ... down;` without wsgi-drain's mark is maintenance: divert has
    nothing to do, restore leaves it, and neither reloads nginx."""
    ng = start_nginx(tmp_path / "nginx")
    try:
        router = ng.router("127.0.0.1:11")
        workers = ng.workers()
        assert (router.state().admin, router.state().status) == ("maint", "DOWN (marked)")
        router.divert()
        router.restore()
        assert ng.upstream.read_text() == UPSTREAM
        assert ng.workers() == workers
    finally:
        stop_nginx(ng)


def test_nginx_restore_of_a_server_in_rotation_changes_nothing(nginx: Nginx) -> None:
    workers = nginx.workers()
    nginx.router().restore()
    assert nginx.upstream.read_text() == UPSTREAM
    assert nginx.workers() == workers


def test_nginx_divert_twice_reloads_once(nginx: Nginx) -> None:
    router = nginx.router()
    router.divert()
    marked, workers = nginx.upstream.read_text(), nginx.workers()
    router.divert()
    assert nginx.upstream.read_text() == marked
    assert nginx.workers() == workers


def test_nginx_t_failure_puts_the_file_back_and_reloads_nothing(nginx: Nginx) -> None:
    """Both ways: a divert's edit and a restore's edit are undone when `nginx -t`
    fails (here a broken file another tool left in conf.d), and nginx keeps
    running what it had."""
    router = nginx.router()
    broken = nginx.root / "conf.d" / "broken.conf"
    broken.write_text("this is not nginx;\n")
    workers = nginx.workers()
    # nginx's own last words, as text (not the repr of bytes).
    said = re.escape(f"not reloaded: nginx: configuration file {nginx.root}/nginx.conf test failed")
    with pytest.raises(RouterError, match=r"`nginx -t` failed .* undone .* " + said + "$"):
        router.divert()
    assert nginx.upstream.read_text() == UPSTREAM
    assert nginx.workers() == workers
    broken.unlink()
    router.divert()
    marked = nginx.upstream.read_text()
    broken.write_text("this is not nginx;\n")
    workers = nginx.workers()
    with pytest.raises(RouterError, match="`nginx -t` failed"):
        router.restore()
    assert nginx.upstream.read_text() == marked  # still out: our mark is kept
    assert nginx.workers() == workers


@pytest.mark.parametrize("pid_file", ["missing", "not a number", "not nginx"])
def test_nginx_pid_file_not_naming_a_master_is_refused_and_the_file_left_alone(
    nginx: Nginx, tmp_path: Path, pid_file: str
) -> None:
    other = subprocess.Popen(["sleep", "60"])
    try:
        wrong = tmp_path / "wrong.pid"
        if pid_file == "not a number":
            wrong.write_text("nginx\n")
        elif pid_file == "not nginx":
            wrong.write_text(f"{other.pid}\n")
        target = NginxTarget(nginx.upstream, "127.0.0.1:9", wrong)
        router = NginxRouter(target, state_dir=tmp_path / "state")
        why = "is not an nginx master" if pid_file == "not nginx" else "no running nginx master"
        with pytest.raises(RouterError, match=why):
            router.divert()
        assert nginx.upstream.read_text() == UPSTREAM
    finally:
        other.kill()
        other.wait()


def test_nginx_master_of_another_program_titled_like_nginx_is_refused(
    nginx: Nginx, tmp_path: Path
) -> None:
    """The title alone is not proof: the executable must be nginx as well."""
    sleep = shutil.which("sleep")
    assert sleep is not None
    impostor = subprocess.Popen(["nginx: master process /usr/sbin/nginx", "60"], executable=sleep)
    try:
        # Popen returns once the exec has begun; the new argv shows in /proc a moment later
        # (until then the title reads '' and would be refused for that alone).
        cmdline = Path(f"/proc/{impostor.pid}/cmdline")
        _until(lambda: cmdline.read_bytes().startswith(b"nginx: master process "), "the title")
        wrong = tmp_path / "impostor.pid"
        wrong.write_text(f"{impostor.pid}\n")
        router = NginxRouter(NginxTarget(nginx.upstream, "127.0.0.1:9", wrong), tmp_path / "s")
        with pytest.raises(RouterError, match="is not an nginx master"):
            router.divert()
        assert nginx.upstream.read_text() == UPSTREAM
    finally:
        impostor.kill()
        impostor.wait()


def test_nginx_symlinked_upstream_is_written_through_keeping_link_mode_and_owner(
    tmp_path: Path,
) -> None:
    ng = start_nginx(tmp_path / "nginx", link=True)
    try:
        real = ng.root / "available" / "app.conf"
        os.chmod(real, 0o640)
        router = ng.router()
        router.divert()
        assert ng.upstream.is_symlink() and os.readlink(ng.upstream) == "available/app.conf"
        assert "down; # wsgi-drain" in real.read_text()
        assert stat.S_IMODE(real.stat().st_mode) == 0o640
        router.restore()
        assert real.read_text() == UPSTREAM
    finally:
        stop_nginx(ng)


def test_nginx_state_of_a_file_that_cannot_be_read_is_a_router_error(tmp_path: Path) -> None:
    router = NginxRouter(NginxTarget(tmp_path / "missing.conf", "127.0.0.1:9"), tmp_path)
    with pytest.raises(RouterError, match="cannot read the upstream file: No such file"):
        router.state()


def test_nginx_state_names_the_router_and_reads_the_file_as_it_is(tmp_path: Path) -> None:
    upstream = tmp_path / "up.conf"
    upstream.write_text(UPSTREAM)
    router = NginxRouter(NginxTarget(upstream, "127.0.0.1:10"), tmp_path)
    assert router.name == f"nginx {upstream} 127.0.0.1:10"
    state = router.state()
    assert (state.name, state.admin, state.status) == (router.name, "ready", "UP")
    assert (state.sessions, state.queued, state.peers_up) == (0, 0, 1)
    upstream.write_text(UPSTREAM.replace("127.0.0.1:10;", "127.0.0.1:10 down; # wsgi-drain"))
    assert (router.state().admin, router.state().status) == ("drain", "DOWN (marked)")


def _held_elsewhere(lock: Path) -> bool:
    """Whether another open file description holds the flock on `lock`."""
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_nginx_file_lock_is_one_per_real_file_and_private(tmp_path: Path) -> None:
    """Runs on two servers of one upstream file take turns; through a link it is
    the same file, so the same lock; another file has its own."""
    state = tmp_path / "state"
    real = tmp_path / "app.conf"
    real.write_text(UPSTREAM)
    link = tmp_path / "enabled.conf"
    link.symlink_to(real)
    other = tmp_path / "other.conf"
    other.write_text(UPSTREAM)
    with file_lock(real, state):
        locks = list(state.glob("nginx-*.lock"))
        assert len(locks) == 1 and _held_elsewhere(locks[0])
        assert stat.S_IMODE(locks[0].stat().st_mode) == 0o600
    assert not _held_elsewhere(locks[0])
    with file_lock(link, state):
        assert list(state.glob("nginx-*.lock")) == locks and _held_elsewhere(locks[0])
    with file_lock(other, state):
        (mine,) = set(state.glob("nginx-*.lock")) - set(locks)
        assert _held_elsewhere(mine) and not _held_elsewhere(locks[0])


def test_nginx_file_lock_without_a_state_dir_uses_the_environments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WSGI_DRAIN_STATE_DIR", str(tmp_path / "env-state"))
    with file_lock(tmp_path / "app.conf"):
        assert len(list((tmp_path / "env-state").glob("nginx-*.lock"))) == 1


def test_nginx_file_lock_in_an_unusable_state_dir_is_a_router_error(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    with (
        pytest.raises(RouterError, match="cannot take the file lock"),
        file_lock(tmp_path / "app.conf", not_a_dir),
    ):
        pass


def test_nginx_file_lock_that_cannot_be_opened_is_a_router_error_naming_the_directory(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    with file_lock(tmp_path / "app.conf", state):
        (lock,) = state.glob("nginx-*.lock")
    lock.unlink()
    lock.mkdir()  # the lock's name taken by a directory: open(O_RDWR) fails, EISDIR
    with (
        pytest.raises(RouterError) as err,
        file_lock(tmp_path / "app.conf", state),
    ):
        pass
    assert str(err.value) == (
        f"nginx {tmp_path / 'app.conf'}: cannot take the file lock in {state}: Is a directory"
    )


def test_nginx_file_lock_is_never_opened_through_a_symlink(tmp_path: Path) -> None:
    # The lock's name made a link to elsewhere: refused (O_NOFOLLOW), nothing made there.
    state = tmp_path / "state"
    with file_lock(tmp_path / "app.conf", state):
        (lock,) = state.glob("nginx-*.lock")
    lock.unlink()
    victim = tmp_path / "victim"
    lock.symlink_to(victim)
    with (
        pytest.raises(RouterError, match="cannot take the file lock in .*: Too many levels"),
        file_lock(tmp_path / "app.conf", state),
    ):
        pass
    assert not victim.exists()


class OtherTest(NginxRouter):
    """The master proven as usual, then `nginx -t` replaced by `argv` (and the pid, if given)."""

    def __init__(self, ng: Nginx, argv: list[str], pid: int | None = None) -> None:
        super().__init__(NginxTarget(ng.upstream, "127.0.0.1:9", ng.pid_file), ng.root / "state")
        self.argv, self.pid = argv, pid

    def _master(self) -> tuple[int, list[str]]:
        pid, _ = super()._master()
        return (pid if self.pid is None else self.pid), self.argv


def test_nginx_t_that_cannot_even_run_puts_the_file_back_and_reloads_nothing(
    nginx: Nginx,
) -> None:
    router = OtherTest(nginx, [str(nginx.root / "no-such-nginx"), "-t", "-q"])
    workers = nginx.workers()
    with pytest.raises(RouterError, match=r"`nginx -t` failed .* No such file or directory"):
        router.divert()
    assert nginx.upstream.read_text() == UPSTREAM
    assert nginx.workers() == workers


def test_nginx_t_killed_by_a_signal_is_a_failure_and_reloads_nothing(nginx: Nginx) -> None:
    # A negative returncode (killed, e.g. by the OOM killer) is no success either.
    router = OtherTest(nginx, ["/bin/sh", "-c", "kill -KILL $$"])
    workers = nginx.workers()
    with pytest.raises(RouterError, match=r"`nginx -t` failed .*: no message$"):
        router.divert()
    assert nginx.upstream.read_text() == UPSTREAM
    assert nginx.workers() == workers


def test_nginx_master_gone_before_the_signal_puts_the_file_back(nginx: Nginx) -> None:
    # Proven, tested, then gone when it is to be signalled: a pid no process can have.
    gone = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
    true = shutil.which("true")
    assert true is not None
    router = OtherTest(nginx, [true], pid=gone)
    with pytest.raises(RouterError, match=f"nginx master {gone} is gone: "):
        router.divert()
    assert nginx.upstream.read_text() == UPSTREAM


FAKE_MASTER = """\
import signal, subprocess, sys, time
worker = subprocess.Popen(["sleep", "60"])
def reload(*_):
    # The old worker goes first; the new one only comes a while later.
    worker.kill()
    worker.wait()
    time.sleep(0.5)
    subprocess.Popen(["sleep", "60"])
signal.signal(signal.SIGHUP, reload)
print("ready", flush=True)
while True:
    time.sleep(1)
"""


def test_nginx_reload_counts_only_once_new_workers_have_started(
    nginx: Nginx, tmp_path: Path
) -> None:
    # A master whose old worker exits before its new one starts: an old worker gone is not
    # the reload; the divert returns once a worker that was not there before runs.
    script = tmp_path / "fake_master.py"
    script.write_text(FAKE_MASTER)
    fake = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        assert fake.stdout is not None and fake.stdout.readline() == b"ready\n"
        children = Path(f"/proc/{fake.pid}/task/{fake.pid}/children")
        before = set(children.read_text().split())
        true = shutil.which("true")
        assert true is not None and len(before) == 1
        OtherTest(nginx, [true], pid=fake.pid).divert()
        assert set(children.read_text().split()) - before
    finally:
        os.killpg(fake.pid, signal.SIGKILL)
        fake.wait()
        if fake.stdout is not None:
            fake.stdout.close()


def test_nginx_drain_wait_polls_every_50_ms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream = tmp_path / "up.conf"
    upstream.write_text(UPSTREAM)
    router = NginxRouter(NginxTarget(upstream, "127.0.0.1:9"), tmp_path / "state")
    old = subprocess.Popen(["sleep", "60"])  # an old worker still serving
    router._old_workers = {old.pid}
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        old.kill()  # its last request ended while we slept
        old.wait()

    monkeypatch.setattr(time, "sleep", sleep)
    try:
        assert router.wait_drained(Deadline(60)).sessions == 0
    finally:
        old.kill()
        old.wait()
    assert slept == [0.05]


def test_nginx_t_failure_after_another_hand_put_the_file_back_leaves_it_as_it_is(
    nginx: Nginx, tmp_path: Path
) -> None:
    # Between our edit and the undo, something (config management) wrote the file back
    # without our `down`: the undo removes only our own change, so it has nothing to do.
    original = tmp_path / "original.conf"
    original.write_text(UPSTREAM)
    put_back = f"cp {original} {nginx.upstream}; exit 1"
    workers = nginx.workers()
    with pytest.raises(RouterError, match="`nginx -t` failed"):
        OtherTest(nginx, ["/bin/sh", "-c", put_back]).divert()
    assert nginx.upstream.read_text() == UPSTREAM
    assert nginx.workers() == workers


def test_nginx_drain_wait_never_sleeps_past_its_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fake clock that moves only when the router sleeps: 0.07 s of deadline is one poll
    # of 0.05 s, then what is left (0.02 s), then the deadline with the worker still there.
    from wsgi_drain.routers import nginx as module

    upstream = tmp_path / "up.conf"
    upstream.write_text(UPSTREAM)
    router = NginxRouter(NginxTarget(upstream, "127.0.0.1:9"), tmp_path / "state")
    clock = SleepClock()
    monkeypatch.setattr(module, "time", types.SimpleNamespace(sleep=clock.sleep))
    old = subprocess.Popen(["sleep", "60"])
    try:
        router._old_workers = {old.pid}
        assert router.wait_drained(Deadline(0.07, clock=clock)).sessions == 1
    finally:
        old.kill()
        old.wait()
    assert clock.slept == [0.05, pytest.approx(0.02)]
