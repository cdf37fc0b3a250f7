"""What runs cost, for people and machines: the impact line, the restart's metrics, the history.

report.py's part for issue 21, kept apart so report.py only calls it: the
`impact` line and JSON of a restart, the Prometheus textfile of the last
run (node_exporter's textfile collector, the conventions of check's:
`wsgi_drain_` names, a `group` label, HELP and TYPE once per name), and
`status --history`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, TextIO

from wsgi_drain.impact import Impact, Source

if TYPE_CHECKING:
    # Annotations only: `check` loads this module (through report) and never the restart's outcome.
    from wsgi_drain.outcome import Outcome

# Evidence lines shown under the text report's impact line (JSON has them all).
SHOWN_EVIDENCE = 5


def _source_words(source: Source) -> str:
    if not source.read:
        return f"{_label(source)}: not read ({source.error})"
    if source.kind == "haproxy":
        return f"{_label(source)} +{source.failed}"
    return f"{_label(source)}: " + ("none" if not source.failed else f"{source.failed} line(s)")


def _label(source: Source) -> str:
    return {"haproxy": "HAProxy counters", "apache-log": "Apache log", "nginx-log": "nginx log"}[
        source.kind
    ]


def impact_line(impact: Impact) -> str:
    """ "impact: 0 requests failed (HAProxy counters +0, Apache log: none)"."""
    words = ", ".join(_source_words(s) for s in impact.sources)
    failed = impact.failed
    if failed is None:
        return f"impact: unknown, no source could be read ({words})"
    noun = "request" if failed == 1 else "requests"
    return f"impact: {failed} {noun} failed ({words})"


def impact_dict(impact: Impact | None) -> dict[str, Any] | None:
    if impact is None:
        return None
    return {
        "failed": impact.failed,
        "window": {"start": round(impact.started, 3), "end": _rounded(impact.ended)},
        "sources": [
            {
                "kind": s.kind,
                "name": s.name,
                "read": s.read,
                "failed": s.failed,
                "error": s.error,
                "counters": s.counters,
                "evidence": s.evidence,
            }
            for s in impact.sources
        ],
        "evidence": impact.evidence,
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def write_impact(impact: Impact | None, out: TextIO) -> None:
    """The text report's impact line and the first lines of evidence."""
    if impact is None:
        return
    out.write(f"  {impact_line(impact)}\n")
    evidence = impact.evidence
    for line in evidence[:SHOWN_EVIDENCE]:
        out.write(f"    evidence: {line}\n")
    if len(evidence) > SHOWN_EVIDENCE:
        out.write(f"    ... {len(evidence) - SHOWN_EVIDENCE} more (--json has them all)\n")


def replaced(outcome: Outcome) -> int:
    return sum(1 for p in outcome.processes if p.ending not in ("alive", "stuck"))


def restart_metrics(outcome: Outcome, ended: float | None = None) -> str:
    """The last run of the group as Prometheus text (node_exporter textfile collector).

    `wsgi_drain_restart_impact_failed` is absent when no source could be
    read (unknown is not 0); `..._impact_known` says which.
    """
    label = f'group="{_escape(outcome.group)}"'
    lines: list[str] = []

    def metric(name: str, help_text: str, value: float, labels: str = label) -> None:
        lines.append(f"# HELP wsgi_drain_{name} {help_text}")
        lines.append(f"# TYPE wsgi_drain_{name} gauge")
        lines.append(f"wsgi_drain_{name}{{{labels}}} {value}")

    metric(
        "restart_exit_status",
        "Exit status of the last restart (0 success; DESIGN.md's table).",
        int(outcome.status),
    )
    metric("restart_success", "1 if the last restart succeeded.", int(outcome.status == 0))
    metric(
        "restart_verdict",
        "The last restart's verdict, as a label (always 1).",
        1,
        f'{label},verdict="{_escape(outcome.verdict)}"',
    )
    metric(
        "restart_duration_seconds", "How long the last restart took.", round(outcome.duration, 3)
    )
    metric(
        "restart_processes_replaced", "Old processes the last restart replaced.", replaced(outcome)
    )
    metric("restart_processes", "Old processes the last restart found.", len(outcome.processes))
    failed = None if outcome.impact is None else outcome.impact.failed
    metric(
        "restart_impact_known",
        "1 if a source of failed requests could be read.",
        int(failed is not None),
    )
    if failed is not None:
        metric(
            "restart_impact_failed",
            "Requests that failed during the last restart (largest count among the sources).",
            failed,
        )
    end = time.time() if ended is None else ended
    metric("restart_end_timestamp_seconds", "When the last restart ended.", round(end, 3))
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


HISTORY_SCHEMA = "wsgi-drain/history/v1"


def history_dict(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """`status --history --json`: the records as the runs wrote them, oldest first."""
    return {"schema": HISTORY_SCHEMA, "groups": runs}


def _sources_of(record: dict[str, Any]) -> Impact | None:
    data = record.get("impact")
    if not isinstance(data, dict):
        return None
    impact = Impact(started=0.0)
    for s in data.get("sources") or []:
        if isinstance(s, dict):
            impact.sources.append(
                Source(
                    kind=str(s.get("kind")),
                    name=str(s.get("name")),
                    read=bool(s.get("read")),
                    failed=s.get("failed"),
                    error=s.get("error"),
                )
            )
    return impact


def history_lines(record: dict[str, Any]) -> list[str]:
    """One recorded run in words: its line, and what was lost before it, outside any run."""
    ended = record.get("ended")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ended)) if ended else "?"
    impact = _sources_of(record)
    words = "impact: not measured" if impact is None else impact_line(impact)
    if impact is not None and not impact.sources:
        words = "impact: no source looked at"
    lines = [
        f"{when}  {record.get('verdict', '?'):<12} {record.get('duration', 0):>7.2f} s  "
        f"{record.get('replaced', '?')}/{record.get('processes', '?')} replaced  {words}"
    ]
    before = record.get("before_run")
    if isinstance(before, dict) and before.get("read"):
        failed = before.get("failed") or 0
        noun = "request" if failed == 1 else "requests"
        since = before.get("since")
        at = time.strftime("%H:%M:%S", time.localtime(since)) if since else "?"
        lines.append(f"  before it: {failed} {noun} failed outside any run since {at} (Apache log)")
        lines.extend(
            f"    evidence: {line}" for line in before.get("evidence", [])[:SHOWN_EVIDENCE]
        )
    return lines


def print_history(
    runs: dict[str, list[dict[str, Any]]], state_dir: object, out: TextIO | None = None
) -> None:
    import sys

    stream = out if out is not None else sys.stdout
    if not any(runs.values()):
        stream.write(f"no run recorded in {state_dir}\n")
        return
    for group, records in sorted(runs.items()):
        stream.write(f"group {group}: last {len(records)} run(s)\n")
        for record in records:
            for line in history_lines(record):
                stream.write(f"  {line}\n")
