"""nginx (open source, no paid API): mark this host's `server` line `down` and reload.

Spec: ``nginx:[pid=PIDFILE:]UPSTREAM_FILE:SERVER`` where SERVER is the address
exactly as the file's ``server`` line writes it (``10.0.0.11:8080``,
``[2001:db8::11]:8080``, ``app1.example:8080``); it ends the spec, so the file
path may contain ':'.  PIDFILE is the nginx master's (default /run/nginx.pid).

divert / restore:
1. the master is proven from its pid file: its title is "nginx: master
   process ..." and its executable is nginx;
2. the one ``server SERVER ...;`` line gets `` down`` before its ';' (restore
   removes exactly that word), the file rewritten atomically (same directory,
   same mode and owner, fsync, rename): comments, order, other servers and
   weights untouched, so divert then restore is byte-identical;
3. ``nginx -t`` with the master's own command line; a failure puts the
   original bytes back and raises (nothing reloaded, nothing signalled);
4. SIGHUP to the master through a pidfd; the reload counts once new workers
   have started.
The host is drained when every worker that existed before the reload has
exited: old workers finish their in-flight requests first, bounded by nginx's
``worker_shutdown_timeout``.  ``state().sessions`` is the number of those old
workers still running.
"""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from wsgi_drain.atomic import write_atomic
from wsgi_drain.deadline import Deadline
from wsgi_drain.errors import ConfigError, RouterError
from wsgi_drain.routers.protocol import RouterState
from wsgi_drain.routers.spec import leading_option

DEFAULT_PIDFILE = Path("/run/nginx.pid")
TEST_TIMEOUT = 30.0
RELOAD_WAIT = 10.0
_POLL = 0.05

_SPEC = re.compile(r"^(?P<file>/.+):(?P<server>(?:\[[0-9A-Fa-f:.]+\]|[^:\s\[\]/]+):\d{1,5})$")
_UPSTREAM = re.compile(r"^\s*upstream\s+(?P<name>\S+)\s*\{")
_DOWN = re.compile(r"\s+down(?=[\s;])")


@dataclass(frozen=True)
class NginxTarget:
    upstream_file: Path
    server: str
    pid_file: Path = DEFAULT_PIDFILE


def parse_target(spec: str) -> NginxTarget:
    """``[pid=PIDFILE:]FILE:SERVER`` -> NginxTarget; ConfigError with an example otherwise."""
    pid_file = DEFAULT_PIDFILE
    wrong_pid = (
        f"nginx router {spec!r}: pid= needs an absolute pid file path, e.g. "
        "nginx:pid=/run/nginx.pid:/etc/nginx/upstreams/myapp.conf:10.0.0.11:8080"
    )
    value, rest = leading_option(spec, "pid", wrong_pid)
    if value is not None:
        if not value.startswith("/"):
            raise ConfigError(wrong_pid)
        pid_file = Path(value)
    match = _SPEC.match(rest)
    if match is None:
        raise ConfigError(
            f"nginx router {spec!r}: expected [pid=PIDFILE:]UPSTREAM_FILE:HOST:PORT with an "
            "absolute file path, e.g. nginx:/etc/nginx/upstreams/myapp.conf:10.0.0.11:8080 "
            "(IPv6: [2001:db8::11]:8080)"
        )
    return NginxTarget(Path(match["file"]), match["server"], pid_file)


@dataclass(frozen=True)
class ServerLine:
    """The server's line in the upstream file, and its upstream's other servers."""

    index: int
    down: bool
    peers_up: int


def find_server(text: str, server: str, where: str) -> ServerLine:
    """Locate the single-line ``server SERVER ...;`` directive; RouterError if not exactly one."""
    found: list[tuple[int, str | None, bool]] = []
    in_rotation: dict[str | None, int] = {}
    upstream: str | None = None
    for index, raw in enumerate(text.split("\n")):
        line = raw.split("#", 1)[0]
        head = _UPSTREAM.match(line)
        if head:
            upstream = head["name"]
            continue
        if line.strip().startswith("}"):
            upstream = None
            continue
        words = line.replace(";", " ; ").split()
        if len(words) < 2 or words[0] != "server":
            continue
        if ";" not in words:
            raise RouterError(
                where,
                f"line {index + 1} (a server directive over several lines) is not supported: "
                "write each server on one line",
            )
        flags = words[2 : words.index(";")]
        down = "down" in flags
        if words[1] == server:
            found.append((index, upstream, down))
        elif not down and "backup" not in flags:
            in_rotation[upstream] = in_rotation.get(upstream, 0) + 1
    if len(found) != 1:
        what = "no" if not found else f"{len(found)}"
        raise RouterError(
            where,
            f"{what} `server {server} ...;` line in the file: name the address exactly as "
            "the upstream writes it, once",
        )
    index, upstream, down = found[0]
    return ServerLine(index, down, in_rotation.get(upstream, 0))


def set_down(text: str, index: int, down: bool) -> str:
    """`text` with line `index` marked down (before its ';') or with that mark removed."""
    lines = text.split("\n")
    line = lines[index]
    code, hash_, comment = line.partition("#")
    if down:
        at = code.index(";")
        code = code[:at] + " down" + code[at:]
    else:
        code = _DOWN.sub("", code, count=1)
    lines[index] = code + hash_ + comment
    return "\n".join(lines)


class NginxRouter:
    """The Router protocol over one `server` line of an nginx upstream file."""

    def __init__(self, target: NginxTarget) -> None:
        self.target = target
        self._old_workers: set[int] = set()

    @property
    def name(self) -> str:
        return f"nginx {self.target.upstream_file} {self.target.server}"

    def __repr__(self) -> str:
        return f"NginxRouter({self.target!r})"

    # -- the file ---------------------------------------------------------

    def _read(self) -> bytes:
        try:
            with open(self.target.upstream_file, "rb") as f:
                return f.read()
        except OSError as err:
            raise RouterError(self.name, f"cannot read the upstream file: {err.strerror}") from err

    def _line(self, data: bytes) -> ServerLine:
        return find_server(data.decode("utf-8", "surrogateescape"), self.target.server, self.name)

    def _write(self, data: bytes) -> None:
        """Replace the file atomically, keeping its mode and owner."""
        path = self.target.upstream_file
        info = os.stat(path)
        write_atomic(path, data, stat.S_IMODE(info.st_mode), owner=(info.st_uid, info.st_gid))

    # -- the master -------------------------------------------------------

    def _master(self) -> tuple[int, list[str]]:
        """The master's pid and the command line to run `nginx -t` with, proven."""
        try:
            pid = int(self.target.pid_file.read_text().strip())
            title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
            exe = os.readlink(f"/proc/{pid}/exe")
        except (OSError, ValueError) as err:
            raise RouterError(
                self.name,
                f"no running nginx master from {self.target.pid_file} ({err}); is nginx "
                "running, and is that its pid file (pid=PIDFILE: in the router spec)?",
            ) from err
        prefix = "nginx: master process "
        if not title.startswith(prefix) or not Path(exe).name.startswith("nginx"):
            raise RouterError(
                self.name, f"pid {pid} from {self.target.pid_file} is not an nginx master"
            )
        # nginx keeps its original arguments in its title after the prefix;
        # `-t` checks the configuration that master would load.
        args = [a for a in title[len(prefix) :].split() if a not in ("-t", "-T", "-q")][1:]
        return pid, [exe, *args, "-t", "-q"]

    def _workers(self, master: int) -> set[int]:
        try:
            text = Path(f"/proc/{master}/task/{master}/children").read_text()
        except OSError:
            return set()
        return {int(p) for p in text.split()}

    def _reload(self, original: bytes, changed: bytes) -> None:
        master, test = self._master()
        self._write(changed)
        try:
            done = subprocess.run(
                test, capture_output=True, text=True, timeout=TEST_TIMEOUT, check=False
            )
            failed = done.returncode != 0
            why = (done.stderr.strip().splitlines() or ["no message"])[-1]
        except (OSError, subprocess.TimeoutExpired) as err:
            failed, why = True, str(err)
        if failed:
            self._write(original)
            raise RouterError(
                self.name,
                f"`nginx -t` failed after the edit, so the file was put back byte for byte and "
                f"nginx was not reloaded: {why}",
            )
        before = self._workers(master)
        try:
            fd = os.pidfd_open(master)
        except OSError as err:
            self._write(original)
            raise RouterError(self.name, f"nginx master {master} is gone: {err}") from err
        try:
            signal.pidfd_send_signal(fd, signal.SIGHUP)
        finally:
            os.close(fd)
        deadline = Deadline(RELOAD_WAIT)
        while not (self._workers(master) - before):
            if deadline.expired():
                raise RouterError(
                    self.name,
                    f"nginx did not start new workers within {RELOAD_WAIT:g} s of the reload; "
                    "see its error log",
                    applied=None,
                )
            time.sleep(_POLL)
        self._old_workers = before

    # -- Router -----------------------------------------------------------

    def state(self) -> RouterState:
        line = self._line(self._read())
        alive = {pid for pid in self._old_workers if os.path.exists(f"/proc/{pid}")}
        self._old_workers = alive
        admin = "drain" if line.down else "ready"
        return RouterState(
            name=self.name,
            admin=admin,
            status="DOWN (marked)" if line.down else "UP",
            sessions=len(alive),
            queued=0,
            peers_up=line.peers_up,
        )

    def _set(self, down: bool) -> None:
        original = self._read()
        line = self._line(original)
        if line.down == down:
            return
        text = original.decode("utf-8", "surrogateescape")
        changed = set_down(text, line.index, down).encode("utf-8", "surrogateescape")
        self._reload(original, changed)

    def divert(self) -> None:
        self._set(True)

    def restore(self) -> None:
        self._set(False)

    def wait_drained(self, deadline: Deadline) -> RouterState:
        """Until every worker from before our reload has exited, or the deadline."""
        while True:
            state = self.state()
            if state.sessions == 0 or deadline.expired():
                return state
            time.sleep(min(_POLL, max(0.0, deadline.remaining())))
