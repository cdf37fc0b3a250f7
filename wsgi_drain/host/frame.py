"""The frame every host command (`reload`, `stop`) runs in, written once.

Find the instance, then either print the plan (--dry-run: the divert's
lines, then the command's own) or, under every
group's lock, run the command's own steps and always end with its own
`finish` (settle the routers, or leave the host out), whatever happened.
A DrainError ends in the outcome, never raised; any other exception is a
bug, reported as one (the routers were settled by `finish` first).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from wsgi_drain.errors import DrainError
from wsgi_drain.host.quiet import Host, discover_host, locked
from wsgi_drain.host.records import HostOutcome
from wsgi_drain.host.settings import HostSettings
from wsgi_drain.interrupts import Interrupts
from wsgi_drain.outcome import Outcome, Progress
from wsgi_drain.restart.policy import Verdict
from wsgi_drain.restart.records import Run
from wsgi_drain.state import HOST

Steps = Callable[[Run, Host, HostOutcome, Verdict], None]
# The last word of a run: `completed` is True only when the steps returned.
Finish = Callable[[Run, Host, HostOutcome, Verdict, bool], None]
Plan = Callable[[Run, Host, HostOutcome], None]


@dataclass(frozen=True)
class HostCommand:
    """A host command: its name (lock, journal, report), the signal it sends, its own steps."""

    kind: str
    signal_name: str
    # The dry run's line for a host with no router.
    without_router: str
    plan: Plan
    steps: Steps
    finish: Finish


def run_host_command(
    command: HostCommand, hs: HostSettings, *, dry_run: bool, progress: Progress
) -> HostOutcome:
    """Run `command` on the instance; never raises for a DrainError (it is in the outcome)."""
    kind, plan, steps, finish = command.kind, command.plan, command.steps, command.finish
    base = Outcome(group=HOST, mode="drain", requested_mode="drain", signal=command.signal_name)
    base.dry_run = dry_run
    out = HostOutcome(kind, base)
    with Interrupts() as interrupts:
        run = Run(hs.run, progress, interrupts, base)
        verdict = Verdict()
        try:
            host = discover_host(run, hs, out)
            interrupts.check()
            if dry_run:
                _plan_divert(run, host, command.without_router)
                plan(run, host, out)
                for line in base.plan:
                    progress("plan", line)
            else:
                with locked(run, host, kind):
                    completed = False
                    try:
                        steps(run, host, out, verdict)
                        completed = True
                    finally:
                        finish(run, host, out, verdict, completed)
        except DrainError as err:
            base.error = err
        except Exception as err:  # a bug: reported; routers settled by finish
            base.unexpected = err
    base.duration = time.monotonic() - base.started
    return out


def _plan_divert(run: Run, host: Host, without_router: str) -> None:
    """--dry-run: the divert's lines of the plan, first; `without_router` when the host has none."""
    s, plan = run.settings, run.outcome.plan
    for (_spec, router), rec in host.routing.paired():
        if rec.ours:
            plan.append(f"divert {router.name} and wait up to {s.drain_timeout:g} s")
        else:
            plan.append(f"leave {router.name} in {rec.before}; wait for its requests in flight")
    if not host.routing.routers:
        plan.append(without_router)
