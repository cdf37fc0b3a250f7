"""The report of a run over several groups: one section per group, one verdict for the run.

Text and JSON, from a GroupsOutcome; each group's section is report.py's
own single-group report of that group (its processes, health, warnings),
and the host's part (routers, divert, restore) is said once.  The JSON's
schema is wsgi-drain/restart/v2: the run's verdict at the top, and a
`groups` list holding each group's v1 report (without its routers, which
are the host's).  A run of one group keeps the v1 report unchanged.
"""

from __future__ import annotations

import io
import sys
from typing import Any, TextIO

from wsgi_drain import report
from wsgi_drain.groups_outcome import GroupsOutcome
from wsgi_drain.outcome import Outcome

GROUPS_SCHEMA = "wsgi-drain/restart/v2"

print_json = report.print_json
NOT_RESTARTED = "not restarted: the run stopped before this group was signalled"


def groups_message(result: GroupsOutcome) -> str:
    """One line: the run's verdict and why."""
    host, names = result.host, ", ".join(repr(n) for n in result.names)
    # Every failed group is named on this line, and each one's error is said in
    # its own section below: on stdout, once (decision 59), never on stderr.
    failed = result.failed
    if host.unexpected is not None or host.error is not None:
        named = ", ".join(repr(o.group) for o in failed)
        return report.outcome_message(host) + (f" (failed: {named})" if named else "")
    if failed:
        first, others = failed[0], ", ".join(repr(o.group) for o in failed[1:])
        more = f" (also failed: {others})" if others else ""
        return f"group {first.group!r}: {report.outcome_message(first)}{more}"
    if host.dry_run:
        return f"dry run: groups {names} would be restarted in one run, {host.mode} mode"
    processes = [p for o in result.groups for p in o.processes]
    replaced = sum(1 for p in processes if p.ending not in ("alive", "stuck"))
    diverted = any(r.diverted for r in host.routers)
    return (
        f"groups {names} restarted in {host.duration:.2f} s: {replaced}/{len(processes)} "
        f"processes replaced ({host.mode} mode"
        + ("; the host diverted once" if diverted else "")
        + ")"
    )


def groups_dict(result: GroupsOutcome) -> dict[str, Any]:
    """The `--json` report of a run over several groups (schema wsgi-drain/restart/v2)."""
    host = report.restart_dict(result.host)
    sections = []
    for out in result.groups:
        section = report.restart_dict(out)
        del section["schema"], section["routers"]
        section["signalled"] = not _untouched(out)
        if _untouched(out) and out.error is None and out.unexpected is None:
            section["message"] = NOT_RESTARTED
        sections.append(section)
    return {
        "schema": GROUPS_SCHEMA,
        "groups": sections,
        "verdict": result.verdict,
        "exit_status": int(result.status),
        "message": groups_message(result),
        "failed_groups": [o.group for o in result.failed],
        **{
            key: host[key]
            for key in (
                "mode",
                "requested_mode",
                "signal",
                "dry_run",
                "duration",
                "phases",
                "routers",
                "left_diverted",
                "host_in_flight_at_signal",
                "peer_wait",
                "backoffs",
                "warnings",
                "plan",
            )
        },
        "apache": next((g["apache"] for g in sections if g["apache"]["pid"]), host["apache"]),
    }


def print_groups(result: GroupsOutcome, stream: TextIO | None = None) -> None:
    """The human summary: the run's verdict, the host's part, then one section per group."""
    out = stream if stream is not None else sys.stdout
    host = result.host
    word = "OK" if result.status == 0 else result.verdict.upper()
    out.write(f"wsgi-drain: {word} - {groups_message(result)}\n")
    for line in host.plan:
        out.write(f"  would: {line}\n")
    for r in host.routers:
        state = "restored" if r.restored else ("LEFT DIVERTED" if r.diverted else "untouched")
        out.write(f"  router {r.name}: {state}\n")
    for warning in host.warnings:
        out.write(f"  warning: {warning}\n")
    if host.unexpected is not None:
        out.write("  this is a bug in wsgi-drain; the traceback is on stderr\n")
    for group in result.groups:
        _section(group, out)


def _untouched(group: Outcome) -> bool:
    """A group of a real run that was never signalled (the run stopped before it)."""
    return not group.dry_run and not any(p.signals for p in group.processes)


def _section(group: Outcome, out: TextIO) -> None:
    """One group's section: report.py's single-group summary, under the group's name."""
    text = io.StringIO()
    report.print_restart(group, text)
    head, *rest = text.getvalue().splitlines()
    word = head.removeprefix("wsgi-drain: ").split(" - ", 1)[0]
    failed = group.error is not None or group.unexpected is not None
    if _untouched(group) and not failed:
        word, rest = "NOT RESTARTED", [f"  {NOT_RESTARTED}", *rest]
    out.write(f"group {group.group}: {word}\n")
    if failed:
        out.write(f"  {report.outcome_message(group)}\n")
    for line in rest:
        out.write(f"{line}\n")
