"""Reading mod_wsgi's daemon lifecycle lines out of Apache's error log.

mod_wsgi logs each step of a daemon process's life at ``info`` (start,
graceful request, "Requests have completed", timer expired, shutdown,
abort, exit) and the Apache parent logs the death it noticed.  Reading those
lines is the only way to tell, after the fact, whether an old process drained
cleanly or was forced off with requests still running.  The wording changed
completely between mod_wsgi 4.x/5.x and 6.x; both are recognised here.  See
docs/mod_wsgi.md for where each line comes from.

Event kinds (``LifecycleEvent.kind``):

``started``
    A daemon process began ("Starting [daemon] process 'G' with ...").  Logged
    by the new process itself, so its pid is the replacement's pid.  There is
    no separate "restarted" line: the parent's ``died`` line is followed by the
    replacement's ``started`` line.
``graceful``
    A graceful stop was requested while requests were running (SIGUSR1, or
    maximum-requests / restart-interval / cpu-time-limit / 6.x request-timeout
    reached).  The process *keeps accepting new requests* until it is idle
    (``completed``) or its graceful/eviction timer expires (``timer_expired``).
``completed``
    The process found itself idle and stopped by itself: "Requests have
    completed", or a graceful request / restart interval / maximum requests /
    CPU limit that arrived while nothing was running ("... triggering immediate
    shutdown"), or the idle inactivity timer.
``timer_expired``
    The graceful/eviction timer ran out ("graceful timer expired" in 4.x,
    "restart timer expired ...; forcing shutdown" in 6.x): shutdown begins with
    requests possibly still running; they get shutdown-timeout.
``limit``
    The process stops itself because a fault limit tripped (deadlock timer,
    request time limit, startup timer); shutdown begins with requests running.
``shutdown``
    "Shutdown requested": the main thread has begun shutting down and no longer
    accepts requests; the shutdown-timeout reaper starts now.  Follows every
    one of the above, and comes alone on SIGTERM/SIGINT (or an Apache
    restart/stop).
``aborting``
    shutdown-timeout expired: the process exits at once (status 255) and any
    request still running is cut off.
``stopping``
    "Stopping process": every running request finished, the interpreter is
    being torn down (the clean path).
``exiting``
    The process's last line, on both the clean and the aborted path.
``died``
    The Apache parent noticed the death and starts a replacement at once (also
    "appears to have been lost").  ``pid`` is the dead daemon's pid.
``deregistered``
    The parent stops watching the process because Apache itself is stopping
    or restarting: no replacement follows from this parent generation.
``terminated``
    The parent's report of the wait status: ``exit_code`` or ``signal`` is set.
    mod_wsgi decodes an already-decoded status with the POSIX wait macros, so
    only "exit code 0" and "signal N" lines appear, a non-zero exit code N
    below 127 reads as "signal N", and exit status 255 (the abort) logs no
    such line at all.  Apache core's "AH00052: child pid N exit signal ..."
    line (a daemon killed by a signal other than TERM/HUP/USR1/KILL) gives the
    same kind with ``group`` None.
``request_failed``
    An Apache worker lost a request because the daemon went away while it was
    running ("Truncated or oversized response headers received from daemon
    process" in 4.x, WSGI0146/WSGI0147 in 6.x).  ``pid`` is the worker's pid,
    not the daemon's.

Lines mod_wsgi writes that are not listed here (interpreter set-up and
teardown, "has been deregistered and will no longer be monitored", debug
lines) parse to None.
"""

from __future__ import annotations

import os
import re
import stat
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from wsgi_drain._compat import StrEnum

__all__ = [
    "KINDS",
    "Ending",
    "ErrorLogTail",
    "LifecycleEvent",
    "ending_of",
    "line_time",
    "parse_line",
    "recent_events",
]

KINDS = frozenset(
    {
        "started",
        "graceful",
        "completed",
        "timer_expired",
        "limit",
        "shutdown",
        "aborting",
        "stopping",
        "exiting",
        "died",
        "deregistered",
        "terminated",
        "request_failed",
    }
)


class Ending(StrEnum):
    """How a daemon process's life ended, as far as the error log tells."""

    DRAINED = "drained"
    """It went idle and exited by itself ("Requests have completed" or equivalent)."""
    FORCED = "forced"
    """A timer expired or a stop signal arrived, and shutdown began while requests
    may have been running; they finished within shutdown-timeout."""
    ABORTED = "aborted"
    """shutdown-timeout expired (or a signal killed it): running requests were cut off."""
    EXITED = "exited"
    """It exited but the log does not say how (LogLevel hides info, lines not found)."""


@dataclass(frozen=True)
class LifecycleEvent:
    """One lifecycle line of one daemon process.

    ``pid`` is the daemon the line is about: the logging pid for the daemon's
    own lines, the dead daemon's pid for the parent's lines, and the Apache
    worker's pid for ``request_failed``.  ``group`` is None only when the line
    does not name it (Apache core's exit-signal line).
    """

    pid: int
    group: str | None
    kind: str
    line: str
    exit_code: int | None = None
    signal: int | None = None


# --- parsing -----------------------------------------------------------------

# Apache 2.4's default ErrorLogFormat is
#   "[%{u}t] [%-m:%l] [pid %P:tid %T] %7F: %E: [client\ %a] %M% ,\ referer\ %{Referer}i"
# (no ":tid" under a non-threaded MPM; "%7F: " only at LogLevel debug; "%E: "
# only when an APR status is attached; "[client ...]" only for request lines).
_MODULE_LEVEL = re.compile(
    r"\[(?P<module>[\w.-]*):(?P<level>emerg|alert|crit|error|warn|notice|info|debug|trace\d)\]"
)
_HEADER_PID = re.compile(r"\[pid (?P<pid>\d+)(?::tid \d+)?\]")
# Everything before the message proper: bracketed fields, the source location,
# an APR error status, Apache's AHnnnnn or mod_wsgi 6.x's WSGInnnn code, and
# mod_wsgi 4.x's "mod_wsgi (pid=N): " prefix.
_LEAD = re.compile(
    r"""
    (?:\s*\[[^\]]*\])*\s*            # [time] [module:level] [pid ..] [client ..] [script ..]
    (?:[\w.-]+\.c\(\d+\):\s)?        # mod_wsgi.c(9201):  (LogLevel debug)
    (?:\(\d+\)[^:]*:\s)?             # (104)Connection reset by peer:
    (?:(?:AH\d{5}|WSGI\d{4}):\s)?    # AH00052: / WSGI0147:
    (?:mod_wsgi\ \(pid=(?P<prefix_pid>\d+)(?:,[^)]*)?\):\s)?
    """,
    re.VERBOSE,
)

_G = r"'(?P<group>.+?)'"
_DEAD = r"(?: \(pid=(?P<pid>\d+)\))?"  # 6.x names the dead daemon in the message

# (kind, Apache level the line is logged at, pattern matched at the message
# start).  4.x wording uses ", " and a trailing group; 6.x uses "; " and
# "of/in daemon process 'G'".  Sources: docs/mod_wsgi.md.  Each pattern begins
# with a word, or a group of alternatives each beginning with one, then a space.
_CATALOGUE: list[tuple[str, str, str]] = [
    (kind, level, pattern)
    for kind, level, pattern in [
        ("started", "info", rf"Starting (?:daemon )?process {_G} with .*threads=\d+\."),
        # -- graceful stop requested while requests run
        (
            "graceful",
            "info",
            r"(?:Process eviction|Graceful restart) requested[,;] waiting for "
            rf"(?:in-flight )?requests to complete (?:in daemon process )?{_G}\.",
        ),
        (
            "graceful",
            "info",
            r"Maximum requests reached[,;] (?:attempt a graceful shutdown|"
            rf"attempting graceful shutdown of daemon process) {_G}\.",
        ),
        (
            "graceful",
            "info",
            r"(?:Application restart timer expired|Exceeded CPU time limit|"
            r"Daemon process request time limit exceeded)[,;] waiting for "
            rf"(?:in-flight )?requests to complete (?:in (?:daemon )?process )?{_G}\.",
        ),
        # -- idle: the process stops itself with nothing running
        (
            "completed",
            "info",
            r"(?:Requests have completed|Process eviction requested|Graceful restart requested|"
            r"Maximum requests reached|Exceeded CPU time limit)[,;] "
            rf"triggering immediate shutdown (?:of daemon process )?{_G}\.",
        ),
        (
            "completed",
            "info",
            r"(?:Application restart timer expired|Daemon process idle inactivity "
            rf"timer expired), stopping process {_G}\.",
        ),
        # -- forced
        ("timer_expired", "info", rf"Daemon process graceful timer expired {_G}\."),
        (
            "timer_expired",
            "info",
            rf"Daemon process restart timer expired in daemon process {_G}; forcing shutdown\.",
        ),
        (
            "limit",
            "info",
            r"(?:Daemon process request time limit exceeded|Application startup timer "
            r"expired|Daemon process deadlock timer expired), stopping (?:daemon )?"
            rf"process {_G}\.",
        ),
        # -- shutdown and exit
        ("shutdown", "info", rf"Shutdown requested (?:for daemon process )?{_G}\."),
        ("aborting", "info", rf"Aborting process {_G}\."),
        (
            "aborting",
            "info",
            rf"Shutdown timeout expired; aborting daemon process {_G}\.",
        ),
        ("stopping", "info", rf"Stopping process {_G}\."),
        ("exiting", "info", rf"Exiting (?:daemon )?process {_G}\."),
        # -- the Apache parent
        (
            "died",
            "info",
            rf"Process {_G}{_DEAD} (?:has died|appears to have been lost)[,;] "
            r"deregister(?:ing)? and restart(?:ing)? it\.",
        ),
        (
            "deregistered",
            "info",
            rf"Process {_G}{_DEAD} has died but server is being stopped, deregister it\.",
        ),
        (
            "deregistered",
            "info",
            rf"Process {_G} to be deregistered, as server is restarting or being shutdown\.",
        ),
        (
            "deregistered",
            "info",
            rf"Deregistering daemon process {_G}{_DEAD}; server is restarting or shutting down\.",
        ),
        (
            "terminated",
            "info",
            rf"Process {_G}{_DEAD} terminated (?:normally, exit code (?P<code>\d+)|"
            r"by signal (?P<signal>\d+))",
        ),
        (
            "terminated",
            "notice",
            r"child pid (?P<pid>\d+) exit signal .*?\((?P<signal>\d+)\)",
        ),
        # -- an Apache worker lost the request (the daemon went away under it)
        (
            "request_failed",
            "error",
            rf"Truncated or oversized response headers received from daemon process {_G}",
        ),
        (
            "request_failed",
            "error",
            rf"Daemon process {_G} closed connection before sending complete response headers",
        ),
        (
            "request_failed",
            "error",
            rf"Error reading response headers from daemon process {_G} \(",
        ),
    ]
]


def first_words(pattern: str) -> tuple[str, ...]:
    """The words a catalogue pattern's message can begin with (each followed by a space)."""
    if pattern.startswith("(?:"):
        return tuple(alt.split(" ", 1)[0] for alt in pattern[3 : pattern.index(")")].split("|"))
    return (pattern.split(" ", 1)[0],)


# The catalogue by the message's first word, in catalogue order; each pattern is
# compiled the first time a line begins with one of its words: a check reads the
# log every minute and most of the catalogue's 24 patterns never apply (issue 22).
_BY_WORD: dict[str, list[tuple[str, str, str]]] = {}
for _entry in _CATALOGUE:
    for _word in first_words(_entry[2]):
        if _entry not in _BY_WORD.setdefault(_word, []):
            _BY_WORD[_word].append(_entry)
_COMPILED: dict[str, re.Pattern[str]] = {}


def _patterns_for(word: str) -> Iterator[tuple[str, str, re.Pattern[str]]]:
    for kind, level, source in _BY_WORD.get(word, ()):
        pattern = _COMPILED.get(source)
        if pattern is None:
            pattern = _COMPILED[source] = re.compile(source)
        yield kind, level, pattern


def parse_line(line: str) -> LifecycleEvent | None:
    """The lifecycle event one error-log line records, or None for any other line.

    Accepts Apache 2.4's default error-log format with or without ``:tid``,
    with ``[client ...]``/``[script ...]`` fields and at LogLevel debug (source
    location prefix), in the wording of mod_wsgi 4.9 and 6.x.  When the line
    carries ``[module:level]``, the level must be the one mod_wsgi logs that
    line at, so application output that happens to contain the same words
    (logged at ``error`` through wsgi.errors) is not mistaken for it.  A line
    whose pid cannot be found at all (custom ErrorLogFormat without ``%P``,
    6.x wording) is None.
    """
    text = line.rstrip("\r\n")
    lead = _LEAD.match(text)
    start = lead.end() if lead else 0
    module_level = _MODULE_LEVEL.search(text, 0, start) if start else None
    space = text.find(" ", start)
    for kind, level, pattern in _patterns_for(text[start:space] if space >= 0 else ""):
        match = pattern.match(text, start)
        if match is None:
            continue
        if module_level is not None and module_level.group("level") != level:
            return None
        groups = match.groupdict()
        pid = _pid_of(text, groups.get("pid"), lead)
        if pid is None:
            return None
        code = groups.get("code")
        sig = groups.get("signal")
        return LifecycleEvent(
            pid=pid,
            group=groups.get("group"),
            kind=kind,
            line=text,
            exit_code=int(code) if code is not None else None,
            signal=int(sig) if sig is not None else None,
        )
    return None


def _pid_of(text: str, message_pid: str | None, lead: re.Match[str] | None) -> int | None:
    # The pid the message names beats mod_wsgi 4.x's "(pid=N)" prefix, which
    # beats the logging pid: for the parent's lines the first two are the dead
    # daemon's pid while the logging pid is the parent's.
    if message_pid is not None:
        return int(message_pid)
    if lead is not None and lead.group("prefix_pid") is not None:
        return int(lead.group("prefix_pid"))
    header = _HEADER_PID.search(text)
    return int(header.group("pid")) if header else None


# --- classification ----------------------------------------------------------


def ending_of(events: Iterable[LifecycleEvent]) -> Ending:
    """How one daemon's life ended, from the events about its pid.

    The caller selects the pid (``request_failed`` events are about an Apache
    worker, not the daemon, and are ignored here).  Evidence of a cut-off wins
    over evidence of a drain: an ``aborting`` line or death by a signal is
    ABORTED; a timer, a fault limit, or a shutdown that no ``completed`` line
    preceded (SIGTERM, Apache restart) is FORCED; a ``completed`` line is
    DRAINED; anything else, including no events at all, is EXITED.
    """
    kinds: set[str] = set()
    killed = False
    for event in events:
        if event.kind == "request_failed":
            continue
        kinds.add(event.kind)
        if event.kind == "terminated" and event.signal is not None:
            killed = True
    if "aborting" in kinds or killed:
        return Ending.ABORTED
    if kinds & {"timer_expired", "limit"}:
        return Ending.FORCED
    if "completed" in kinds:
        return Ending.DRAINED
    if "shutdown" in kinds:
        return Ending.FORCED
    return Ending.EXITED


# --- tailing -----------------------------------------------------------------

_CHUNK = 1 << 20


class ErrorLogTail:
    """Lifecycle events from the lines appended to an error log after construction.

    The file is opened at construction and positioned at its end, so a
    rotation between construction and the first ``read_new`` loses nothing.
    Each ``read_new`` reads what was appended since the last call:

    - rotation (the path now names another inode, or no file): the rest of the
      old file is read through the descriptor still open on it, then the new
      file from its start; a partial last line of the old file is dropped;
    - truncation in place (copytruncate): reading restarts at 0 (lines written
      and truncated away between two calls are lost, and a file regrown past
      the old position before the next call is not noticed);
    - a partial last line is kept until its newline arrives;
    - a missing file is not an error: ``read_new`` returns [] until it appears,
      and then reads it from the start, since all of it is new.

    Holds one file descriptor; ``close()`` (or ``with``) releases it, and it is
    released anyway when the object is collected.  Errors other than a missing
    file (e.g. permission denied) propagate as OSError.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self._ident: tuple[int, int] | None = None
        self._offset = 0
        self._partial = b""
        self._finalizer: weakref.finalize[[int], ErrorLogTail] | None = None
        self._closed = False
        if self._open():
            self._offset = os.fstat(self._require_fd()).st_size

    def read_new(self) -> list[LifecycleEvent]:
        """Events from the complete lines appended since the last call."""
        if self._closed:
            msg = f"read from closed ErrorLogTail of {str(self.path)!r}"
            raise ValueError(msg)
        events = []
        for line in self.read_new_lines():
            event = parse_line(line)
            if event is not None:
                events.append(event)
        return events

    def read_new_lines(self) -> list[str]:
        """The complete lines appended since the last call (any kind), decoded."""
        if self._closed:
            msg = f"read from closed ErrorLogTail of {str(self.path)!r}"
            raise ValueError(msg)
        return [raw.decode("utf-8", "replace") for raw in self._read_new_lines()]

    def close(self) -> None:
        """Release the file descriptor; ``read_new`` raises ValueError afterwards."""
        self._release()
        self._closed = True

    def _release(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None
        self._fd = None
        self._ident = None

    def __enter__(self) -> ErrorLogTail:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals

    def _read_new_lines(self) -> list[bytes]:
        if self._fd is None:
            if not self._open():
                return []
            self._offset = 0
            self._partial = b""
        lines = self._drain()
        current = self._stat_path()
        if current is None or current == self._ident:
            return lines
        # Rotated: the old file is fully read above; switch to the new one.
        self._release()
        self._partial = b""
        if self._open():
            self._offset = 0
            lines.extend(self._drain())
        return lines

    def _drain(self) -> list[bytes]:
        fd = self._require_fd()
        if os.fstat(fd).st_size < self._offset:
            self._offset = 0  # truncated in place
            self._partial = b""
        lines: list[bytes] = []
        while True:
            chunk = os.pread(fd, _CHUNK, self._offset)
            if not chunk:
                return lines
            self._offset += len(chunk)
            data = self._partial + chunk
            *complete, self._partial = data.split(b"\n")
            lines.extend(complete)

    def _open(self) -> bool:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            msg = f"error log {str(self.path)!r} is not a regular file"
            raise OSError(msg)
        self._fd = fd
        self._ident = (info.st_dev, info.st_ino)
        self._finalizer = weakref.finalize(self, os.close, fd)
        return True

    def _stat_path(self) -> tuple[int, int] | None:
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (info.st_dev, info.st_ino)

    def _require_fd(self) -> int:
        if self._fd is None:  # pragma: no cover - guarded by callers
            msg = "error log is not open"
            raise RuntimeError(msg)
        return self._fd


_TIME = re.compile(
    r"^\[\w{3} (?P<month>\w{3}) (?P<day>[ \d]\d) (?P<h>\d\d):(?P<m>\d\d):(?P<s>\d\d)"
    r"(?:\.(?P<frac>\d+))? (?P<year>\d{4})\]"
)
# apr_ctime's names are APR's own English ones, whatever the locale (apr_date.c); read by
# hand, not with strptime, whose first call costs `check` milliseconds every run.
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}


def line_time(line: str) -> float | None:
    """The epoch time of an error log line in Apache's default format, else None.

    Apache writes local time ("[Mon Nov 23 12:16:27.666900 2026]"), so it is
    read back as local time.
    """
    match = _TIME.match(line)
    if match is None or match["month"] not in _MONTHS:
        return None
    micro = int((match["frac"] or "0")[:6].ljust(6, "0"))
    try:
        return datetime(
            int(match["year"]), _MONTHS[match["month"]], int(match["day"]),
            int(match["h"]), int(match["m"]), int(match["s"]), micro,
        ).timestamp()  # fmt: skip
    except ValueError:  # e.g. Feb 30
        return None


def recent_events(
    path: Path, since: float, max_bytes: int = 2 << 20
) -> list[tuple[float, LifecycleEvent]]:
    """Lifecycle events logged at or after epoch `since`, from the file's last `max_bytes`.

    For `check`: bounded work however large the log has grown.  A missing or
    unreadable file gives [].
    """
    try:
        with path.open("rb") as source:
            size = source.seek(0, os.SEEK_END)
            source.seek(max(0, size - max_bytes))
            data = source.read(max_bytes)
    except OSError:
        return []
    found = []
    for raw in data.decode(errors="replace").splitlines():
        when = line_time(raw)
        if when is None or when < since:
            continue
        event = parse_line(raw)
        if event is not None:
            found.append((when, event))
    return found
