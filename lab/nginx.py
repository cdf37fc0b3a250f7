"""nginx (open source) on loopback in front of the lab's Apache hosts.

The app servers are in their own file, ``<root>/upstreams/app.conf``, as
deployments that let tools edit one upstream keep them; the nginx router
edits that file.  ``/slow`` goes to the first server only (its own upstream,
not in that file), so a test can keep a long request on the host it restarts.
nginx runs in the foreground (``daemon off``) as our child, with its pid file,
error log and temporary directories under ``root``; reloads are SIGHUP to it.
``debian_unit=True`` starts it instead the way Debian's nginx.service does
(``nginx -g 'daemon on; master_process on;'``: it forks, the master is found
by its pid file) and lays the upstream file out as Debian's packages do: the
included ``upstreams/app.conf`` is a link to ``../sites-available/app.conf``,
whose ``upstream`` has its brace on the next line, weights and comments.
``proxy_next_upstream off``: nginx must not hide a failed request by retrying
it on another server, so the load loop sees every failure.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from lab import procs
from lab.errors import LabError, LabUnavailable
from lab.ports import LOOPBACK, accepts, free_port
from lab.service import Service
from wsgi_drain import procfs
from wsgi_drain.deadline import Deadline


def temp_paths(temp: Path) -> str:
    """http{}'s temporary directories under `temp`: nginx's defaults are under its
    compiled prefix (/var/lib/nginx), which a test's unprivileged nginx may not write."""
    return "".join(
        f"    {kind}_temp_path {temp}/{name};\n"
        for kind, name in (
            ("client_body", "body"), ("proxy", "proxy"), ("fastcgi", "fastcgi"),
            ("uwsgi", "uwsgi"), ("scgi", "scgi"),
        )
    )  # fmt: skip


class NginxLab(Service):
    """nginx on 127.0.0.1:<free port> balancing `servers` (name, host, port) in upstream `app`."""

    def __init__(
        self,
        root: Path,
        servers: Sequence[tuple[str, str, int]],
        *,
        start_timeout: float = 10.0,
        debian_unit: bool = False,
    ) -> None:
        if not servers:
            raise ValueError("NginxLab needs at least one server")
        self.root = Path(root).resolve()
        self.servers = list(servers)
        self.start_timeout = start_timeout
        self.conf_path = self.root / "nginx.conf"
        self.upstream_file = self.root / "upstreams" / "app.conf"
        self.conf_d = self.root / "conf.d"
        self.pid_file = self.root / "nginx.pid"
        self.error_log = self.root / "error.log"
        self.debian_unit = debian_unit
        # The file the link points to, with debian_unit (else the file itself).
        self.real_upstream_file = (
            self.root / "sites-available" / "app.conf" if debian_unit else self.upstream_file
        )
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._master: int | None = None  # debian_unit: the forked master, from its pid file

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int:
        if self._master is not None:
            return self._master
        if self._proc is None:
            raise LabError("nginx is not running")
        return self._proc.pid

    def server_address(self, name: str) -> str:
        """The `host:port` of server `name` as the upstream file writes it."""
        for n, host, port in self.servers:
            if n == name:
                return f"{host}:{port}"
        raise LabError(f"no server {name!r} in {self.servers}")

    def _upstream(self) -> str:
        if self.debian_unit:
            weighted = "\n".join(
                f"    server {host}:{port} weight={3 if i == 0 else 1} max_fails=0; # {name}"
                for i, (name, host, port) in enumerate(self.servers)
            )
            return f"""\
# /etc/nginx/sites-available/app.conf (written by lab.NginxLab, Debian style)
upstream app
{{
    # the app servers; wsgi-drain marks one down and back
{weighted}
    keepalive 16;
}}
"""
        lines = "\n".join(
            f"    server {host}:{port} max_fails=0;  # host {name}"
            for name, host, port in self.servers
        )
        return f"""\
# This host's app servers (written by lab.NginxLab); wsgi-drain's
# nginx router marks one `down` and back.
upstream app {{
{lines}
    keepalive 16;
}}
"""

    def _config(self) -> str:
        first = self.servers[0]
        # With debian_unit, `-g 'daemon on; ...'` on the command line decides it.
        daemon = "" if self.debian_unit else "daemon off;"
        temp = self.root / "tmp"
        return f"""\
# Written by lab.NginxLab.
{daemon}
worker_processes 2;
# Old workers finish their requests after a reload, for at most this long.
worker_shutdown_timeout 60s;
pid {self.pid_file};
error_log {self.error_log} info;

events {{
    worker_connections 512;
}}

http {{
    access_log off;
{temp_paths(temp)}    keepalive_timeout 10s;

    include {self.upstream_file};
    include {self.conf_d}/*.conf;

    upstream slow_pinned {{
        server {first[1]}:{first[2]};
    }}

    server {{
        listen {LOOPBACK}:{self.port};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_read_timeout 120s;
        proxy_next_upstream off;
        location /slow {{
            proxy_pass http://slow_pinned;
        }}
        location / {{
            proxy_pass http://app;
        }}
    }}
}}
"""

    def start(self) -> None:
        """Start nginx and wait until it answers; LabUnavailable without nginx."""
        binary = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/bin")
        if binary is None:
            raise LabUnavailable("nginx not found: apt-get install nginx")
        deadline = Deadline(self.start_timeout)
        for directory in (self.root, self.upstream_file.parent, self.conf_d, self.root / "tmp"):
            directory.mkdir(parents=True, exist_ok=True)
        # Workers run as an unprivileged user when we are root: they write
        # only temporary files, here.
        os.chmod(self.root / "tmp", 0o1777)
        self.port = free_port()
        self.real_upstream_file.parent.mkdir(parents=True, exist_ok=True)
        self.real_upstream_file.write_text(self._upstream(), encoding="utf-8")
        if self.debian_unit:
            self.upstream_file.symlink_to(Path("..") / "sites-available" / "app.conf")
        self.conf_path.write_text(self._config(), encoding="utf-8")
        argv = [binary, "-p", str(self.root), "-c", str(self.conf_path), "-e", str(self.error_log)]
        if self.debian_unit:
            argv += ["-g", "daemon on; master_process on;"]  # Debian's nginx.service
        with self.error_log.open("ab") as log:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                restore_signals=True,
                start_new_session=True,
            )
        try:
            if self.debian_unit:
                # The launcher forks the master and exits; the master is ours
                # from its pid file on (we started it).
                self._proc.wait(self.start_timeout)
                if self._proc.returncode != 0:
                    msg = f"nginx exited with {self._proc.returncode}\n{procs.tail(self.error_log)}"
                    raise LabError(msg)
                while not (self.pid_file.exists() and accepts(LOOPBACK, self.port)):
                    if deadline.expired():
                        msg = f"nginx not ready in {self.start_timeout} s\n"
                        raise LabError(msg + procs.tail(self.error_log))
                    time.sleep(0.05)
                self._master = int(self.pid_file.read_text().split()[0])
                return
            while not (self.pid_file.exists() and accepts(LOOPBACK, self.port)):
                if self._proc.poll() is not None:
                    msg = f"nginx exited with {self._proc.returncode}\n{procs.tail(self.error_log)}"
                    raise LabError(msg)
                if deadline.expired():
                    msg = f"nginx not ready in {self.start_timeout} s\n{procs.tail(self.error_log)}"
                    raise LabError(msg)
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise

    def workers(self) -> list[int]:
        """Pids of the master's children (workers, including old ones still shutting down)."""
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        try:
            return [int(p) for p in children.read_text().split()]
        except OSError:
            return []

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (fast stop) our nginx master, SIGKILL it after `timeout`, reap it."""
        master, self._master = self._master, None
        if master is not None:
            self._stop_daemon(master, timeout)
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5.0)

    def _stop_daemon(self, master: int, timeout: float) -> None:
        """Stop the master started with debian_unit (not our child: it forked away)."""
        try:
            fd = os.pidfd_open(master)  # the pid we started, read from our own pid file
        except ProcessLookupError:
            return
        try:
            signal.pidfd_send_signal(fd, signal.SIGTERM)
            deadline = Deadline(timeout)
            while not procfs.gone(master) and not deadline.expired():
                time.sleep(0.05)
            if not procfs.gone(master):
                signal.pidfd_send_signal(fd, signal.SIGKILL)
        except ProcessLookupError:
            pass
        finally:
            os.close(fd)
