"""`check`'s output: the Nagios status line with perfdata and its details, JSON, metrics.

report.py's cut for the health check, run every minute on every host: it
imports nothing of the restart's.  NRPE's limits are nagios.py's; the JSON
keys (schema wsgi-drain/check/v1) and the metric names are a contract like
the restart's report.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from wsgi_drain.check import CheckResult, Thresholds
    from wsgi_drain.inventory import ProcessInfo

CHECK_SCHEMA = "wsgi-drain/check/v1"


def check_perfdata(result: CheckResult, thresholds: Thresholds) -> str:
    """Nagios performance data: 'label'=value[UOM];[warn];[crit];[min];[max] ..."""
    # Thresholds in Nagios range syntax, the same limits the rules apply:
    # processes WARNING below processes=, CRITICAL at 0 ("N:" alerts below N);
    # health WARNING above --health-warn, CRITICAL when the probe fails (its
    # timeout); forced exits WARNING above 0.
    parts = []
    if result.expected is not None and result.processes_known:
        parts.append(f"processes={len(result.processes)};{result.expected}:;1:;0;{result.expected}")
    if result.health is not None:
        crit = "" if result.health_timeout is None else f"{result.health_timeout:g}"
        parts.append(
            f"health_time={result.health.latency:.4f}s;{thresholds.health_warn:g};{crit};0;"
        )
    rss = [p.rss for p in result.processes if p.rss]
    if rss:
        warn = thresholds.rss_warn or ""
        parts.append(f"rss_max={max(rss)}B;{warn};;0;")
    if result.processes:
        warn_age = "" if thresholds.age_warn is None else f"{thresholds.age_warn:g}"
        parts.append(f"age_max={max(p.age for p in result.processes):.0f}s;{warn_age};;0;")
    if result.forced is not None:
        parts.append(f"forced_exits={result.forced};0;;0;")
    if result.leftovers is not None:
        parts.append(f"leftovers={result.leftovers};0;;0;")
    return " ".join(parts)


def check_summary(result: CheckResult) -> str:
    """The text after 'WSGI-DRAIN STATUS - ' on the first line."""
    worst = [f.message for f in result.findings if f.level == result.status]
    if worst:
        more = len(result.findings) - len(worst)
        text = "; ".join(worst[:2])
        extra = len(worst) - 2 + more
        return f"{result.group}: {text}" + (f" (+{extra} more)" if extra > 0 else "")
    words = []
    if result.expected is not None:
        words.append(f"{len(result.processes)}/{result.expected} processes up")
    if result.health is not None:
        words.append(f"health {result.health.describe()}")
    words.extend(result.ok_notes)
    return f"{result.group}: " + ", ".join(words or ["ok"])


def print_check(result: CheckResult, thresholds: Thresholds, stream: TextIO | None = None) -> None:
    """Nagios plugin output: one status line with perfdata, then details."""
    from wsgi_drain import nagios

    out = stream if stream is not None else sys.stdout
    head = f"WSGI-DRAIN {result.status.name} - "
    worst = [f.message for f in result.findings if f.level == result.status]
    if worst:
        # One short first line (NRPE, pagers): the worst finding; all in full below.
        more = len(result.findings) - 1
        summary = f"{result.group}: {worst[0]}"
        suffix = f" (+{more} more)" if more else ""
    else:
        summary, suffix = check_summary(result), ""
    first = nagios.first_line(head, summary, suffix, check_perfdata(result, thresholds))
    details = [
        f"{finding.level.name}: {finding.message}"
        for finding in sorted(result.findings, key=lambda f: -f.level.severity)
        if finding.level != 0
    ]
    details.extend(f"note: {note}" for note in result.ok_notes)
    for p in result.processes:
        rss = f"{p.rss / 2**20:.0f} MiB" if p.rss else "?"
        details.append(f"pid {p.pid}: {p.state}, age {p.age:.0f} s, RSS {rss}, {p.threads} threads")
    out.write(nagios.output(first, details))


def check_dict(result: CheckResult, thresholds: Thresholds) -> dict[str, Any]:
    return {
        "schema": CHECK_SCHEMA,
        "group": result.group,
        "status": result.status.name,
        "exit_status": int(result.status),
        "summary": check_summary(result),
        "findings": [{"level": f.level.name, "message": f.message} for f in result.findings],
        "processes": [process_dict(p) for p in result.processes],
        "processes_expected": result.expected,
        "health": None
        if result.health is None
        else {
            "url": result.health.url,
            "ok": result.health.ok,
            "status": result.health.status,
            "latency": round(result.health.latency, 4),
            "error": result.health.error,
        },
        "forced_exits": result.forced,
        "routers_drained": result.routers_drained,
        "journal_left": result.journal,
        "leftovers": result.leftovers,
        "perfdata": check_perfdata(result, thresholds),
    }


def prometheus_text(result: CheckResult) -> str:
    """Metrics for node_exporter's textfile collector."""
    label = f'group="{_escape(result.group)}"'
    lines = []
    described: set[str] = set()

    def metric(name: str, help_text: str, value: float, labels: str = label) -> None:
        # HELP and TYPE once per metric name, however many series (routers) it has.
        if name not in described:
            described.add(name)
            lines.append(f"# HELP wsgi_drain_{name} {help_text}")
            lines.append(f"# TYPE wsgi_drain_{name} gauge")
        lines.append(f"wsgi_drain_{name}{{{labels}}} {value}")

    metric(
        "check_status",
        "Nagios status of the last check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
        int(result.status),
    )
    metric("check_timestamp_seconds", "When the last check ran.", round(time.time(), 3))
    if result.processes_known:  # not counted (UNKNOWN): no count, rather than a false 0
        metric("processes", "Live daemon processes of the group.", len(result.processes))
    if result.expected is not None:
        metric("processes_expected", "The group's processes= setting.", result.expected)
    if result.health is not None:
        metric("health_ok", "1 if the health URL answered 2xx.", int(result.health.ok))
        metric("health_seconds", "Health probe latency.", round(result.health.latency, 4))
    rss = [p.rss for p in result.processes if p.rss]
    if rss:
        metric("process_rss_max_bytes", "Largest RSS among the group's processes.", max(rss))
    if result.processes:
        metric(
            "process_age_max_seconds",
            "Age of the group's oldest process (perfdata age_max).",
            round(max(p.age for p in result.processes), 3),
        )
    if result.forced is not None:
        metric(
            "forced_exits",
            "Processes forced out by a timeout within the log window.",
            result.forced,
        )
    metric("journal_left", "1 if an interrupted restart left its journal.", int(result.journal))
    if result.leftovers is not None:
        metric(
            "leftovers",
            "Processes the group's replaced daemons left behind that still run.",
            result.leftovers,
        )
    from wsgi_drain.check import router_labels

    for router, drained in sorted(result.routers_drained.items()):
        labels = result.router_labels.get(router) or router_labels(router)
        metric(
            "router_drained",
            "1 if the router has the backend out of rotation.",
            int(drained),
            label + "".join(f',{k}="{_escape(v)}"' for k, v in sorted(labels.items())),
        )
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def process_dict(p: ProcessInfo) -> dict[str, Any]:
    return {
        "pid": p.pid,
        "state": p.state,
        "age": round(p.age, 1),
        "rss": p.rss,
        "threads": p.threads,
    }
