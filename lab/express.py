"""A real `mod_wsgi-express` server on loopback, set up and started the ways its users do.

`ExpressLab` runs the PyPI package's own command (the `mod_wsgi-express` beside
this interpreter): `setup-server … --server-root DIR` then `DIR/apachectl start`
(Apache daemonizes), or `start-server` in the foreground as our child (the
launcher execs apachectl, which execs httpd: the child *is* the Apache parent).
`wrapper` puts a command before it, e.g. ``unshare --pid --fork --mount-proc``:
the server is then the first process of its own PID namespace, as in a
container.  Only pids this lab started are signalled.

What the lab adds to express's own configuration, and why (test machines only):

- As root, express needs ``--user``/``--group``; the daemons run as www-data.
- The interpreter here lives under /root (pyenv, mode 700): www-data cannot
  read its standard library, and every daemon would crash.  An
  ``--include-file`` sets WSGIPythonHome to a hard-linked mirror of it (as
  ApacheLab does), with the mod_wsgi package beside it: express's
  handler.wsgi imports ``mod_wsgi.express`` as each daemon starts.
- Everything the daemons read lives in a short world-traversable directory
  under /tmp (unix socket paths hold 107 bytes), removed by stop().
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import psutil

from lab import procs
from lab.apache import RUN_USER, _mirror_stdlib, _stdlib_home, _unreadable_to_daemons
from lab.errors import LabError, LabUnavailable
from lab.ports import LOOPBACK, free_port, wait_accepting
from lab.service import Service
from wsgi_drain.deadline import Deadline

# What its users run and wsgi-drain must not need changing: only the lab's
# test-machine needs above are added to these.
_CLEAN_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}


def express_command() -> Path:
    """The `mod_wsgi-express` of this interpreter's environment (the test extras)."""
    beside = Path(sys.executable).parent / "mod_wsgi-express"
    if beside.exists():
        return beside
    found = shutil.which("mod_wsgi-express")
    if found is None:
        raise LabUnavailable(
            "mod_wsgi-express is not installed: pip install -e '.[test]' (mod_wsgi builds "
            "against apache2-dev)"
        )
    return Path(found)


class ExpressLab(Service):
    """mod_wsgi-express serving the lab's app on 127.0.0.1:<free port>.

    `process_group` is express's --process-group (None: its default name
    HOST:PORT); `disable_reloading` and `log_level` its --disable-reloading and
    --log-level (express's own defaults are reloading on and warn);
    `foreground` starts it with start-server as our child, else setup-server
    and apachectl start.  `root` keeps the launcher's output and the test's
    files; the server root is under `public`.
    """

    def __init__(
        self,
        root: Path,
        *,
        process_group: str | None = None,
        processes: int = 3,
        threads: int = 5,
        disable_reloading: bool = True,
        log_level: str | None = "info",
        foreground: bool = False,
        wrapper: Sequence[str] = (),
        extra_args: Sequence[str] = (),
        start_timeout: float = 30.0,
    ) -> None:
        self.root = Path(root).resolve()
        self.process_group = process_group
        self.processes = processes
        self.threads = threads
        self.disable_reloading = disable_reloading
        self.log_level = log_level
        self.foreground = foreground
        self.wrapper = list(wrapper)
        self.extra_args = list(extra_args)
        self.start_timeout = start_timeout
        self.as_root = os.geteuid() == 0
        self.port = 0
        self._public: Path | None = None
        self._launcher: subprocess.Popen[bytes] | None = None
        self._launch_log: IO[bytes] | None = None
        self._parent: psutil.Process | None = None
        self._seen: list[psutil.Process] = []

    # -- paths and names -----------------------------------------------------

    @property
    def public(self) -> Path:
        if self._public is None:
            raise LabError("the express lab has not been set up yet")
        return self._public

    @property
    def server_root(self) -> Path:
        return self.public / "root"

    @property
    def app_dir(self) -> Path:
        return self.public / "app"

    @property
    def pid_file(self) -> Path:
        return self.server_root / "httpd.pid"

    @property
    def error_log(self) -> Path:
        return self.server_root / "error_log"

    @property
    def apachectl(self) -> Path:
        return self.server_root / "apachectl"

    @property
    def group(self) -> str:
        """The group express defines: --process-group, else HOST:PORT."""
        return self.process_group or f"{LOOPBACK}:{self.port}"

    @property
    def title(self) -> str:
        """The daemons' title express writes (src/express/server.py)."""
        if self.process_group:
            return f"(wsgi:{self.process_group})"
        return f"(wsgi:{LOOPBACK}:{self.port}:{os.getuid()})"

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def parent_pid(self) -> int:
        if self._parent is None:
            raise LabError("express's Apache is not running")
        return self._parent.pid

    def setup_args(self) -> list[str]:
        """The mod_wsgi-express arguments, the same for every setup-server run."""
        words = [
            str(self.app_dir / "app.py"),
            "--server-root", str(self.server_root),
            "--host", LOOPBACK, "--port", str(self.port),
            "--processes", str(self.processes), "--threads", str(self.threads),
            "--working-directory", str(self.app_dir),
            "--lang", "C.UTF-8", "--locale", "C.UTF-8",
        ]  # fmt: skip
        if self.process_group:
            words += ["--process-group", self.process_group]
        if self.disable_reloading:
            words.append("--disable-reloading")
        if self.log_level:
            words += ["--log-level", self.log_level]
        if self.as_root:
            words += ["--user", RUN_USER, "--group", RUN_USER]
        home = self.public / "home.conf"
        if home.exists():
            words += ["--include-file", str(home)]
        return [*words, *self.extra_args]

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        """Set up (or start-server) express and wait until a daemon answers."""
        express = express_command()
        if not Path("/usr/sbin/apache2").exists():
            raise LabUnavailable("apache2 not found: apt-get install apache2 apache2-dev")
        deadline = Deadline(self.start_timeout)
        self._setup_dirs()
        self.port = free_port()
        try:
            if self.foreground:
                self._start_foreground(express, deadline)
            else:
                self.setup_server()
                self._run([str(self.apachectl), "start"], deadline)
                self._parent = self._wait_parent(deadline)
            if self._parent is not None:
                self._seen.append(self._parent)
            self._wait_ready(deadline)
        except BaseException:
            self.stop()
            raise

    def setup_server(self) -> None:
        """`mod_wsgi-express setup-server` with this lab's arguments (again: the deploy habit)."""
        self._run([str(express_command()), "setup-server", *self.setup_args()], Deadline(60.0))

    def _run(self, argv: list[str], deadline: Deadline) -> None:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=max(deadline.remaining(), 5.0),
            check=False,
            cwd=self.app_dir,
            env=_CLEAN_ENV,
            restore_signals=True,
        )
        if done.returncode != 0:
            msg = f"{' '.join(argv[:2])} failed (exit {done.returncode}): {done.stderr.strip()}"
            raise LabError(msg + "\n" + procs.tail(self.error_log))

    def _start_foreground(self, express: Path, deadline: Deadline) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._launch_log = (self.root / "start-server.log").open("ab")
        self._launcher = subprocess.Popen(
            [*self.wrapper, str(express), "start-server", *self.setup_args()],
            stdin=subprocess.DEVNULL,
            stdout=self._launch_log,
            stderr=subprocess.STDOUT,
            cwd=self.app_dir,
            env=_CLEAN_ENV,
            restore_signals=True,
            start_new_session=True,
        )
        launcher = psutil.Process(self._launcher.pid)
        self._seen.append(launcher)
        while True:
            # Without a wrapper the launcher execs its way into httpd; with one
            # (unshare --fork), httpd is the wrapper's child.
            parent = self._apache_in(launcher)
            if parent is not None:
                self._parent = parent
                return
            if self._launcher.poll() is not None or deadline.expired():
                msg = f"start-server did not start Apache (exit {self._launcher.poll()})"
                raise LabError(msg + "\n" + procs.tail(self.root / "start-server.log"))
            time.sleep(0.05)

    def _apache_in(self, launcher: psutil.Process) -> psutil.Process | None:
        candidates = [launcher]
        with contextlib.suppress(psutil.Error):
            # A wrapper may sit between: unshare --fork, a shell as PID 1.
            candidates += launcher.children(recursive=True)
        for proc in candidates:
            with contextlib.suppress(psutil.Error):
                if proc.name() == "apache2" and any(c.name() == "apache2" for c in proc.children()):
                    return proc
        return None

    def _wait_parent(self, deadline: Deadline) -> psutil.Process:
        while True:
            with contextlib.suppress(OSError, ValueError):
                proc = procs.process(int(self.pid_file.read_text().strip()))
                if proc is not None:
                    return proc
            if deadline.expired():
                raise LabError(f"no Apache parent in {self.pid_file}\n{procs.tail(self.error_log)}")
            time.sleep(0.05)

    def _wait_ready(self, deadline: Deadline) -> None:
        if not wait_accepting(LOOPBACK, self.port, deadline):
            raise LabError(f"express does not accept on {self.url}\n{procs.tail(self.error_log)}")
        while True:
            pids = self.daemon_pids()
            answered = self._probe()
            # In its own PID namespace the app's X-Pid is the pid seen in there.
            if len(pids) >= self.processes and answered in {*pids, *map(_ns_pid, pids)}:
                return
            if deadline.expired():
                msg = f"{self.url}/ does not answer from a daemon ({pids})"
                raise LabError(msg + "\n" + procs.tail(self.error_log))
            time.sleep(0.1)

    def _probe(self) -> int | None:
        conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=5.0)
        try:
            conn.request("GET", "/health")
            resp = conn.getresponse()
            resp.read()
            pid = resp.getheader("X-Pid")
            return int(pid) if resp.status == 200 and pid else None
        except (OSError, http.client.HTTPException, ValueError):
            return None
        finally:
            conn.close()

    def daemon_pids(self) -> list[int]:
        """The parent's children titled as express titles its daemons."""
        if self._parent is None:
            return []
        found = []
        with contextlib.suppress(psutil.Error):
            for child in self._parent.children():
                if procs.title(child) == self.title:
                    found.append(child.pid)
                    self._seen.append(child)
        return sorted(found)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM our Apache parent (a hard stop, by pid), then SIGKILL what is left of ours."""
        deadline = Deadline(timeout)
        seen = list(self._seen)
        if self._parent is not None:
            with contextlib.suppress(psutil.Error):
                seen += self._parent.children()
            with contextlib.suppress(psutil.Error):
                if not procs.is_gone(self._parent):
                    self._parent.send_signal(signal.SIGTERM)
            procs.wait_gone([self._parent], deadline)
        alive = procs.kill(seen)
        if self._launcher is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._launcher.wait(max(deadline.remaining(), 1.0))
            self._launcher = None
        if self._launch_log is not None:
            self._launch_log.close()
            self._launch_log = None
        self._parent = None
        self._seen = []
        if self._public is not None:
            shutil.rmtree(self._public, ignore_errors=True)
            self._public = None
        if alive:
            raise LabError(f"processes survived SIGKILL: {[p.pid for p in alive]}")

    # -- files ---------------------------------------------------------------

    def _setup_dirs(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._public = Path(tempfile.mkdtemp(prefix="wsgi-drain-express-"))
        for directory in (self.public, self.app_dir):
            directory.mkdir(parents=True, exist_ok=True)
            directory.chmod(0o755)
        (self.app_dir / "loaded").mkdir()
        (self.app_dir / "loaded").chmod(0o777)
        shutil.copy(Path(__file__).parent / "app.py", self.app_dir / "app.py")
        (self.app_dir / "version.txt").write_text("1\n")
        for path in self.app_dir.iterdir():
            path.chmod(0o777 if path.is_dir() else 0o644)
        home = _stdlib_home(Path(sys.prefix))
        if self.as_root and (
            _unreadable_to_daemons(Path(sys.prefix)) or _unreadable_to_daemons(home)
        ):
            self._readable_home(home)

    def _readable_home(self, home: Path) -> None:
        """A Python home www-data can read: the standard library and the mod_wsgi package."""
        mirror = _mirror_stdlib(home, self.public / "pyhome")
        version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
        site = mirror / "lib" / version / "site-packages"
        package = Path(sysconfig.get_paths()["purelib"]) / "mod_wsgi"
        shutil.copytree(package, site / "mod_wsgi", copy_function=_link_or_copy)
        for dirpath, dirnames, _files in os.walk(site):
            for name in dirnames:
                (Path(dirpath) / name).chmod(0o755)
        site.chmod(0o755)
        (self.public / "home.conf").write_text(f"WSGIPythonHome '{mirror}'\n")


def _ns_pid(pid: int) -> int | None:
    """`pid` as its own (innermost) PID namespace numbers it (NSpid in /proc/PID/status)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("NSpid:"):
            return int(line.split()[-1])
    return None


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
