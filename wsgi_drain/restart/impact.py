"""Impact: what the run cost the users, measured from the divert (or signal) to its end.

The window opens when the run has its lock, before the divert (rolling mode:
before its first signal), and closes after the restore, whatever the run's
end.  Each source is read at both ends: HAProxy's server counters (a
difference), nginx's error log for the upstream server (the lines appended),
and the group's Apache error log the run follows anyway (watched.log).  The
counting rules are wsgi_drain/impact.py's; a source that cannot be read
says why and counts for nothing (never zero).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from wsgi_drain import history
from wsgi_drain.errorlog import ErrorLogTail
from wsgi_drain.errors import RouterError
from wsgi_drain.impact import (
    HAPROXY_COUNTERS,
    Impact,
    Source,
    apache_failures,
    haproxy_source,
    log_source,
    nginx_failures,
)
from wsgi_drain.outcome import Outcome
from wsgi_drain.restart.records import Routing, Run, Target, Watched
from wsgi_drain.routers import Router
from wsgi_drain.routers.haproxy import HAProxyRouter
from wsgi_drain.routers.nginx import NginxRouter


@dataclass
class Window:
    """What was read when the window opened, per source."""

    impact: Impact
    # (router, its counters before; None with why when unreadable)
    haproxy: list[tuple[HAProxyRouter, dict[str, int] | None, str]] = field(default_factory=list)
    nginx: list[tuple[NginxRouter, ErrorLogTail | None, str]] = field(default_factory=list)


def open_window(run: Run, target: Target, routing: Routing) -> Window:
    """Read every source's starting point; the run's impact is recorded on its outcome.

    Also counts what the group's log says was lost since the previous run
    ended (an `apachectl graceful` by hand): history.py's `before_run`.
    """
    window = Window(Impact(started=time.time()))
    impact = window.impact
    run.outcome.impact = impact
    impact.before_since = history.last_end(run.settings.state_dir, run.settings.group)
    log = target.instance.error_log_of(target.procs.group)
    impact.before_run = history.before_run(
        log, target.procs.group.name, impact.before_since, impact.started
    )
    for _spec, router in routing.routers:
        if isinstance(router, HAProxyRouter):
            try:
                window.haproxy.append((router, router.counters(HAPROXY_COUNTERS), ""))
            except RouterError as err:
                window.haproxy.append((router, None, str(err)))
        elif isinstance(router, NginxRouter):
            window.nginx.append((router, *_nginx_tail(router)))
    return window


def close_window(run: Run, window: Window, watched: Watched) -> None:
    """Read every source again and count (the run has ended: restored or left diverted)."""
    impact = window.impact
    impact.ended = time.time()
    for router, before, why in window.haproxy:
        impact.sources.append(_haproxy(router, before, why))
    impact.sources.append(_apache(run, watched))
    for nginx, tail, why in window.nginx:
        impact.sources.append(_nginx(nginx, tail, why))
    for _router, tail, _why in window.nginx:
        if tail is not None:
            tail.close()


def _haproxy(router: HAProxyRouter, before: dict[str, int] | None, why: str) -> Source:
    if before is None:
        return Source.unread("haproxy", router.name, f"counters not read at the start: {why}")
    try:
        after = router.counters(HAPROXY_COUNTERS)
    except RouterError as err:
        return Source.unread("haproxy", router.name, f"counters not read at the end: {err}")
    return haproxy_source(router.name, before, after)


def _apache(run: Run, watched: Watched) -> Source:
    log = watched.log
    name = "Apache error log"
    if log is None or not log.available:
        return Source.unread("apache-log", name, "the group's error log could not be followed")
    log.poll()
    path = getattr(log.tail, "path", None)
    if path is not None:
        name = f"Apache error log {path}"
    return log_source(
        "apache-log", name, apache_failures((ln.message for ln in log.lines), log.group)
    )


def _nginx_tail(router: NginxRouter) -> tuple[ErrorLogTail | None, str]:
    """nginx's error log, followed from now, when its master's command line names it (-e)."""
    path = _nginx_error_log(router)
    if path is None:
        return None, "nginx's error log is not known (its master was not started with -e PATH)"
    try:
        return ErrorLogTail(Path(path)), ""
    except OSError as err:
        return None, f"cannot read nginx's error log {path}: {err.strerror or err}"


def _nginx_error_log(router: Router) -> str | None:
    try:
        _pid, argv = router._master()  # type: ignore[attr-defined]
    except RouterError:
        return None
    for i, word in enumerate(argv):
        # A relative path is under nginx's prefix (-p): not followed, said so.
        if word == "-e" and i + 1 < len(argv) and str(argv[i + 1]).startswith("/"):
            return str(argv[i + 1])
    return None


def _nginx(router: NginxRouter, tail: ErrorLogTail | None, why: str) -> Source:
    name = f"nginx error log ({router.target.server})"
    if tail is None:
        return Source.unread("nginx-log", name, why)
    try:
        lines = tail.read_new_lines()
    except OSError as err:
        return Source.unread("nginx-log", name, f"cannot read it at the end: {err}")
    return log_source("nginx-log", name, nginx_failures(lines, router.target.server))


def remember(state_dir: Path, outcome: Outcome) -> None:
    """Append the run to the group's history (runs that took the lock); a failure is a warning."""
    if outcome.impact is None:
        return
    try:
        history.append(state_dir, outcome)
    except OSError as err:
        outcome.warnings.append(
            f"cannot record the run in {state_dir} for status --history: {err.strerror or err}"
        )
