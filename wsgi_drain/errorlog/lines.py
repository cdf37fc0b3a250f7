"""The catalogue of mod_wsgi's and httpd's lifecycle lines, and reading one line.

One pattern per message, in mod_wsgi 4.x/5.x's wording and 6.x's, with the
Apache level it is logged at (docs/mod_wsgi.md says where each comes from);
`parse_line` turns a line into its LifecycleEvent (events.py), `line_time`
reads its time stamp.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime

from wsgi_drain.errorlog.events import LifecycleEvent

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
