"""What a restart cost the users: the counting rules and their record (pure).

A run's impact is counted from every source that can see a failed request
in the run's window (from the divert, or the first signal, until the run
ends).  Each source is read or not; one that could not be read says why and
is never counted as zero.  The rules, each with where its words come from
(docs/impact.md):

- **HAProxy** (`show stat`, the server's own row, read before and after):
  failed = the rise of `hrsp_5xx` (5xx answers the server gave) + `eresp`
  (response errors: the server closed or reset before a whole answer;
  `srv_abrt` is included in it, management.txt) + `econ` (connections that
  could not be made).  `wretr`, `wredis`, `cli_abrt` and `srv_abrt` are
  shown but not added: a retried or redispatched request may still have
  succeeded, a client abort is the client's doing, and `srv_abrt` is already
  in `eresp`.  A counter that went *down* means HAProxy was reloaded or its
  counters cleared during the run: the difference means nothing, so the
  source is "not read".
- **Apache's error log** (the group's `ErrorLog`): one failed request per
  line of the kinds in APACHE_FAILURES naming this group (mod_wsgi's own
  request lines) and per "Premature end of script headers" (httpd's line,
  which names no group: counted because it is in the group's own log).
- **nginx's error log** for the upstream server: one failed attempt per
  line of NGINX_FAILURES naming the server (`upstream: "http://ADDR/..."`),
  and "no live upstreams" naming the upstream block.  nginx retries another
  server on `error`/`timeout` (proxy_next_upstream's default), so these are
  attempts that failed: at most the requests that failed.

The sources overlap (a request cut when its daemon was aborted is a line in
Apache's log *and* a 500 Apache answered HAProxy), so the run's figure is
the largest count among the sources read, never their sum: a lower bound
that does not count one failure twice.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# At most this many evidence lines per source in a report.
MAX_EVIDENCE = 20

# HAProxy `show stat` columns (management.txt section 9.1).
HAPROXY_FAILED = ("hrsp_5xx", "eresp", "econ")
HAPROXY_SHOWN = ("wretr", "wredis", "cli_abrt", "srv_abrt")
HAPROXY_COUNTERS = HAPROXY_FAILED + HAPROXY_SHOWN

# (what, pattern matched anywhere in the line's message, with {group} the
# group's name quoted as mod_wsgi quotes it).  mod_wsgi 4.9.4
# src/server/mod_wsgi.c and 6.0.5 src/server/wsgi_remote.c, wsgi_daemon.c
# (docs/impact.md has the function of each).
APACHE_FAILURES: tuple[tuple[str, str], ...] = (
    ("cut", r"Truncated or oversized response headers received from daemon process {group}"),
    ("timeout", r"Timeout when reading response headers from daemon process {group}"),
    ("cut", r"Daemon process {group} closed connection before sending complete response"),
    ("cut", r"Error reading response headers from daemon process {group}"),
    ("cut", r"Response header line too long from daemon process {group}"),
    ("queue", r"Queue timeout expired for WSGI daemon process {group}"),
    ("backlog", r"Unable to connect to WSGI daemon process {group} on .* listener backlog"),
    # A response cut after its headers: the daemon went away mid-body.
    ("cut", r"Failed to proxy response from daemon\."),
    ("cut", r"Unable to proxy response from daemon to client"),
    # httpd's util_script.c; names the script, not the group.
    ("cut", r"Premature end of script headers"),
)
# nginx src/http/ngx_http_upstream.c and ngx_event_connect.c wordings.
NGINX_FAILURES = (
    "upstream prematurely closed connection",
    "connect() failed",
    "no live upstreams",
    "upstream timed out",
    "recv() failed",
)


@dataclass
class Source:
    """One place failures were looked for: read (with its count) or not (with why)."""

    kind: str  # "haproxy" | "apache-log" | "nginx-log"
    name: str
    read: bool
    failed: int | None = None
    error: str | None = None
    evidence: list[str] = field(default_factory=list)
    # HAProxy: the rise of each counter over the window.
    counters: dict[str, int] | None = None

    @classmethod
    def unread(cls, kind: str, name: str, why: str) -> Source:
        return cls(kind=kind, name=name, read=False, error=why)


@dataclass
class Impact:
    """What one run cost: its window (epoch seconds) and every source looked at."""

    started: float
    ended: float | None = None
    sources: list[Source] = field(default_factory=list)
    # The group's failures logged between the previous run's end (before_since)
    # and this window (wsgi_drain/history.py): not this run's, kept apart.
    before_run: Source | None = None
    before_since: float | None = None

    @property
    def failed(self) -> int | None:
        """The largest count among the sources read (they overlap); None when none was read."""
        counts = [s.failed for s in self.sources if s.read and s.failed is not None]
        return max(counts) if counts else None

    @property
    def evidence(self) -> list[str]:
        return [line for s in self.sources for line in s.evidence]


def counters_delta(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    """The rise of each HAProxy counter; ValueError when one went down (reset, reload)."""
    delta = {}
    for name in HAPROXY_COUNTERS:
        if name not in before or name not in after:
            continue
        rise = after[name] - before[name]
        if rise < 0:
            raise ValueError(
                f"{name} went from {before[name]} to {after[name]}: HAProxy was reloaded or "
                "its counters cleared during the run"
            )
        delta[name] = rise
    return delta


def haproxy_source(name: str, before: Mapping[str, int], after: Mapping[str, int]) -> Source:
    """The HAProxy source from its counters before and after (module docstring's rule)."""
    try:
        delta = counters_delta(before, after)
    except ValueError as err:
        return Source.unread("haproxy", name, str(err))
    failed = sum(delta.get(c, 0) for c in HAPROXY_FAILED)
    evidence = [f"{name}: {c} +{delta[c]}" for c in HAPROXY_COUNTERS if delta.get(c)]
    return Source("haproxy", name, True, failed, evidence=evidence, counters=delta)


def _apache_patterns(group: str) -> list[tuple[str, re.Pattern[str]]]:
    quoted = re.escape(f"'{group}'")
    return [(what, re.compile(p.format(group=quoted))) for what, p in APACHE_FAILURES]


def apache_failures(messages: Iterable[str], group: str) -> list[str]:
    """The lines of `messages` that each record one request of `group` lost (the rule above)."""
    patterns = _apache_patterns(group)
    return [m for m in messages if any(p.search(m) for _what, p in patterns)]


def nginx_failures(lines: Iterable[str], server: str, upstream: str | None = None) -> list[str]:
    """nginx error-log lines recording a failed attempt at `server` (ADDR:PORT).

    A line counts when it has one of NGINX_FAILURES and names the server as
    its `upstream: "SCHEME://ADDR:PORT..."`; "no live upstreams" names the
    upstream block instead, counted when `upstream` (the block's name) is given.
    """
    at_server = re.compile(r'upstream: "[a-z]+://' + re.escape(server) + r'[/"]')
    at_block = (
        None
        if upstream is None
        else re.compile(r'upstream: "[a-z]+://' + re.escape(upstream) + r'[/"]')
    )
    found = []
    for line in lines:
        if not any(words in line for words in NGINX_FAILURES):
            continue
        if at_server.search(line) or (
            at_block is not None and "no live upstreams" in line and at_block.search(line)
        ):
            found.append(line)
    return found


def log_source(kind: str, name: str, lines: list[str]) -> Source:
    """A log source that was read: one failure per line, the first lines kept as evidence."""
    shown = lines[:MAX_EVIDENCE]
    if len(lines) > MAX_EVIDENCE:
        shown.append(f"... and {len(lines) - MAX_EVIDENCE} more in {name}")
    return Source(kind, name, True, len(lines), evidence=shown)
