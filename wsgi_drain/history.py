"""The last runs of each group, kept in the state directory for `status --history`.

Each restart that took its lock appends one record (verdict, duration,
processes replaced, impact, end time) to `<group>.history.json`: 0600,
replaced atomically, the last MAX_RUNS runs only, each record bounded.  The
state directory is /run/wsgi-drain by default (tmpfs): the history lasts
until the host reboots, like the processes it describes.

Failures between runs: an `apachectl graceful` by hand (or logrotate's)
happens outside any run's window, so no run counts it as its own.  The next
run reads the group's error log from the previous run's end to its own
start and records what it finds as `before_run` (docs/impact.md).
"""

from __future__ import annotations

import json
import os
import time
import urllib.parse
from pathlib import Path
from typing import Any

from wsgi_drain.atomic import write_atomic
from wsgi_drain.errorlog import line_time
from wsgi_drain.impact import MAX_EVIDENCE, Impact, Source, apache_failures
from wsgi_drain.outcome import Outcome

MAX_RUNS = 20
_MAX_LINE = 500
_SUFFIX = ".history.json"
# How much of the error log's end is read for the failures between runs.
BEFORE_RUN_BYTES = 4 << 20


def path_for(state_dir: Path, group: str) -> Path:
    return state_dir / (urllib.parse.quote(group, safe="-_.") + _SUFFIX)


def load(state_dir: Path, group: str) -> list[dict[str, Any]]:
    """The group's recorded runs, oldest first ([] when none or unreadable)."""
    return _read(path_for(state_dir, group))


def _read(path: Path) -> list[dict[str, Any]]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return []
    try:
        with os.fdopen(fd, "rb") as source:
            data = json.loads(source.read(4 << 20))
    except (OSError, ValueError):
        return []
    runs = data.get("runs") if isinstance(data, dict) else None
    return [r for r in runs if isinstance(r, dict)] if isinstance(runs, list) else []


def all_groups(state_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Every group's recorded runs in the state directory, by group name."""
    if not state_dir.is_dir():
        return {}
    found = {}
    for path in sorted(state_dir.glob("*" + _SUFFIX)):
        group = urllib.parse.unquote(path.name[: -len(_SUFFIX)])
        runs = _read(path)
        if runs:
            found[group] = runs
    return found


def last_end(state_dir: Path, group: str) -> float | None:
    runs = load(state_dir, group)
    end = runs[-1].get("ended") if runs else None
    return float(end) if isinstance(end, (int, float)) else None


def before_run(error_log: Path | None, group: str, since: float | None, until: float) -> Source:
    """The group's failed requests Apache logged between the last run's end and this one's start."""
    name = f"Apache error log {error_log}" if error_log else "Apache error log"
    if since is None:
        return Source.unread("apache-log", name, "no earlier run recorded")
    if error_log is None:
        return Source.unread("apache-log", name, "Apache logs to a pipe or syslog")
    try:
        with error_log.open("rb") as source:
            size = source.seek(0, os.SEEK_END)
            source.seek(max(0, size - BEFORE_RUN_BYTES))
            text = source.read(BEFORE_RUN_BYTES).decode("utf-8", "replace")
    except OSError as err:
        return Source.unread("apache-log", name, f"cannot read it: {err.strerror or err}")
    from wsgi_drain.applog import split_line
    from wsgi_drain.impact import log_source

    window = []
    for raw in text.splitlines():
        when = line_time(raw)
        # Apache's stamps have microseconds, ours too: the window is half-open.
        if when is not None and since < when <= until:
            window.append(split_line(raw).message)
    return log_source("apache-log", name, apache_failures(window, group))


def _source(s: Source) -> dict[str, Any]:
    return {
        "kind": s.kind,
        "name": s.name,
        "read": s.read,
        "failed": s.failed,
        "error": s.error,
        "evidence": [line[:_MAX_LINE] for line in s.evidence[:MAX_EVIDENCE]],
    }


def record_of(outcome: Outcome, ended: float) -> dict[str, Any]:
    impact: Impact | None = outcome.impact
    return {
        "group": outcome.group,
        "ended": round(ended, 3),
        "duration": round(outcome.duration, 3),
        "verdict": outcome.verdict,
        "exit_status": int(outcome.status),
        "mode": outcome.mode,
        "processes": len(outcome.processes),
        "replaced": sum(1 for p in outcome.processes if p.ending not in ("alive", "stuck")),
        "impact": None
        if impact is None
        else {"failed": impact.failed, "sources": [_source(s) for s in impact.sources]},
        "before_run": None
        if impact is None or impact.before_run is None
        else {"since": impact.before_since, **_source(impact.before_run)},
    }


def append(state_dir: Path, outcome: Outcome) -> None:
    """Add this run to the group's history (the last MAX_RUNS kept); OSError propagates."""
    path = path_for(state_dir, outcome.group)
    runs = [*load(state_dir, outcome.group), record_of(outcome, time.time())][-MAX_RUNS:]
    write_atomic(path, json.dumps({"runs": runs}, indent=1), 0o600)
