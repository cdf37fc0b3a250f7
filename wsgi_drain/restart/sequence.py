"""The restart sequence, phase by phase (DESIGN.md "Restart, phase by phase").

Discover, lock, divert, signal, watch, verify, warm, restore; one failure
policy (policy.py) applied at the end of every run that got as far as the
lock, however it ended.  Each phase is a module of this package taking the
records it needs (records.py); a new phase is a new module and a line here.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

from wsgi_drain.applog import RunLog
from wsgi_drain.config import Settings
from wsgi_drain.deadline import Deadline
from wsgi_drain.errors import DrainError
from wsgi_drain.interrupts import Interrupts
from wsgi_drain.outcome import Outcome, Progress
from wsgi_drain.restart.discover import discover
from wsgi_drain.restart.divert import divert
from wsgi_drain.restart.endings import app_words, endings_from_log, error_log_tail, hang_notes
from wsgi_drain.restart.impact import close_window, open_window, remember
from wsgi_drain.restart.leftovers import after_run
from wsgi_drain.restart.plan import plan
from wsgi_drain.restart.policy import Verdict
from wsgi_drain.restart.records import Job, Routing, Run, Target, Watched
from wsgi_drain.restart.restore import begin_journal, settle
from wsgi_drain.restart.rollback import answer_failure
from wsgi_drain.restart.rolling import rolling
from wsgi_drain.restart.signalling import signal_all
from wsgi_drain.restart.timing import watch_deadline
from wsgi_drain.restart.verify import verify, warm
from wsgi_drain.restart.watch import force_stuck, stuck_error, watch_all
from wsgi_drain.signals import parse_signal
from wsgi_drain.state import group_lock, router_lock


def restart(
    settings: Settings,
    *,
    dry_run: bool = False,
    force: bool = False,
    progress: Progress,
    py_spy: Path | None = None,
) -> Outcome:
    """Restart `settings.group` gracefully; never raises for a DrainError.

    The returned Outcome carries the error (and its exit status) if the run
    failed; routers have been restored or deliberately left diverted by then.
    """
    sig = parse_signal(settings.signal)
    outcome = Outcome(
        group=settings.group,
        mode=settings.mode,
        requested_mode=settings.mode,
        signal=sig.name,
        dry_run=dry_run,
    )
    with Interrupts() as interrupts:
        run = Run(settings, progress, interrupts, outcome, py_spy)
        verdict, watched = Verdict(), Watched()
        target: Target | None = None
        try:
            target, routing = discover(run)
            interrupts.check()
            if dry_run:
                plan(run, target, routing, sig)
            else:
                job = Job(run, target, routing, watched, verdict, sig, force)
                with _locked(run, routing), after_run(run, target, watched):
                    window = open_window(run, target, routing)
                    try:
                        _execute(job)
                    except DrainError as err:  # roll back when asked; say what serves
                        answer_failure(job, err)
                    finally:
                        settle(run, target, routing, verdict)
                        close_window(run, window, watched)
        except DrainError as err:
            outcome.error = err
            if verdict.signalled and target is not None:
                endings_from_log(run, target, watched)
                app_words(run, target, watched)
        except Exception as err:  # a bug: still reported, routers still settled above
            outcome.unexpected = err
    outcome.duration = time.monotonic() - outcome.started
    remember(settings.state_dir, outcome)
    return outcome


def _execute(job: Job) -> None:
    """Divert, signal, watch (or rolling mode's own loop), verify, warm; raise on failure."""
    run, target, routing, watched = job.run, job.target, job.routing, job.watched
    out, procs = run.outcome, target.procs
    begin_journal(run, routing)
    watched.log = RunLog(error_log_tail(run, target), procs.group.name)
    out.deadline = watch_deadline(procs.group, out.mode, run.settings.timeout, len(procs.processes))
    deadline = Deadline(out.deadline)

    if out.mode == "drain" and not divert(run, target, routing):
        out.mode = "rolling"  # the peers could not carry this host: restart in place
    if out.mode == "drain":
        handles = signal_all(job)
        stuck = watch_all(job, handles, deadline)
        stuck = force_stuck(job, stuck)
    else:
        stuck = rolling(job, deadline)
    endings_from_log(run, target, watched)
    hang_notes(run)
    if stuck:
        raise stuck_error(run, stuck)
    verify(run, target, watched, job.verdict)
    warm(run, target)


@contextlib.contextmanager
def _locked(run: Run, routing: Routing) -> Iterator[None]:
    """One run per group, and per router and group, at a time (a second caller: exit 7)."""
    s = run.settings
    with contextlib.ExitStack() as locks:
        locks.enter_context(group_lock(s.state_dir, s.group))
        for spec, _router in routing.routers:
            locks.enter_context(router_lock(s.state_dir, spec, s.group))
        yield
