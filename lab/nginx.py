"""nginx (open source) on loopback in front of the lab's Apache hosts.

The app servers are in their own file, ``<root>/upstreams/app.conf``, as
deployments that let tools edit one upstream keep them; the nginx router
edits that file.  ``/slow`` goes to the first server only (its own upstream,
not in that file), so a test can keep a long request on the host it restarts.
nginx runs in the foreground (``daemon off``) as our child, with its pid file,
error log and temporary directories under ``root``; reloads are SIGHUP to it.
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
from wsgi_drain.deadline import Deadline


class NginxLab(Service):
    """nginx on 127.0.0.1:<free port> balancing `servers` (name, host, port) in upstream `app`."""

    def __init__(
        self,
        root: Path,
        servers: Sequence[tuple[str, str, int]],
        *,
        start_timeout: float = 10.0,
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
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int:
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
        temp = self.root / "tmp"
        return f"""\
# Written by lab.NginxLab.
daemon off;
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
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    keepalive_timeout 10s;

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
        self.upstream_file.write_text(self._upstream(), encoding="utf-8")
        self.conf_path.write_text(self._config(), encoding="utf-8")
        with self.error_log.open("ab") as log:
            self._proc = subprocess.Popen(
                [
                    binary,
                    "-p",
                    str(self.root),
                    "-c",
                    str(self.conf_path),
                    "-e",
                    str(self.error_log),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                restore_signals=True,
                start_new_session=True,
            )
        try:
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
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5.0)
