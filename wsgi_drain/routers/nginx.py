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

import contextlib
import fcntl
import hashlib
import os
import re
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from wsgi_drain.atomic import write_atomic
from wsgi_drain.deadline import Deadline
from wsgi_drain.errors import ConfigError, RouterError
from wsgi_drain.routers.protocol import RouterState
from wsgi_drain.routers.spec import LeadingOption

DEFAULT_PIDFILE = Path("/run/nginx.pid")
TEST_TIMEOUT = 30.0
RELOAD_WAIT = 10.0
_POLL = 0.05

_SPEC = re.compile(r"^(?P<file>/.+):(?P<server>(?:\[[0-9A-Fa-f:.]+\]|[^:\s\[\]/]+):\d{1,5})$")
# wsgi-drain's own `down` carries this comment right after its ';' (nginx has no
# MAINT: an unmarked `down` is the operator's).  MARK_BREAK when code follows on
# the line, so the comment cannot swallow it.
MARK = " # wsgi-drain"
MARK_BREAK = " # wsgi-drain (line break added)\n"


@dataclass(frozen=True)
class NginxTarget:
    upstream_file: Path
    server: str
    pid_file: Path = DEFAULT_PIDFILE


def _absolute_path(text: str) -> Path | None:
    return Path(text) if text.startswith("/") else None


# `pid=PIDFILE:` before the upstream file: the master to reload, when not /run/nginx.pid.
PID_FILE = LeadingOption(
    "nginx", "pid", _absolute_path, DEFAULT_PIDFILE, "an absolute pid file path"
)


def parse_target(spec: str) -> NginxTarget:
    """``[pid=PIDFILE:]FILE:SERVER`` -> NginxTarget; ConfigError with an example otherwise."""
    pid_file, rest = PID_FILE.split(
        spec, "nginx:pid=/run/nginx.pid:/etc/nginx/upstreams/myapp.conf:10.0.0.11:8080"
    )
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
    """Our `server` directive in the upstream file, and its upstream's other servers.

    `start`/`semi` are the offsets of the directive's first byte and of its ';'
    (the text is decoded as latin-1, so offsets are byte offsets); `down` whether
    it carries `down`, `ours` whether that `down` is wsgi-drain's (marked).
    """

    start: int
    semi: int
    down: bool
    ours: bool
    peers_up: int
    peers_out: tuple[str, ...]


@dataclass(frozen=True)
class _Directive:
    words: tuple[str, ...]
    start: int
    semi: int
    block: str | None  # the enclosing block's name ("upstream"), None at top level


def _tokens(text: str) -> Iterator[tuple[str, int, bool]]:
    """nginx's tokens as (value, offset, is_word): words (quotes and \\ escapes
    resolved), ';', '{', '}'; a '#' starting a token comments to end of line."""
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif c in ";{}":
            yield c, i, False
            i += 1
        else:
            start, word = i, []
            while i < n and not text[i].isspace() and text[i] not in ";{}":
                c = text[i]
                if c in "\"'":
                    i += 1
                    while i < n and text[i] != c:
                        if text[i] == "\\" and i + 1 < n:
                            i += 1
                        word.append(text[i])
                        i += 1
                    i += 1
                    continue
                if c == "\\" and i + 1 < n:
                    i += 1
                word.append(text[i])
                i += 1
            yield "".join(word), start, True


def _directives(text: str, where: str) -> list[_Directive]:
    found: list[_Directive] = []
    blocks: list[str] = []
    words: list[str] = []
    start = 0
    for value, at, is_word in _tokens(text):
        if is_word:
            if not words:
                start = at
            words.append(value)
        elif value == ";":
            if words:
                found.append(_Directive(tuple(words), start, at, blocks[-1] if blocks else None))
            words = []
        elif value == "{":
            blocks.append(words[0] if words else "")
            words = []
        else:
            if not blocks:
                raise RouterError(where, f"unbalanced '}}' at byte {at} of the upstream file")
            blocks.pop()
            words = []
    return found


def _mark_at(text: str, semi: int) -> str | None:
    """Our mark right after the ';' at `semi`, if there is one."""
    rest = text[semi + 1 : semi + 1 + len(MARK_BREAK)]
    for mark in (MARK_BREAK, MARK):
        if rest.startswith(mark):
            return mark
    return None


def find_server(text: str, server: str, where: str) -> ServerLine:
    """Locate the one ``server SERVER ...;`` directive of an upstream block;
    RouterError if not exactly one.  `text` is the file decoded as latin-1."""
    servers = [
        d for d in _directives(text, where) if d.block == "upstream" and d.words[0] == "server"
    ]
    ours = [d for d in servers if len(d.words) > 1 and d.words[1] == server]
    if len(ours) != 1:
        what = "no" if not ours else f"{len(ours)}"
        raise RouterError(
            where,
            f"{what} `server {server} ...;` line in an upstream block of the file: name the "
            "address exactly as the upstream writes it, once",
        )
    me = ours[0]
    # The upstream's other servers: those between the same braces.
    up, out = 0, []
    for d in servers:
        if d is me or len(d.words) < 2 or not _same_block(text, d, me):
            continue
        flags = d.words[2:]
        if "down" in flags:
            out.append(f"{d.words[1]} ({'drain' if _mark_at(text, d.semi) else 'maint'})")
        elif "backup" in flags:
            out.append(f"{d.words[1]} (backup)")
        else:
            up += 1
    down = "down" in me.words[2:]
    return ServerLine(
        me.start, me.semi, down, down and _mark_at(text, me.semi) is not None, up, tuple(out)
    )


def _same_block(text: str, a: _Directive, b: _Directive) -> bool:
    """No upstream block boundary between the two directives."""
    lo, hi = sorted((a.start, b.start))
    return not any(v in "{}" for v, _, w in _tokens(text[lo:hi]) if not w)


def set_down(text: str, line: ServerLine, down: bool) -> str:
    """`text` with our directive marked down by wsgi-drain, or with exactly that mark removed."""
    semi = line.semi
    if down:
        tail = text[semi + 1 :].split("\n", 1)[0]
        mark = MARK if not tail.strip() or tail.lstrip().startswith("#") else MARK_BREAK
        return text[:semi] + " down;" + mark + text[semi + 1 :]
    found = _mark_at(text, semi)
    if found is None or not text[:semi].endswith(" down"):
        return text
    return text[: semi - len(" down")] + ";" + text[semi + 1 + len(found) :]


def master_exe(link: str, where: str) -> str:
    """The master's executable from /proc/PID/exe; after a package upgrade the
    link reads "PATH (deleted)": PATH is the new nginx if it exists."""
    suffix = " (deleted)"
    if not link.endswith(suffix):
        return link
    path = link[: -len(suffix)]
    if os.path.exists(path):
        return path
    raise RouterError(
        where,
        f"the nginx master's executable {path} was deleted (a package upgrade?) and "
        "nothing is there now: restart nginx, then run wsgi-drain again",
    )


# nginx's options that take a value (nginx -h); -g's value holds blanks.
_VALUED = ("-s", "-p", "-e", "-c", "-g")
_FLAGS = ("-?", "-h", "-v", "-V", "-t", "-T", "-q")


def master_args(rest: str) -> list[str]:
    """The master's options from its title after "nginx: master process ".

    nginx overwrites its argv with the title (/proc/PID/cmdline is that one
    string, the NUL boundaries lost), so `-g 'daemon on; master_process on;'`
    reads `-g daemon on; master_process on;`: a -g value runs on to the next
    word that is an nginx option after a word ending in ';'.  -t/-T/-q dropped.
    """
    words = rest.split()[1:]  # [0] is the program
    args: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if word == "-g":
            value: list[str] = []
            while i < len(words) and not (
                value and value[-1].endswith(";") and words[i] in _VALUED + _FLAGS
            ):
                value.append(words[i])
                i += 1
            args += ["-g", " ".join(value)]
        elif word in _VALUED and i < len(words):
            args += [word, words[i]]
            i += 1
        elif word not in ("-t", "-T", "-q"):
            args.append(word)
    return args


@contextlib.contextmanager
def file_lock(path: Path, state_dir: Path | None = None) -> Iterator[None]:
    """flock keyed by the upstream file's real path, under the state directory, so
    two runs on different servers of one file take turns (read, nginx -t, reload).

    `state_dir` is the run's (--state-dir); without one, $WSGI_DRAIN_STATE_DIR or
    the default.  The directory gets the state directory's checks (ours, 0700).
    """
    from wsgi_drain.errors import ConfigError
    from wsgi_drain.state import DEFAULT_STATE_DIR, ensure_dir

    real = os.path.realpath(path)
    base = state_dir or Path(os.environ.get("WSGI_DRAIN_STATE_DIR") or DEFAULT_STATE_DIR)
    name = "nginx-" + hashlib.sha256(real.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    try:
        ensure_dir(base)
        fd = os.open(
            base / f"{name}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600
        )
    except ConfigError as err:
        raise RouterError(f"nginx {path}", f"cannot take the file lock: {err}") from err
    except OSError as err:
        raise RouterError(
            f"nginx {path}", f"cannot take the file lock in {base}: {err.strerror}"
        ) from err
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class NginxRouter:
    """The Router protocol over one `server` line of an nginx upstream file."""

    def __init__(self, target: NginxTarget, state_dir: Path | None = None) -> None:
        self.target = target
        self.state_dir = state_dir
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
        return find_server(data.decode("latin-1"), self.target.server, self.name)

    def _write(self, data: bytes) -> None:
        """Replace the file atomically, keeping its mode and owner; through a
        symlink (sites-enabled/X -> ../sites-available/X) the link's real target
        is replaced in its own directory, so the link stays a link."""
        path = Path(os.path.realpath(self.target.upstream_file))
        info = os.stat(path)
        write_atomic(path, data, stat.S_IMODE(info.st_mode), owner=(info.st_uid, info.st_gid))

    # -- the master -------------------------------------------------------

    def _master(self) -> tuple[int, list[str]]:
        """The master's pid and the command line to run `nginx -t` with, proven."""
        try:
            pid = int(self.target.pid_file.read_text().strip())
            title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
            exe = master_exe(os.readlink(f"/proc/{pid}/exe"), self.name)
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
        # `-t` checks the configuration that master would load.
        return pid, [exe, *master_args(title[len(prefix) :]), "-t", "-q"]

    def _workers(self, master: int) -> set[int]:
        try:
            text = Path(f"/proc/{master}/task/{master}/children").read_text()
        except OSError:
            return set()
        return {int(p) for p in text.split()}

    def _reload(self, down: bool) -> None:
        """Under the file's lock: read, edit our directive, `nginx -t`, reload."""
        with file_lock(self.target.upstream_file, self.state_dir):
            original = self._read()
            line = self._line(original)
            if down and line.down:
                return  # out of rotation already (ours, or the operator's)
            if not down and not line.ours:
                return  # in rotation, or an operator's `down`: never ours to remove
            # The master is proven before the file is touched: an edit no
            # reload follows would wait there for the next one, reported as
            # not applied.
            master, test = self._master()
            text = original.decode("latin-1")
            self._write(set_down(text, line, down).encode("latin-1"))
            self._reloaded(down, master, test)

    def _undo(self, down: bool) -> None:
        """Undo only our own change, on the file as it is now."""
        text = self._read().decode("latin-1")
        line = find_server(text, self.target.server, self.name)
        if down and line.ours:
            self._write(set_down(text, line, False).encode("latin-1"))
        elif not down and not line.down:
            self._write(set_down(text, line, True).encode("latin-1"))

    def _reloaded(self, down: bool, master: int, test: list[str]) -> None:
        """`nginx -t` (`test`, the master's own command line), then SIGHUP to `master`."""
        try:
            done = subprocess.run(
                test, capture_output=True, text=True, timeout=TEST_TIMEOUT, check=False
            )
            failed = done.returncode != 0
            why = (done.stderr.strip().splitlines() or ["no message"])[-1]
        except (OSError, subprocess.TimeoutExpired) as err:
            failed, why = True, str(err)
        if failed:
            self._undo(down)
            raise RouterError(
                self.name,
                f"`nginx -t` failed after the edit, so our edit was undone and "
                f"nginx was not reloaded: {why}",
            )
        before = self._workers(master)
        try:
            fd = os.pidfd_open(master)
        except OSError as err:
            self._undo(down)
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
        # An unmarked `down` is the operator's: maintenance, not our drain.
        admin = ("drain" if line.ours else "maint") if line.down else "ready"
        return RouterState(
            name=self.name,
            admin=admin,
            status="DOWN (marked)" if line.down else "UP",
            sessions=len(alive),
            queued=0,
            peers_up=line.peers_up,
            peers_out=line.peers_out,
        )

    def _set(self, down: bool) -> None:
        self._reload(down)

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
