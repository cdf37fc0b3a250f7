"""Text and JSON of the host's runs (`reload`, `stop`): report.py's cut for them.

The JSON keys are a contract like the restart's (`schema` is bumped when a
shape changes).  The routers, warnings and phases are the restart's own
records, formatted the same way.
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    # wsgi_drain.cli loads this for every command; `check` never loads a host run's records.
    from wsgi_drain.host.records import HostOutcome, ParentSeen

RELOAD_SCHEMA = "wsgi-drain/reload/v1"
STOP_SCHEMA = "wsgi-drain/stop/v1"

# What the host's JSON says of each router, in this order: a subset of the
# restart's (report.py), as reload/v1 and stop/v1 have it.
ROUTER_KEYS = (
    "name",
    "before",
    "diverted",
    "restored",
    "adopted",
    "sessions_at_signal",
    "up_after",
    "error",
)


def message(out: HostOutcome) -> str:
    """One line: the verdict and why."""
    base = out.base
    if base.unexpected is not None:
        return f"unexpected error: {type(base.unexpected).__name__}: {base.unexpected}"
    if base.error is not None:
        return str(base.error).splitlines()[0]
    if base.dry_run:
        return f"dry run: Apache pid {_pid(out.before)} would be {_done(out)}"
    if out.command == "stop":
        return (
            f"Apache pid {_pid(out.before)} stopped for maintenance in {base.duration:.2f} s: "
            f"{len(out.processes)} processes gone, the host left out of rotation "
            "(`wsgi-drain undrain --wait-ready` once Apache runs again)"
        )
    groups = [r for r in out.groups.values() if r.change != "removed"]
    changed = [f"{r.name} {r.change}" for r in out.groups.values() if r.change != "kept"]
    return (
        f"Apache pid {_pid(out.after)} reloaded in {base.duration:.2f} s: "
        f"generation {'/'.join(_numbers(out.before))} -> {'/'.join(_numbers(out.after))}, "
        f"{len(groups)} group(s) replaced" + (f" ({', '.join(changed)})" if changed else "")
    )


def _pid(seen: ParentSeen | None) -> int | None:
    return None if seen is None else seen.pid


def _numbers(seen: ParentSeen | None) -> list[str]:
    return [] if seen is None else list(seen.generations)


def _done(out: HostOutcome) -> str:
    return "reloaded" if out.command == "reload" else "stopped for maintenance"


def as_dict(out: HostOutcome) -> dict[str, Any]:
    base = out.base
    data: dict[str, Any] = {
        "schema": RELOAD_SCHEMA if out.command == "reload" else STOP_SCHEMA,
        "command": out.command,
        "verdict": base.verdict,
        "exit_status": int(base.status),
        "message": message(out),
        "dry_run": base.dry_run,
        "duration": round(base.duration, 3),
        "apache_pid": _pid(out.before),
        "apache_config": base.apache_config,
        "phases": [asdict(p) for p in base.phases],
        "groups": [asdict(g) for g in out.groups.values()],
        "routers": [{key: getattr(r, key) for key in ROUTER_KEYS} for r in base.routers],
        "left_diverted": base.left_diverted,
        "router_protected": not out.unprotected,
        "host_in_flight_at_signal": base.host_in_flight_at_signal,
        "warnings": base.warnings,
        "plan": base.plan,
    }
    if out.command == "reload":
        data["apache_pid_after"] = _pid(out.after)
        data["generation_before"] = _numbers(out.before)
        data["generation_after"] = _numbers(out.after)
        data["configtest"] = out.configtest
    else:
        data["processes"] = out.processes
        data["still_running"] = out.still_running
    return data


def print_text(out: HostOutcome, stream: TextIO | None = None) -> None:
    """The human summary on stdout."""
    w = (stream if stream is not None else sys.stdout).write
    base = out.base
    word = "OK" if base.status == 0 else base.verdict.upper()
    w(f"wsgi-drain: {word} - {message(out)}\n")
    for line in base.plan:
        w(f"  would: {line}\n")
    for g in out.groups.values():
        old = " ".join(map(str, g.old_pids)) or "-"
        new = " ".join(map(str, g.new_pids)) or "-"
        health = ""
        if g.health is not None:
            health = f"  health HTTP {g.health['status'] or g.health['error']}"
        if out.command == "reload" and not base.dry_run:
            w(f"  group {g.name}: {g.change}, [{old}] -> [{new}]{health}\n")
        else:
            w(f"  group {g.name}: [{old}]\n")
    for r in base.routers:
        state = "restored" if r.restored else ("LEFT OUT" if r.diverted else "untouched")
        w(f"  router {r.name}: {state}\n")
    if out.configtest is not None and not out.configtest["ok"]:
        w(f"  configtest: {out.configtest['command']}\n")
        for line in str(out.configtest["output"]).splitlines():
            w(f"    {line}\n")
    for warning in base.warnings:
        w(f"  warning: {warning}\n")
    if base.unexpected is not None:
        w("  this is a bug in wsgi-drain; the traceback is on stderr\n")
