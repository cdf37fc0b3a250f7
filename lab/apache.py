"""A real Apache httpd + mod_wsgi daemon group on loopback, under a temporary directory.

Everything lives under the lab's own directories: ServerRoot, PidFile,
DefaultRuntimeDir, WSGISocketPrefix, logs.  /etc/apache2 and the system service
are never read or touched, and only pids this lab started are ever signalled.

Traps met building it (each also noted where it is handled):

- Apache must be started by its full path: display-name overwrites argv[0] in
  place, cut to its length, so a bare ``apache2`` gives daemons titled ``(wsgi:m``.
- Apache must start with SIGHUP/SIGINT/SIGQUIT at their defaults: ignored
  signals survive exec, and a parent that ignores SIGHUP passes that on.
- As root, the daemons run as www-data, which must be able to traverse every
  directory above the app, the WSGI sockets and the Python home.  pytest's
  tmp_path sits under /tmp/pytest-of-root (mode 700), so those files go to a
  world-traversable directory of their own under /tmp.
- The PyPI module built by a pyenv Python under /root (mode 700) segfaults in a
  crash loop in every daemon ("failed to get the Python codec of the filesystem
  encoding"): www-data cannot read the standard library.  The lab then points
  WSGIPythonHome at a hard-linked mirror of that standard library.
- A unix socket path is limited to 107 bytes; the sockets go under a short
  /tmp directory, not under pytest's long tmp_path.
- log_config is built into Debian's apache2: LoadModule for it is an error.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import psutil

from lab import procs
from lab.errors import LabError, LabUnavailable
from lab.ports import LOOPBACK, free_port, wait_accepting
from lab.service import Service
from wsgi_drain.deadline import Deadline

ModWsgi = Literal["debian", "pypi"]

APACHE2 = Path("/usr/sbin/apache2")
APACHE_MODULES = Path("/usr/lib/apache2/modules")
DEBIAN_MOD_WSGI = APACHE_MODULES / "mod_wsgi.so"
RUN_USER = "www-data"

# Only what the configuration needs: the MPM and Require.  log_config and
# unixd are built into Debian's apache2.
_BASE_MODULES = (("authz_core_module", "mod_authz_core.so"),)
MPMS = ("event", "worker", "prefork")

_WSGI_HOME = re.compile(r'^\s*WSGIPythonHome\s+"?([^"\s]+)"?\s*$', re.MULTILINE)

# The daemon's initial signal state: these must be at their defaults in Apache.
_DEFAULT_SIGNALS = (
    signal.SIGHUP,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGTERM,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGPIPE,
)


def _reset_signals() -> None:
    # Runs in the forked child before exec.  Ignored signals stay ignored
    # across exec, and Apache passes its dispositions on to the mod_wsgi
    # daemons: a parent run under nohup would give daemons that ignore SIGHUP.
    for sig in _DEFAULT_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def pypi_module_config() -> str:
    """The LoadModule (and WSGIPythonHome) lines of the PyPI mod_wsgi package.

    Runs ``mod_wsgi-express module-config`` from this Python's environment.
    Raises LabUnavailable, saying how to install it, when the package is missing.
    """
    candidates = [Path(sys.executable).parent / "mod_wsgi-express"]
    found = shutil.which("mod_wsgi-express")
    if found:
        candidates.append(Path(found))
    express = next((c for c in candidates if c.exists()), None)
    if express is None:
        msg = (
            "the PyPI mod_wsgi package is not installed (no mod_wsgi-express): "
            "run `pip install mod_wsgi`; it builds against Apache's headers, so "
            "`apt-get install apache2-dev` first"
        )
        raise LabUnavailable(msg)
    try:
        done = subprocess.run(
            [str(express), "module-config"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        msg = f"{express} module-config failed: {err}"
        raise LabUnavailable(msg) from err
    if done.returncode != 0 or "LoadModule" not in done.stdout:
        msg = (
            f"{express} module-config failed (exit {done.returncode}): "
            f"{done.stderr.strip() or done.stdout.strip()}; reinstall with `pip install mod_wsgi`"
        )
        raise LabUnavailable(msg)
    return done.stdout


def _others_can_traverse(path: Path) -> bool:
    """Whether a user with no special rights can reach `path` (o+x on every directory)."""
    path = path.resolve()
    for directory in (path, *path.parents):
        try:
            mode = directory.stat().st_mode
        except OSError:
            return False
        if stat.S_ISDIR(mode) and not mode & stat.S_IXOTH:
            return False
    return True


def _unreadable_to_daemons(home: Path) -> bool:
    """Whether www-data (not owner, not group) would fail to reach the Python home."""
    return not _others_can_traverse(home)


def _stdlib_home(home: Path) -> Path:
    """The prefix that really holds the standard library for a WSGIPythonHome.

    `mod_wsgi-express module-config` run from a virtualenv names the venv,
    whose standard library lives in the base interpreter's prefix (its
    pyvenv.cfg `home = <base>/bin`): that is what the daemons must read.
    """
    cfg = home / "pyvenv.cfg"
    try:
        lines = cfg.read_text().splitlines()
    except OSError:
        return home
    for line in lines:
        key, _, value = line.partition("=")
        if key.strip() == "home" and value.strip():
            return Path(value.strip()).parent
    return home


def _mirror_stdlib(home: Path, target: Path) -> Path:
    """A Python home at `target` whose lib/python3.X hard-links `home`'s standard library.

    Hard links keep the files' own (world-readable) modes, take no space and
    about 0.1 s; site-packages and the test suite are left out.  Falls back to
    copying across file systems.
    """
    libs = [p for p in (home / "lib").glob("python3.*") if (p / "os.py").exists()]
    if not libs:
        msg = f"no standard library (lib/python3.*/os.py) under WSGIPythonHome {home}"
        raise LabError(msg)
    skip = {"site-packages", "test", "idlelib", "tkinter", "turtledemo"}
    for lib in libs:
        dest_lib = target / "lib" / lib.name
        for dirpath, dirnames, filenames in os.walk(lib):
            rel = Path(dirpath).relative_to(lib)
            if rel == Path("."):
                dirnames[:] = [d for d in dirnames if d not in skip]
            out = dest_lib / rel
            out.mkdir(parents=True, exist_ok=True)
            out.chmod(0o755)
            for name in filenames:
                src = Path(dirpath) / name
                try:
                    os.link(src, out / name)
                except OSError:
                    shutil.copy2(src, out / name)
    return target


class ApacheLab(Service):
    """Apache + one mod_wsgi daemon group on 127.0.0.1:<free port>; a context manager.

    `root` holds the configuration, pid file and error log.  Files the
    daemons must reach as www-data (the app, its control files, the WSGI
    sockets) go to `public`: `root/www` when others can traverse `root`, else a
    fresh directory under /tmp that stop() removes.

    `daemon_options` are extra WSGIDaemonProcess options (e.g.
    ``{"graceful-timeout": 5, "shutdown-timeout": 2}``), `extra_config` is
    appended to httpd.conf as is, `before_config` inserted just before the
    group's WSGIDaemonProcess (other groups defined first shift its socket id,
    which `group_id` then states when it is not 1 + the number of lines there
    that start with WSGIDaemonProcess).  `display_name=False` leaves out
    ``display-name=%{GROUP}``: daemons then look like Apache's workers, and the
    lab finds them by the group's socket instead of their title.  `version` is
    written to version.txt (served by /version); `hang=True` makes every
    daemon start a thread that never ends; `children` ("plain" or "hook")
    makes every daemon start two children as it imports the app.  `preload=True` makes each daemon
    import the app when it starts (``process-group``/``application-group`` on
    WSGIScriptAlias) instead of on its first request.  `args` are added to
    httpd's command line at start (e.g. ``["-C", "WSGIDaemonProcess x"]``);
    `mpm` is the MPM module (event, worker or prefork).
    `extra_groups` are more daemon groups of the same app (same processes,
    threads and options), each served at ``/NAME/`` and preloaded; their
    WSGIDaemonProcess lines follow the main group's, whose socket id stays 1
    (the second group is 2, and so on).  `group_pids(NAME)` finds their daemons.
    `error_log` replaces the ErrorLog directive's argument (``"|cmd"``,
    ``/dev/stderr``).
    """

    def __init__(
        self,
        root: Path,
        *,
        modwsgi: ModWsgi = "debian",
        group: str = "myapp",
        processes: int = 3,
        threads: int = 5,
        daemon_options: Mapping[str, str | int | float] | None = None,
        extra_config: str = "",
        before_config: str = "",
        display_name: bool = True,
        group_id: int | None = None,
        preload: bool = False,
        args: Sequence[str] = (),
        error_log: str | None = None,
        version: str = "1",
        hang: bool = False,
        children: str = "",
        start_timeout: float = 20.0,
        mpm: str = "event",
        extra_groups: Sequence[str] = (),
    ) -> None:
        if modwsgi not in ("debian", "pypi"):
            raise ValueError(f"modwsgi must be 'debian' or 'pypi', got {modwsgi!r}")
        self.root = Path(root).resolve()
        self.modwsgi: ModWsgi = modwsgi
        self.group = group
        self.processes = processes
        self.threads = threads
        self.daemon_options = dict(daemon_options or {})
        self.extra_config = extra_config
        self.before_config = before_config
        self.display_name = display_name
        self.preload = preload
        self.args = list(args)
        self.error_log_directive = error_log
        self.group_id = group_id or 1 + sum(
            1 for line in before_config.splitlines() if line.strip().startswith("WSGIDaemonProcess")
        )
        self.start_timeout = start_timeout
        if mpm not in MPMS:
            raise ValueError(f"mpm must be one of {MPMS}, got {mpm!r}")
        self.mpm = mpm
        self.extra_groups = tuple(extra_groups)
        self.as_root = os.geteuid() == 0
        self.conf_path = self.root / "httpd.conf"
        self.pid_file = self.root / "httpd.pid"
        self.error_log = self.root / "error.log"
        self.port = 0
        self._version = version
        self._hang = hang
        self._children = children
        self._public: Path | None = None
        self._public_is_temp = False
        self._parent: psutil.Process | None = None
        self._started: list[psutil.Process] = []

    # -- public paths --------------------------------------------------------

    @property
    def public(self) -> Path:
        """The directory the daemons read and connect in (app, control files, sockets)."""
        if self._public is None:
            raise LabError("the lab has not been set up yet")
        return self._public

    @property
    def app_dir(self) -> Path:
        return self.public / "app"

    @property
    def socket_prefix(self) -> Path:
        """WSGISocketPrefix: sockets are ``<prefix>.<parent pid>.<generation>.<N>.sock``."""
        return self.public / "run" / "wsgi"

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def parent_pid(self) -> int:
        if self._parent is None:
            raise LabError("Apache is not running")
        return self._parent.pid

    @property
    def argv0(self) -> str:
        """The Apache parent's argv[0]: display-name titles are cut to its length."""
        return self._command("start")[0][0]

    def title_of(self, group: str) -> str:
        """A group's daemons' title: ``(wsgi:GROUP)`` cut to the length of argv[0]."""
        return f"(wsgi:{group})"[: len(self.argv0)]

    @property
    def title(self) -> str:
        """This lab's group's title (see `title_of`)."""
        return self.title_of(self.group)

    # -- control files read by the app --------------------------------------

    def set_version(self, version: str) -> None:
        """Write version.txt; processes started from now on serve it at /version."""
        self._write(self.app_dir / "version.txt", version + "\n")

    def set_hang(self, hang: bool) -> None:
        """Make processes started from now on start (or not) a thread that never ends."""
        self._flag(self.app_dir / "hang", hang)

    def wait_loaded(self, pids: list[int], timeout: float = 20.0) -> None:
        """Wait until each of `pids` has imported the app (preloading may lag its start)."""
        deadline = Deadline(timeout)
        while not all((self.app_dir / "loaded" / str(pid)).exists() for pid in pids):
            if deadline.expired():
                msg = f"not every daemon of {pids} loaded the app\n{procs.tail(self.error_log)}"
                raise LabError(msg)
            time.sleep(0.05)

    def set_children(self, mode: str) -> None:
        """Processes that import the app from now on start two children: "plain" ones that
        outlive their daemon, "hook" ones the app ends as its daemon exits; "": none."""
        if mode:
            self._write(self.app_dir / "children", mode + "\n")
        else:
            (self.app_dir / "children").unlink(missing_ok=True)

    def set_crash(self, crash: bool) -> None:
        """Make processes that import the app from now on exit at once (os._exit(3))."""
        self._flag(self.app_dir / "crash", crash)

    def set_broken(self, broken: bool) -> None:
        """New imports raise ModuleNotFoundError (the app's own module fails to load)."""
        self._flag(self.app_dir / "broken", broken)

    def set_import_delay(self, seconds: float) -> None:
        """Processes that import the app from now on sleep `seconds` while importing."""
        if seconds > 0:
            self._write(self.app_dir / "import-delay", f"{seconds}\n")
        else:
            (self.app_dir / "import-delay").unlink(missing_ok=True)

    def set_healthy(self, healthy: bool) -> None:
        """/health answers 200 while healthy, 503 otherwise (takes effect at once)."""
        self._flag(self.app_dir / "unhealthy", not healthy)

    def _write(self, path: Path, text: str) -> None:
        path.write_text(text, encoding="utf-8")
        path.chmod(0o644)

    def _flag(self, path: Path, present: bool) -> None:
        if present:
            self._write(path, "")
        else:
            path.unlink(missing_ok=True)

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        """Write the configuration, start Apache and wait until the group serves.

        Raises LabUnavailable when apache2 or the chosen mod_wsgi is missing,
        LabError (with the error log's tail) when it does not come up within
        `start_timeout`; in that case everything started is stopped again.
        """
        if not os.access(APACHE2, os.X_OK):
            msg = f"{APACHE2} not found: apt-get install apache2 libapache2-mod-wsgi-py3"
            raise LabUnavailable(msg)
        if self.modwsgi == "debian" and not DEBIAN_MOD_WSGI.exists():
            msg = f"{DEBIAN_MOD_WSGI} not found: apt-get install libapache2-mod-wsgi-py3"
            raise LabUnavailable(msg)
        wsgi_config = pypi_module_config() if self.modwsgi == "pypi" else ""
        deadline = Deadline(self.start_timeout)
        self._setup_dirs()
        self.port = free_port()
        self._write_config(wsgi_config)
        try:
            self._launch(deadline)
            self._wait_ready(deadline)
        except BaseException:
            self.stop()
            raise

    def _setup_dirs(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.as_root or _others_can_traverse(self.root):
            self._public = self.root / "www"
            self._public.mkdir(exist_ok=True)
        else:
            # pytest's tmp_path is under /tmp/pytest-of-root (mode 700) and too
            # long for unix socket paths: use a short world-traversable directory.
            self._public = Path(tempfile.mkdtemp(prefix="wsgi-drain-lab-"))
            self._public_is_temp = True
        for directory in (self.public, self.app_dir, self.socket_prefix.parent):
            directory.mkdir(parents=True, exist_ok=True)
            directory.chmod(0o755)
        # Written by the daemons (www-data when root): a lab-only, throwaway directory.
        (self.app_dir / "loaded").mkdir(exist_ok=True)
        (self.app_dir / "loaded").chmod(0o777)
        app_source = (Path(__file__).parent / "app.py").read_text(encoding="utf-8")
        self._write(self.app_dir / "app.py", app_source)
        child_source = (Path(__file__).parent / "app_child.py").read_text(encoding="utf-8")
        self._write(self.app_dir / "app_child.py", child_source)
        self.set_version(self._version)
        self.set_hang(self._hang)
        self.set_children(self._children)
        self.set_crash(False)
        self.set_import_delay(0)
        self.set_healthy(True)
        if len(str(self.socket_prefix)) + 40 > 107:
            msg = f"WSGISocketPrefix {self.socket_prefix} is too long for unix socket paths"
            raise LabError(msg)

    def _wsgi_load_lines(self, module_config: str) -> str:
        if self.modwsgi == "debian":
            return f'LoadModule wsgi_module "{DEBIAN_MOD_WSGI}"'
        match = _WSGI_HOME.search(module_config)
        home = Path(match.group(1)) if match else None
        if (
            home is not None
            and self.as_root
            and (_unreadable_to_daemons(home) or _unreadable_to_daemons(_stdlib_home(home)))
        ):
            # The daemons initialise Python after switching to www-data; a home
            # (or a venv's base interpreter) under /root (pyenv) is unreadable
            # to them and every daemon segfaults in a crash loop.  Give them a
            # readable mirror of the standard library.
            mirror = _mirror_stdlib(_stdlib_home(home), self.public / "pyhome")
            return _WSGI_HOME.sub(f'WSGIPythonHome "{mirror}"', module_config).strip()
        return module_config.strip()

    def _write_config(self, module_config: str) -> None:
        """Write the configuration Apache starts with (one file here; a tree in layouts)."""
        self.conf_path.write_text(self._config(module_config), encoding="utf-8")

    def _module_lines(self) -> str:
        """LoadModule lines of the MPM and the base modules (not mod_wsgi)."""
        loaded = ((f"mpm_{self.mpm}_module", f"mod_mpm_{self.mpm}.so"), *_BASE_MODULES)
        return "\n".join(f'LoadModule {name} "{APACHE_MODULES / so}"' for name, so in loaded)

    def _config(self, module_config: str) -> str:
        user = f"User {RUN_USER}\nGroup {RUN_USER}\n" if self.as_root else ""
        return f"""\
# Written by lab.ApacheLab: a private instance, not the system's Apache.
ServerRoot "{self.root}"
ServerName {LOOPBACK}
PidFile "{self.pid_file}"
DefaultRuntimeDir "{self.socket_prefix.parent}"
ErrorLog "{self.error_log_directive or self.error_log}"
LogLevel warn wsgi:info
Listen {LOOPBACK}:{self.port}
{self._module_lines()}
{self._wsgi_load_lines(module_config)}
{user}
WSGISocketPrefix "{self.socket_prefix}"
{self._group_config()}"""

    def _group_config(self) -> str:
        """The daemon group, its script and the extra configuration (server context)."""
        return f"""\
# No Python in the MPM workers: every request goes to the daemon group.
WSGIRestrictEmbedded On
{self.before_config}
{self._daemon_directives()}
{self.extra_config}
"""

    def _daemon_directives(self) -> str:
        """WSGIDaemonProcess, its script and directory: valid in a server or a VirtualHost."""
        options = " ".join(f"{k}={v}" for k, v in self.daemon_options.items())
        script = self.app_dir / "app.py"
        preload = (
            f" process-group={self.group} application-group=%{{GLOBAL}}" if self.preload else ""
        )
        return f"""\
WSGIDaemonProcess {self.group} processes={self.processes} threads={self.threads} \
{"display-name=%{GROUP}" if self.display_name else ""} {options}
WSGIProcessGroup {self.group}
WSGIApplicationGroup %{{GLOBAL}}
WSGIScriptReloading Off
{self._extra_group_directives()}WSGIScriptAlias / "{script}"{preload}
<Directory "{self.app_dir}">
    Require all granted
</Directory>"""

    def _extra_group_directives(self) -> str:
        """Each extra group and its ``/NAME`` alias, before ``/``: the first alias matching wins."""
        options = " ".join(f"{k}={v}" for k, v in self.daemon_options.items())
        script = self.app_dir / "app.py"
        return "".join(
            f"WSGIDaemonProcess {name} processes={self.processes} threads={self.threads} "
            f"display-name=%{{GROUP}} {options}\n"
            f'WSGIScriptAlias /{name} "{script}" process-group={name} '
            "application-group=%{GLOBAL}\n"
            for name in self.extra_groups
        )

    def _env(self) -> dict[str, str]:
        # Every path in the configuration is absolute, so Debian's envvars
        # (APACHE_RUN_DIR, ...) are not needed; a small env keeps runs repeatable.
        return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}

    def _command(self, action: str) -> tuple[list[str], str | None]:
        """The argv that runs ``-k action`` and the executable, if not argv[0]."""
        return [
            str(APACHE2),
            "-f",
            str(self.conf_path),
            *self._start_args(action),
            "-k",
            action,
        ], None

    def _apache(self, action: str, timeout: float) -> subprocess.CompletedProcess[str]:
        argv, executable = self._command(action)
        try:
            return subprocess.run(
                argv,
                executable=executable,
                capture_output=True,
                text=True,
                env=self._env(),
                timeout=timeout,
                check=False,
                restore_signals=True,
                start_new_session=True,
                # preexec_fn is fork-unsafe with threads only if it takes locks;
                # _reset_signals only makes signal syscalls.  -k graceful/restart
                # only signal the running parent, whose dispositions were set at start.
                preexec_fn=_reset_signals if action == "start" else None,
            )
        except subprocess.TimeoutExpired as err:
            msg = f"apache2 -k {action} did not return within {timeout} s"
            raise LabError(msg) from err

    def _start_args(self, action: str) -> list[str]:
        # -C/-D given at start must be given again to -k stop/graceful, which
        # read the configuration too (to find the PidFile).
        return self.args

    def _launch(self, deadline: Deadline) -> None:
        # -k start daemonizes: the launcher exits, the real parent is
        # reparented to init (which here never reaps it: it ends a zombie).
        done = self._apache("start", max(deadline.remaining(), 1.0))
        if done.returncode != 0:
            msg = (
                f"apache2 -k start failed (exit {done.returncode}): "
                f"{(done.stderr or done.stdout).strip()}\n{procs.tail(self.error_log)}"
            )
            raise LabError(msg)
        while True:
            parent = self._read_parent()
            if parent is not None:
                self._parent = parent
                self._started.append(parent)
                return
            if deadline.expired():
                msg = f"no Apache parent in {self.pid_file}\n{procs.tail(self.error_log)}"
                raise LabError(msg)
            time.sleep(0.02)

    def _read_parent(self) -> psutil.Process | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return procs.process(pid)

    def _wait_ready(self, deadline: Deadline) -> None:
        if not wait_accepting(LOOPBACK, self.port, deadline):
            msg = f"Apache does not accept on {self.url}\n{procs.tail(self.error_log)}"
            raise LabError(msg)
        self.wait_daemons(deadline)
        for name in self.extra_groups:
            while len(self.group_pids(name)) < self.processes:
                if deadline.expired():
                    tail = procs.tail(self.error_log)
                    msg = f"group {name!r} has not {self.processes} daemons\n{tail}"
                    raise LabError(msg)
                time.sleep(0.05)
        # A daemon whose Python failed to initialise exists for a moment before
        # it crashes: only an answer from one proves the group serves.
        while True:
            pid = self._probe()
            if pid is not None and pid in self.daemon_pids():
                return
            if deadline.expired():
                msg = f"{self.url}/ does not answer from a daemon\n{procs.tail(self.error_log)}"
                raise LabError(msg)
            time.sleep(0.05)

    def _probe(self) -> int | None:
        conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=2.0)
        try:
            conn.request("GET", "/")
            resp = conn.getresponse()
            resp.read()
            pid = resp.getheader("X-Pid")
            return int(pid) if resp.status == 200 and pid else None
        except (OSError, http.client.HTTPException, ValueError):
            return None
        finally:
            conn.close()

    # -- processes -----------------------------------------------------------

    def children(self) -> list[psutil.Process]:
        """Live children of the Apache parent: the group's daemons and the MPM workers."""
        if self._parent is None or procs.is_gone(self._parent):
            return []
        try:
            kids = self._parent.children()
        except psutil.NoSuchProcess:
            return []
        return [k for k in kids if not procs.is_gone(k)]

    def daemon_pids(self) -> list[int]:
        """Pids of the group's live daemon processes.

        Children titled ``(wsgi:GROUP)``; without display-name, the children
        holding the group's socket (number `group_id` of this lab's start).
        """
        if not self.display_name:
            return self.socket_holders().get(self.group_id, [])
        return sorted(k.pid for k in self.children() if procs.title(k) == self.title)

    def socket_holders(self) -> dict[int, list[int]]:
        """Group id -> pids of the children holding that group's socket, as the kernel shows.

        Only the sockets the Apache parent holds open now (earlier generations'
        files linger on disk).  Read through psutil, independently of
        wsgi-drain's own discovery, so tests can check what it signalled.
        """
        if self._parent is None or procs.is_gone(self._parent):
            return {}
        prefix = f"{self.socket_prefix}.{self._parent.pid}."
        held = {c.laddr for c in procs.unix_sockets(self._parent) if c.laddr.startswith(prefix)}
        holders: dict[int, list[int]] = {}
        for kid in self.children():
            for path in {c.laddr for c in procs.unix_sockets(kid)} & held:
                group_id = int(path[: -len(".sock")].rsplit(".", 1)[1])
                holders.setdefault(group_id, []).append(kid.pid)
        return {gid: sorted(pids) for gid, pids in sorted(holders.items())}

    def group_pids(self, group: str) -> list[int]:
        """Pids of the live daemons titled ``(wsgi:GROUP)``: this lab's group or an extra one."""
        return sorted(k.pid for k in self.children() if procs.title(k) == self.title_of(group))

    def wait_daemons(self, deadline: Deadline, count: int | None = None) -> list[int]:
        """Wait until `count` (default: processes) daemons exist; their pids, or LabError."""
        want = self.processes if count is None else count
        while True:
            pids = self.daemon_pids()
            if len(pids) == want:
                return pids
            if deadline.expired():
                msg = (
                    f"{len(pids)} daemon processes titled {self.title!r}, want {want}\n"
                    f"{procs.tail(self.error_log)}"
                )
                raise LabError(msg)
            time.sleep(0.05)

    def apachectl_graceful(self, timeout: float = 10.0) -> None:
        """``apache2 -f CONF -k graceful``: SIGUSR1 to the parent, as `apachectl graceful`."""
        self._control("graceful", timeout)

    def apachectl_restart(self, timeout: float = 10.0) -> None:
        """``apache2 -f CONF -k restart``: SIGHUP to the parent, as `apachectl restart`."""
        self._control("restart", timeout)

    def _control(self, action: str, timeout: float) -> None:
        done = self._apache(action, timeout)
        if done.returncode != 0:
            msg = f"apache2 -k {action} failed (exit {done.returncode}): {done.stderr.strip()}"
            raise LabError(msg)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop gracefully (``-k stop``), then SIGKILL whatever this lab started is left.

        Bounded by `timeout` plus a few seconds for the SIGKILL step.  Every
        process seen as a child of our parent is killed too, so no daemon or
        worker outlives the lab.  Raises LabError if one survives SIGKILL.
        """
        seen = list(self._started)
        if self._parent is not None:
            seen.extend(self.children())
        deadline = Deadline(timeout)
        if self._parent is not None and not procs.is_gone(self._parent):
            with contextlib.suppress(LabError):  # a failed -k stop ends in SIGKILL below
                self._apache("stop", max(deadline.remaining(), 1.0))
            procs.wait_gone([self._parent], deadline)
        alive = procs.kill(seen)
        self._parent = None
        self._started = []
        if self._public_is_temp and self._public is not None:
            shutil.rmtree(self._public, ignore_errors=True)
            self._public_is_temp = False
        if alive:
            msg = f"processes survived SIGKILL: {[p.pid for p in alive]}"
            raise LabError(msg)
