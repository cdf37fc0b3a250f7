"""What mod_wsgi and the app wrote to the error log during one run.

A restart that goes wrong must say why in the report, in the app's own words:
the exception and traceback of new code that fails to load, the exit status
of replacements that die as they start.  `RunLog` follows the group's error
log from just before the signal and answers three questions:

- which of the group's new processes died (the parent's "Process 'G' has
  died" lines; the pid in the message is the dead daemon's);
- did the app fail to load ("Failed to exec Python script file" from one of
  the group's new processes, then a traceback);
- the relevant lines, bounded, with repeats removed (every request to a
  broken app logs the same traceback again).

Lines are attributed by pid: a daemon's own lines carry its pid in the
`[pid P:tid T]` field; "Starting process 'G'" names a new daemon of G.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

from wsgi_drain.errorlog import ErrorLogTail, LifecycleEvent, parse_line

# Bounds on what a report carries and what is kept while reading.
MAX_WORDS = 40
MAX_WORD_CHARS = 8192
_KEEP_LINES = 5000

# Apache's default ErrorLogFormat puts bracketed fields before the message:
# "[time] [module:level] [pid P:tid T] [client/remote A:P] message".  The
# message keeps its own leading spaces (traceback lines are indented).
_FIELDS = re.compile(r"^(?:\[[^\]]*\] )+")
_PID = re.compile(r"\[pid (?P<pid>\d+)(?::tid \d+)?\]")
_MODULE_LEVEL = re.compile(r"\[(?P<module>[\w.-]*):(?P<level>[a-z]+\d?)\]")
# mod_wsgi 4.x "mod_wsgi (pid=N): " / "mod_wsgi (pid=N, process=..): " and
# 6.x "WSGInnnn: " prefixes differ per process; removed so repeats compare equal.
_PREFIX = re.compile(r"^(?:(?:AH\d{5}|WSGI\d{4}): )?(?:mod_wsgi \(pid=\d+[^)]*\): )?")
_PID_IN_MESSAGE = re.compile(r"pid=\d+")
_EXCEPTION = re.compile(r"^(?P<name>[A-Za-z_][\w.]*)(?::\s?.*)?$")
# mod_wsgi 4.9.4: "Failed to exec Python script file '...'."; 6.1.1: "WSGI0109:
# Unable to execute Python script file '...'." (docs/mod_wsgi.md).
_LOAD_FAILED = ("Failed to exec Python script file", "Unable to execute Python script file")
_ERROR_LEVELS = frozenset({"error", "crit", "alert", "emerg"})


@dataclass(frozen=True)
class LogLine:
    """One error-log line, split into what Apache added and what was said."""

    pid: int | None
    module: str | None
    level: str | None
    message: str
    event: LifecycleEvent | None


def split_line(line: str) -> LogLine:
    text = line.rstrip("\r\n")
    fields = _FIELDS.match(text)
    head = fields.group(0) if fields else ""
    pid = _PID.search(head)
    module_level = _MODULE_LEVEL.search(head)
    return LogLine(
        pid=int(pid.group("pid")) if pid else None,
        module=module_level.group("module") if module_level else None,
        level=module_level.group("level") if module_level else None,
        message=_PREFIX.sub("", text[len(head) :], count=1),
        event=parse_line(text),
    )


class RunLog:
    """The group's error-log lines from construction on (None tail: nothing known)."""

    def __init__(self, tail: ErrorLogTail | None, group: str) -> None:
        self.tail = tail
        self.group = group
        self.lines: deque[LogLine] = deque(maxlen=_KEEP_LINES)
        self.events: list[LifecycleEvent] = []

    @property
    def available(self) -> bool:
        return self.tail is not None

    def poll(self) -> list[LifecycleEvent]:
        """Read what was appended; return the new lifecycle events."""
        if self.tail is None:
            return []
        try:
            raw = self.tail.read_new_lines()
        except OSError:
            return []  # a log that became unreadable mid-run: what we have stays
        new = []
        for text in raw:
            line = split_line(text)
            self.lines.append(line)
            if line.event is not None:
                new.append(line.event)
        self.events.extend(new)
        return new

    def started(self) -> set[int]:
        """Pids that logged "Starting process 'G'" for this group."""
        return {e.pid for e in self.events if e.kind == "started" and e.group == self.group}

    def deaths(self, old: set[int]) -> dict[int, str]:
        """New processes of the group the parent saw die: pid -> how, as logged ("" unknown)."""
        dead: dict[int, str] = {}
        for e in self.events:
            if e.group != self.group or e.pid in old:
                continue
            if e.kind == "died":
                dead.setdefault(e.pid, "")
            elif e.kind == "terminated":
                # Verbatim, not decoded: mod_wsgi 4.9.4 logs a daemon's
                # os._exit(3) as "terminated by signal 3" (docs/mod_wsgi.md).
                at = e.line.find("terminated")
                dead[e.pid] = e.line[at:].rstrip(". ") if at >= 0 else ""
        return dead

    def load_failure(self, pids: set[int]) -> str | None:
        """The exception that stopped the app loading in one of `pids`, if the log has one.

        mod_wsgi logs "Failed to exec Python script file" and then the
        traceback; the exception line is the first unindented line after
        "Traceback (most recent call last):".
        """
        failed = False
        in_traceback = False
        for line in self.lines:
            if line.pid not in pids:
                continue
            if line.message.startswith(_LOAD_FAILED):
                failed = True
            elif line.message.startswith("Traceback (most recent call last):"):
                in_traceback = True
            elif in_traceback and line.message and not line.message[0].isspace():
                in_traceback = False
                match = _EXCEPTION.match(line.message)
                if failed and match:
                    return line.message
        return None

    def words(self, pids: set[int]) -> list[str]:
        """What the group said: error lines of `pids` and the parent's lines about the group.

        Repeats are dropped (each request to a broken app logs the same
        traceback); at most MAX_WORDS lines and MAX_WORD_CHARS characters,
        the first ones kept (the first failure names the cause).
        """
        seen: set[str] = set()
        words: list[str] = []
        size = 0
        for line in self.lines:
            about_group = (
                line.event is not None
                and line.event.group == self.group
                and line.event.kind in ("died", "terminated")
                and line.event.pid in pids
            )
            own_error = line.pid in pids and line.level in _ERROR_LEVELS
            # 6.x names the pid inside the message; repeats differ only there.
            key = _PID_IN_MESSAGE.sub("pid=N", line.message)
            if not (about_group or own_error) or key in seen:
                continue
            seen.add(key)
            if len(words) >= MAX_WORDS or size + len(line.message) > MAX_WORD_CHARS:
                words.append("... (more in the error log)")
                break
            words.append(line.message)
            size += len(line.message)
        return words
