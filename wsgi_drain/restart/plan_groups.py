"""The plan of a run over several groups (--dry-run): the host's steps once, each group's own.

The divert and the restore are said once, for the host; each group's own
steps (signal, watch deadline, health probe) are plan.py's, with no router
(its section), so the whole run reads top to bottom.  Nothing is changed.
"""

from __future__ import annotations

import signal

from wsgi_drain.restart.plan import plan
from wsgi_drain.restart.records import Routing, Run, Target


def plan_groups(
    host_run: Run, groups: list[tuple[Run, Target, signal.Signals]], routing: Routing
) -> None:
    """--dry-run: the host's divert and restore once, each group's own steps between."""
    out, s = host_run.outcome, host_run.settings
    names = ", ".join(run.settings.group for run, _target, _sig in groups)
    if out.mode == "drain":
        for (_spec, router), rec in routing.paired():
            if rec.ours:
                out.plan.append(
                    f"divert {router.name} once for groups {names} and wait up to "
                    f"{s.drain_timeout:g} s for its requests in flight"
                )
            else:
                out.plan.append(f"leave {router.name} in {rec.before} (not this run's)")
        out.plan.append(
            "wait for each group's requests that bypassed the router, then signal every "
            "group at once"
        )
    else:
        out.plan.append(f"restart the groups one after the other, in place: {names}")
    for line in out.plan:
        host_run.progress("plan", line)
    empty = Routing(routers=(), records=[])
    for run, target, sig in groups:
        plan(run, target, empty, sig)
    tail = []
    if out.mode == "drain":
        back = [rec.name for rec in routing.records if rec.ours]
        if back:
            tail.append(f"restore {', '.join(back)} once, only if every group is healthy")
    else:
        tail.append("stop at the first group that fails: the groups after it are not touched")
    out.plan.extend(tail)
    for line in tail:
        host_run.progress("plan", line)
