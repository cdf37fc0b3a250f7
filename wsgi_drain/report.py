"""The only place that formats for people and machines: progress, summaries, JSON.

With its cuts for one command each: report_check.py (`check`), report_runs.py
(what runs cost, `status --history`), report_host.py (`reload`, `stop`) and
report_groups.py (a run over several groups).

The JSON report's keys are a contract for deploy scripts (README "JSON report");
add keys freely, never rename or remove one without bumping `schema`.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from wsgi_drain import newcode
from wsgi_drain.report_check import process_dict

if TYPE_CHECKING:
    # Annotations only: `check`, run every minute, never loads outcome (the restart's).
    from wsgi_drain.inventory import Inventory
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
        try:
            self.stream.write(f"[{elapsed:6.2f}s] {phase:<8} {message}\n")
            self.stream.flush()
        except OSError:
            # The terminal went away (SSH dropped: EIO); the run must still
            # finish its failure policy, so progress is dropped, not fatal.
            self.quiet = True


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
        + (f"; {outcome.apache_restarted}" if outcome.apache_restarted else "")
        + "".join(f"; {note}" for note in outcome.notes)
    )


def restart_dict(outcome: Outcome) -> dict[str, Any]:
    """The `--json` report of a restart (schema wsgi-drain/restart/v1)."""
    from wsgi_drain.report_runs import impact_dict  # a restart's: a check never loads it

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
                "hung_in_shutdown": p.hung,
                "hang_threads": p.hang_threads,
                "in_flight_at_signal": p.in_flight_at_signal,
            }
            for p in outcome.processes
        ],
        "new_pids": outcome.new_pids,
        "routers": [
            {
                "name": r.name,
                "before": r.before,
                "diverted": r.diverted,
                "restored": r.restored,
                "adopted": r.adopted,
                "unconfirmed": r.unconfirmed,
                "sessions_at_signal": r.sessions_at_signal,
                "peers_up": r.peers_up,
                "peers_out": list(r.peers_out),
                "up_after": None if r.up_after is None else round(r.up_after, 3),
                "out_at": r.out_at,
                "back_at": r.back_at,
                "error": r.error,
            }
            for r in outcome.routers
        ],
        "health": outcome.health,
        "left_diverted": outcome.left_diverted,
        "host_in_flight_at_signal": outcome.host_in_flight_at_signal,
        "peer_wait": round(outcome.peer_wait, 3),
        "backoffs": outcome.backoffs,
        "warm": outcome.warm,
        "warnings": outcome.warnings,
        "app_log": outcome.app_log,
        "apache_restarted": outcome.apache_restarted,
        "plan": outcome.plan,
        "rollback": outcome.rollback,
        "serving": outcome.serving,
        "impact": impact_dict(outcome.impact),
        "leftovers": [
            {
                "pid": d.pid,
                "cmdline": d.cmdline,
                "daemon_pid": d.daemon_pid,
                "age": round(d.age, 1),
                "ending": d.ending,
                "signals": d.signals,
            }
            for d in outcome.leftovers
        ],
    }


ERROR_SCHEMA = "wsgi-drain/error/v1"


def error_dict(verdict: str, exit_status: int, message: str) -> dict[str, Any]:
    """`--json` of a command that stopped before its own report: a usage error, a DrainError."""
    return {
        "schema": ERROR_SCHEMA,
        "verdict": verdict,
        "exit_status": exit_status,
        "message": message,
    }


def print_json(data: dict[str, Any], stream: TextIO | None = None) -> None:
    import json  # only --json prints it (a cron check prints text: issue 22)

    out = stream if stream is not None else sys.stdout
    out.write(json.dumps(data, indent=2) + "\n")


def print_restart(outcome: Outcome, stream: TextIO | None = None) -> None:
    """The human summary of a restart, on stdout."""
    from wsgi_drain.report_runs import write_impact

    out = stream if stream is not None else sys.stdout
    word = "OK" if outcome.status == 0 else outcome.verdict.upper()
    out.write(f"wsgi-drain: {word} - {outcome_message(outcome)}\n")
    if outcome.dry_run:
        for line in outcome.plan:
            out.write(f"  would: {line}\n")
    shown: dict[tuple[str, ...], int] = {}  # hang threads -> the pid whose stack was shown
    for p in outcome.processes:
        new = str(p.new_pid) if p.new_pid else "-"
        after = f"exited after {p.exited_after:.2f} s" if p.exited_after is not None else ""
        signals = ",".join(p.signals) or "not signalled"
        out.write(f"  pid {p.old_pid:>7} -> {new:>7}  {p.ending:<8} {signals:<16} {after}\n")
        if not p.stack:
            continue
        # Every process of a group hangs on the same thread: show that stack once.
        key = tuple(p.hang_threads)
        if p.hung and key and key in shown:
            out.write(f"    stack: like pid {shown[key]} (thread {', '.join(key)})\n")
            continue
        shown.setdefault(key, p.old_pid)
        out.write("    " + p.stack.replace("\n", "\n    ") + "\n")
    for d in outcome.leftovers:
        out.write(
            f"  left behind: pid {d.pid} from daemon {d.daemon_pid}, age {d.age:.0f} s, "
            f"{d.ending or 'still running'}: {d.command[:200]}\n"
        )
    for r in outcome.routers:
        state = "restored" if r.restored else ("LEFT DIVERTED" if r.diverted else "untouched")
        out.write(f"  router {r.name}: {state}\n")
    write_impact(outcome.impact, out)
    if outcome.health is not None:
        h = outcome.health
        answer = f"HTTP {h['status']}" if h["status"] is not None else f"failed ({h['error']})"
        out.write(f"  health {h['url']}: {answer}\n")
    for warning in outcome.warnings:
        out.write(f"  warning: {warning}\n")
    if outcome.serving is not None:
        s = outcome.serving
        out.write(f"  serving: new code (failing) {s['new_code']}, old code {s['old_code']}\n")
    if outcome.rollback is not None:
        rb = outcome.rollback
        out.write(f"  rollback {rb['program']}: exit status {rb['exit_status']}\n")
        for line in str(rb["output"]).splitlines()[-10:]:
            out.write(f"    {line}\n")
    if outcome.app_log:
        out.write("  the app's error log since the signal:\n")
        for line in outcome.app_log:
            out.write(f"    {line}\n")
    if outcome.unexpected is not None:
        out.write("  this is a bug in wsgi-drain; the traceback is on stderr\n")


STATUS_SCHEMA = "wsgi-drain/status/v1"


def status_dict(inv: Inventory) -> dict[str, Any]:
    return {
        "schema": STATUS_SCHEMA,
        "instances": [
            {
                "pid": ist.instance.pid,
                "config": str(ist.instance.config_path),
                "groups": [
                    {
                        "name": gs.group.name,
                        "id": gs.group.id,
                        "processes_expected": gs.group.processes,
                        "threads": gs.group.threads,
                        "options": dict(gs.group.options),
                        "drain_window": gs.group.drain_window,
                        "shutdown_timeout": gs.group.shutdown_window,
                        "identified_by": gs.proof.method if gs.proof else None,
                        "socket": gs.proof.socket.path if gs.proof and gs.proof.socket else None,
                        "error": gs.error,
                        "warnings": gs.warnings,
                        "processes": [process_dict(p) for p in gs.processes],
                        "routers": [
                            {
                                "name": r.name,
                                "admin": r.admin,
                                "status": r.status,
                                "sessions": r.sessions,
                                "queued": r.queued,
                                "peers_up": r.peers_up,
                                "since": r.since,
                            }
                            for r in gs.routers
                        ],
                        "router_errors": gs.router_errors,
                    }
                    for gs in ist.groups
                ],
            }
            for ist in inv.instances
        ],
        "journals": [
            {
                "group": j.group,
                "pid": j.pid,
                "started": j.started,
                "phase": j.phase,
                "kind": j.kind,
                "running": j.group in inv.running,
                "before": j.before,
                "diverted": j.diverted,
                "signalled": j.signalled,
                "note": j.note,
                "new_code": j.new_code,
                "rollback": j.rollback,
                "groups": j.groups,
            }
            for j in inv.journals
        ],
        "leftovers": [
            {
                "group": name,
                "pid": e.pid,
                "cmdline": list(e.cmdline),
                "daemon_pid": e.daemon_pid,
                "age": round(e.age, 1),
            }
            for name, entries in sorted(inv.leftovers.items())
            for e in entries
        ],
        "errors": inv.errors,
    }


def print_status(inv: Inventory, stream: TextIO | None = None) -> None:
    out = stream if stream is not None else sys.stdout
    if not inv.instances:
        out.write("no Apache instance found\n")
    for ist in inv.instances:
        out.write(f"Apache pid {ist.instance.pid}  {ist.instance.config_path}\n")
        for gs in ist.groups:
            g = gs.group
            out.write(
                f"  group {g.name}  processes={g.processes} threads={g.threads} "
                f"drain={g.drain_window:g}s shutdown={g.shutdown_window:g}s  "
                f"({len(gs.processes)}/{g.processes} up"
                + (f", by {gs.proof.method}" if gs.proof else "")
                + ")\n"
            )
            for warning in gs.warnings:
                out.write(f"    warning: {warning}\n")
            if gs.error:
                out.write(f"    error: {gs.error}\n")
            for p in gs.processes:
                rss = f"{p.rss / 2**20:.0f} MiB" if p.rss else "?"
                out.write(
                    f"    pid {p.pid:>7}  {p.state:<9} age {_age(p.age):>8}  RSS {rss:>8}  "
                    f"{p.threads} threads\n"
                )
            for r in gs.routers:
                since = f" since {_age(r.since)}" if r.since is not None else ""
                out.write(
                    f"    router {r.name}: {r.admin} ({r.status}{since}), {r.sessions} in flight, "
                    f"{r.peers_up} other server(s) UP\n"
                )
            for err in gs.router_errors:
                out.write(f"    router error: {err}\n")
    for j in inv.journals:
        if j.group in inv.running:
            # Never advise undrain for a run that is going: it would put the
            # backend back mid-restart (and undrain refuses anyway).
            out.write(f"journal: group {j.group}: a {j.kind} is running (pid {j.pid}, {j.phase})\n")
            continue
        what = "drained by hand" if j.kind == "drain" else f"run by pid {j.pid} in phase {j.phase}"
        # A host's reload or stop (wsgi_drain/host/) is undone from any of its groups.
        host = j.kind in ("reload", "stop")
        out.write(
            (
                f"journal: the host's {j.kind} {what}"
                if host
                else f"journal: group {j.group} {what}{newcode.rollback_words(j)}"
            )
            + (f" ({j.note})" if j.note else "")
            + (f" (a run of groups {', '.join(j.groups)})" if len(j.groups) > 1 else "")
            + "; undo with: "
            + (
                "wsgi-drain undrain --group GROUP --wait-ready 60 (any group of this host)\n"
                if host
                else f"{newcode.fix_for(j, j.group)}\n"
            )
        )
    for name, entries in sorted(inv.leftovers.items()):
        for e in entries:
            out.write(
                f"left behind: group {name}: pid {e.pid} from daemon {e.daemon_pid}, age "
                f"{_age(e.age)}: {e.command[:200]}\n"
            )
    for err in inv.errors:
        out.write(f"error: {err}\n")


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"
