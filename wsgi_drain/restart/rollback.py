"""Rollback: when the new code is known bad after the signal, the deploy's own way back.

The failure policy alone can only stop the rollout (rolling mode) or keep
the host out of rotation (drain mode); the users' way back is the old code.
With `--rollback PROGRAM` (or `rollback = [...]` in the group's table) a run
whose new code is known bad (an import error, a crash loop, an unhealthy
health URL, replacements that never come up: `verdict.healthy` False) runs
the program once, bounded by `--rollback-timeout` (its process group killed
at the timeout, its output kept for the report), then replaces every
process that runs the new code (proven members of the group, through
pidfds, all at once: they only fail requests; in rolling mode the processes
never signalled still run the old code and are not touched), verifies health
again, and lets the policy put back what this run diverted: exit 8, "rolled
back".  A rollback program that fails or hangs, or old code that is
unhealthy too, ends as the failure alone would (exit 6, left diverted where
there is a router), with both failures named.

Not rolled back: a run interrupted (the operator's word decides), a process
stuck in shutdown (the old code's hang, not the new code's fault), Apache
dead (nothing to replace).  An interrupt during the rollback follows the
failure policy: the new code stays known bad, so nothing is put back.
"""

from __future__ import annotations

import os
import shlex
import time

from wsgi_drain.applog import RunLog
from wsgi_drain.deadline import Deadline
from wsgi_drain.discovery import GroupProcesses
from wsgi_drain.errors import (
    ApacheDiedError,
    DrainError,
    Interrupted,
    RollbackFailedError,
    RolledBack,
)
from wsgi_drain.outcome import Phase
from wsgi_drain.program import ProgramResult, run_bounded
from wsgi_drain.restart.apache_restarted import reader
from wsgi_drain.restart.crashloop import watching_reader
from wsgi_drain.restart.endings import error_log_tail
from wsgi_drain.restart.policy import Verdict, cause_only, ours_diverted, tells_new_code
from wsgi_drain.restart.records import Job, Run, Target, Watched, close
from wsgi_drain.restart.serving import NEW_CODE_PHASE, NewCodeServingError, serving_now
from wsgi_drain.restart.signalling import signal_all
from wsgi_drain.restart.timing import watch_deadline
from wsgi_drain.restart.verify import verify, warm
from wsgi_drain.restart.watch import force_stuck, on_exit, on_new, stuck_error
from wsgi_drain.signals import Handle
from wsgi_drain.watch import wait_exits, wait_replacements

# How many of the program's last output lines a failure's message quotes.
QUOTED_LINES = 3


def applies(err: DrainError, verdict: Verdict) -> bool:
    """The rule: is the new code known bad, so that the rollback runs? (module docstring)"""
    if isinstance(err, (Interrupted, ApacheDiedError)):
        return False
    return verdict.signalled and verdict.healthy is False


def answer_failure(job: Job, err: DrainError) -> None:
    """A run failed: roll back when asked and the code is known bad; tell what serves; re-raise.

    Always raises: RolledBack (exit 8) when the old code serves again,
    otherwise the failure (joined by the rollback's own, if it ran), told as
    what serves what when nothing was diverted (serving.py).
    """
    failure: DrainError = err
    if job.run.settings.rollback and applies(err, job.verdict):
        try:
            roll_back(job, err)
        except RolledBack:
            raise
        except DrainError as second:
            failure = second
    _tell_new_code(job, failure)
    raise failure from (None if failure is err else err)


def roll_back(job: Job, failure: DrainError) -> None:
    """Run the rollback program, replace the new code's processes, verify; raise the ending."""
    run, verdict = job.run, job.verdict
    out, s = run.outcome, run.settings
    journal = job.routing.journal
    program = shlex.join(s.rollback)
    cause = cause_only(str(failure))
    if journal is not None:
        journal.rollback = f"{program} (started {time.strftime('%H:%M:%S')})"
        journal.save(s.state_dir)
    # Until the old code is verified, the new code stays known bad: an
    # interrupt from here on leaves diverted what was diverted.
    verdict.healthy = False
    with out.phase(Phase.ROLLBACK, run.progress) as ph:
        run.progress("rollback", f"the new code failed: running {program}")
        result = run_bounded(
            s.rollback,
            s.rollback_timeout,
            wake_fd=run.interrupts.fd,
            stop=lambda: run.interrupts.received is not None,
            env=dict(os.environ, WSGI_DRAIN_ACTION="rollback", WSGI_DRAIN_GROUP=s.group),
        )
        out.rollback = _record(result, s.rollback_timeout)
        if result.interrupted:
            try:
                run.interrupts.check()
            except Interrupted as stop:
                raise Interrupted(
                    f"{stop} during the rollback ({result.describe()}); the new code had "
                    f"failed: {cause}"
                ) from None
        if not result.ok:
            ph.status = "failed"
            raise RollbackFailedError(
                f"{cause}; the rollback failed too: {result.describe()}{_quoted(result)}"
                + _left(run)
            )
        ph.detail = result.describe()
    try:
        replaced = _replace_new_code(job)
    except Interrupted as stop:
        raise Interrupted(f"{stop} during the rollback; the new code had failed: {cause}") from None
    except DrainError as second:
        raise RollbackFailedError(
            f"{cause}; {program} ran, but the old code does not serve either: {second}" + _left(run)
        ) from second
    verdict.healthy = True
    raise RolledBack(
        f"rolled back: the new code failed ({cause}); {program} ran and the old code serves: "
        f"{replaced} process(es) on the new code replaced, the group verified"
    )


def never_signalled(old: set[int], signalled: set[int], left: set[int]) -> set[int]:
    """The processes still on the old code: found before the run, not signalled by it, and
    not named by an earlier run's journal as left on failing code (`left`)."""
    return {pid for pid in old if pid not in signalled | left}


def new_code_processes(current: GroupProcesses, untouched: set[int]) -> GroupProcesses:
    """The members that may run the new code: every one but those never signalled.

    A member started while the program ran may already have the old code;
    replacing it again costs one respawn, while missing a broken one would
    leave it serving errors.
    """
    return GroupProcesses(
        current.group,
        current.socket,
        tuple(p for p in current.processes if p.pid not in untouched),
        current.method,
        current.identity,
    )


def _replace_new_code(job: Job) -> int:
    """Replace every process on the new code, all at once, then verify; how many there were."""
    run, target, routing = job.run, job.target, job.routing
    s = run.settings
    current = reader(run, target)()
    signalled = set(routing.journal.signalled) if routing.journal is not None else set()
    left = set(routing.previous.new_code) if routing.previous is not None else set()
    untouched = never_signalled(target.old_pids, signalled, left)
    broken = new_code_processes(current, untouched)
    again = Target(
        target.instance,
        broken,
        expected=target.expected,
        parent_pid=target.parent_pid,
        apache_restarted=target.apache_restarted,
    )
    # The new code's processes are a job of their own: watched afresh, their own verdict.
    replace = Job(run, again, routing, Watched(), Verdict(), job.sig, job.force)
    watched, verdict = replace.watched, replace.verdict
    watched.log = RunLog(error_log_tail(run, again), broken.group.name)
    deadline = Deadline(watch_deadline(broken.group, "drain", s.timeout, len(broken.processes)))
    run.progress(
        "rollback",
        f"replacing {len(broken.processes)} process(es) on the new code: "
        + (" ".join(map(str, broken.pids)) or "none up now"),
    )
    # All at once, in rolling mode too: a process on the failing code only
    # fails the requests it takes, so keeping it serving while its siblings
    # are replaced one by one would only fail more; the processes never
    # signalled keep serving the old code meanwhile, and requests arriving
    # while none can take them wait in the group's backlog.
    handles = signal_all(replace)
    stuck = _watch(replace, handles, untouched, deadline)
    stuck = force_stuck(replace, stuck)
    if stuck:
        raise stuck_error(run, stuck)
    verify(run, again, watched, verdict)
    warm(run, again)
    return len(broken.processes)


def _watch(
    job: Job, handles: list[Handle], untouched: set[int], deadline: Deadline
) -> list[Handle]:
    """The broken processes exit and are replaced; the still-alive ones (stuck).

    Like drain mode's watch, but the untouched members (the old code, still
    serving) are known from the start: neither waited for nor taken for
    replacements.
    """
    run, target = job.run, job.target
    out = run.outcome
    old = {h.pid for h in handles}
    with out.phase(Phase.WATCH, run.progress) as ph:
        stuck = wait_exits(handles, deadline, run.interrupts, on_exit(run, time.monotonic()))
        current = wait_replacements(
            watching_reader(run, target, job.watched, job.verdict),
            old,
            old | untouched,
            target.expected,
            deadline,
            run.interrupts,
            on_new(run),
        )
        close([h for h in handles if h not in stuck])
        out.new_pids = [pid for pid in current.pids if pid not in old | untouched]
        ph.detail = (
            f"{len(old) - len(stuck)}/{len(old)} processes on the new code exited, "
            f"{len(current.pids)}/{target.expected} processes up"
        )
        if stuck:
            ph.status = "failed"
    return stuck


def _tell_new_code(job: Job, failure: DrainError) -> None:
    """With nothing diverted, users reach the failing code: say who serves what, keep a record."""
    run, target, routing, verdict = job.run, job.target, job.routing, job.verdict
    if isinstance(failure, ApacheDiedError):
        return  # nothing serves at all: its own message says so
    diverted = bool(ours_diverted(routing.records))
    if not verdict.signalled or verdict.healthy is not False or diverted:
        return
    serving = serving_now(run, target)
    if serving is None or not tells_new_code(True, False, diverted, len(serving.new)):
        return
    run.outcome.serving = serving.as_dict()
    journal = routing.journal
    if journal is not None:
        journal.phase = NEW_CODE_PHASE
        journal.new_code = list(serving.new)
        journal.note = serving.describe(run.settings.group)
        journal.save(run.settings.state_dir)
    raise NewCodeServingError(failure, serving, run.settings.group) from failure


def _record(result: ProgramResult, timeout: float) -> dict[str, object]:
    """The report's record of the rollback program."""
    return {
        "program": list(result.argv),
        "exit_status": result.returncode,
        "timed_out": result.timed_out,
        "timeout": timeout,
        "interrupted": result.interrupted,
        "start_error": result.start_error,
        "duration": round(result.duration, 3),
        "output": result.output,
    }


def _quoted(result: ProgramResult) -> str:
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()][-QUOTED_LINES:]
    return f" (it said: {' / '.join(lines)})" if lines else ""


def _left(run: Run) -> str:
    """Where the traffic is after a failed rollback."""
    group = run.settings.group
    if ours_diverted(run.outcome.routers):
        return (
            "; the backend stays diverted so users do not reach it. Restore the old code by "
            f"hand, run `wsgi-drain restart --group {group}`, and it is put back"
        )
    return ""
