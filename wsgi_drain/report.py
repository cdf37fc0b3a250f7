"""The only place that formats for people and machines: progress, summaries, JSON.

The JSON report's keys are a contract for deploy scripts (README "JSON report");
add keys freely, never rename or remove one without bumping `schema`.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

from wsgi_drain.outcome import Outcome

RESTART_SCHEMA = "wsgi-drain/restart/v1"


class ProgressPrinter:
    """Progress lines on stderr: elapsed time, phase, message."""

    def __init__(self, stream: TextIO | None = None, *, quiet: bool = False) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.started = time.monotonic()

    def __call__(self, phase: str, message: str) -> None:
        if self.quiet:
            return
        elapsed = time.monotonic() - self.started
        self.stream.write(f"[{elapsed:6.2f}s] {phase:<8} {message}\n")
        self.stream.flush()


def outcome_message(outcome: Outcome) -> str:
    """One line: the verdict and why."""
    if outcome.unexpected is not None:
        return f"unexpected error: {type(outcome.unexpected).__name__}: {outcome.unexpected}"
    if outcome.error is not None:
        return str(outcome.error)
    if outcome.dry_run:
        return f"dry run: group {outcome.group!r} would be restarted in {outcome.mode} mode"
    replaced = sum(1 for p in outcome.processes if p.ending not in ("alive", "stuck"))
    return (
        f"group {outcome.group!r} restarted in {outcome.duration:.2f} s: "
        f"{replaced}/{len(outcome.processes)} processes replaced ({outcome.mode} mode)"
    )


def restart_dict(outcome: Outcome) -> dict[str, Any]:
    """The `--json` report of a restart (schema wsgi-drain/restart/v1)."""
    return {
        "schema": RESTART_SCHEMA,
        "group": outcome.group,
        "verdict": outcome.verdict,
        "exit_status": int(outcome.status),
        "message": outcome_message(outcome),
        "mode": outcome.mode,
        "requested_mode": outcome.requested_mode,
        "signal": outcome.signal,
        "dry_run": outcome.dry_run,
        "apache": {"pid": outcome.apache_pid, "config": outcome.apache_config},
        "processes_expected": outcome.processes_expected,
        "deadline": outcome.deadline,
        "duration": round(outcome.duration, 4),
        "phases": [
            {
                "name": p.name,
                "status": p.status,
                "duration": round(p.duration, 4),
                "detail": p.detail,
            }
            for p in outcome.phases
        ],
        "processes": [
            {
                "old_pid": p.old_pid,
                "new_pid": p.new_pid,
                "signals": p.signals,
                "ending": p.ending,
                "exited_after": None if p.exited_after is None else round(p.exited_after, 4),
                "threads": p.threads,
                "stack": p.stack,
            }
            for p in outcome.processes
        ],
        "new_pids": outcome.new_pids,
        "routers": [
            {
                "name": r.name,
                "diverted": r.diverted,
                "restored": r.restored,
                "sessions_at_signal": r.sessions_at_signal,
                "peers_up": r.peers_up,
                "error": r.error,
            }
            for r in outcome.routers
        ],
        "health": outcome.health,
        "left_diverted": outcome.left_diverted,
        "warnings": outcome.warnings,
        "plan": outcome.plan,
    }


def print_json(data: dict[str, Any], stream: TextIO | None = None) -> None:
    out = stream if stream is not None else sys.stdout
    out.write(json.dumps(data, indent=2) + "\n")


def print_restart(outcome: Outcome, stream: TextIO | None = None) -> None:
    """The human summary of a restart, on stdout."""
    out = stream if stream is not None else sys.stdout
    word = "OK" if outcome.status == 0 else outcome.verdict.upper()
    out.write(f"wsgi-drain: {word} - {outcome_message(outcome)}\n")
    if outcome.dry_run:
        for line in outcome.plan:
            out.write(f"  would: {line}\n")
    for p in outcome.processes:
        new = str(p.new_pid) if p.new_pid else "-"
        after = f"exited after {p.exited_after:.2f} s" if p.exited_after is not None else ""
        signals = ",".join(p.signals) or "not signalled"
        out.write(f"  pid {p.old_pid:>7} -> {new:>7}  {p.ending:<8} {signals:<16} {after}\n")
        if p.stack:
            out.write("    " + p.stack.replace("\n", "\n    ") + "\n")
    for r in outcome.routers:
        state = "restored" if r.restored else ("LEFT DIVERTED" if r.diverted else "untouched")
        out.write(f"  router {r.name}: {state}\n")
    if outcome.health is not None:
        h = outcome.health
        answer = f"HTTP {h['status']}" if h["status"] is not None else f"failed ({h['error']})"
        out.write(f"  health {h['url']}: {answer}\n")
    for warning in outcome.warnings:
        out.write(f"  warning: {warning}\n")
    if outcome.unexpected is not None:
        out.write("  this is a bug in wsgi-drain; the traceback is on stderr\n")
