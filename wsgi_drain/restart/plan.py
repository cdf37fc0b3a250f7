"""The plan (--dry-run): what a run would do, phase by phase, with nothing changed."""

from __future__ import annotations

import shlex
import signal

from wsgi_drain import inflight
from wsgi_drain.restart.records import Routing, Run, Target
from wsgi_drain.restart.timing import IDLE_WAIT, watch_deadline


def plan(run: Run, target: Target, routing: Routing, sig: signal.Signals) -> None:
    """Fill the report's plan and say each line; divert, signal and restore are only described."""
    out, procs, s = run.outcome, target.procs, run.settings
    group = procs.group
    out.deadline = watch_deadline(group, out.mode, s.timeout, len(procs.processes))
    if out.mode == "drain":
        for (_spec, router), rec in routing.paired():
            if rec.before == "ready":
                out.plan.append(f"divert {router.name} and wait up to {s.drain_timeout:g} s")
            elif rec.adopted:
                out.plan.append(
                    f"keep {router.name} in {rec.before}, where an earlier run left it; wait up "
                    f"to {s.drain_timeout:g} s for its requests in flight"
                )
            else:
                out.plan.append(
                    f"leave {router.name} in {rec.before}; wait up to "
                    f"{s.drain_timeout:g} s for its requests in flight"
                )
        out.plan.append(f"send {sig.name} to {' '.join(map(str, procs.pids))} at once")
    else:
        counts = (
            inflight.by_process(procs.pids, procs.socket.path) if procs.socket is not None else None
        )
        if counts is None:
            order = f"{' '.join(map(str, procs.pids))}: {sig.name}, then SIGTERM after "
            order += f"{IDLE_WAIT:g} s if still busy"
        else:
            now = ", ".join(f"{pid}: {len(counts.get(pid, ()))}" for pid in procs.pids)
            order = (
                f"idle first, by requests in flight now ({now}): {sig.name}, then SIGTERM once "
                "the requests it had are done"
            )
        out.plan.append(
            f"one process at a time ({order}; requests it takes meanwhile get shutdown-timeout "
            f"{group.shutdown_window:g} s), wait for its replacement"
            + (" and a healthy answer" if s.health_url else "")
            + ", stop at the first that fails"
        )
        out.plan.append(
            "no router: a request running when its process is signalled gets at most the drain "
            f"window + shutdown-timeout ({group.drain_window:g} + {group.shutdown_window:g} s), "
            f"one arriving later at least shutdown-timeout ({group.shutdown_window:g} s); a "
            "longer one is cut. Only a router (drain mode) lets it finish"
        )
    out.plan.append(f"wait up to {out.deadline:g} s for {target.expected} new processes")
    if s.health_url:
        out.plan.append(f"probe {s.health_url}")
    put_back = [rec.name for rec in out.routers if rec.ours]
    if out.mode == "drain" and put_back:
        out.plan.append("restore " + ", ".join(put_back))
    if s.rollback:
        out.plan.append(
            f"if the new code is known bad: run {shlex.join(s.rollback)} (at most "
            f"{s.rollback_timeout:g} s), replace the processes on the new code, verify again"
        )
    for line in out.plan:
        run.progress("plan", line)
