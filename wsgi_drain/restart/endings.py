"""How each old process ended, and what the new ones said, from the group's error log.

mod_wsgi logs each daemon's shutdown: "drained" (it went idle), "forced"
(its drain window ran out), "aborted" (shutdown-timeout cut requests).  The
error log is followed from before the signal, so nothing is missed.
"""

from __future__ import annotations

from wsgi_drain.errorlog import Ending, ErrorLogTail, ending_of
from wsgi_drain.express import QUIET_ENDINGS, quiet_endings_note
from wsgi_drain.restart.crashloop import new_pids
from wsgi_drain.restart.records import Run, Target, Watched
from wsgi_drain.traps import quiet_log


def error_log_tail(run: Run, target: Target) -> ErrorLogTail | None:
    """Follow the group's error log; None (and a warning) when it cannot be followed."""
    path = target.instance.error_log_of(target.procs.group)
    if path is None:
        run.warn("Apache logs to a pipe or syslog: each old process's ending is only 'exited'")
        return None
    try:
        return ErrorLogTail(path)
    except OSError as err:
        run.warn(
            f"cannot follow the error log {path} ({err.strerror or err}): each old process's "
            "ending is only 'exited'"
        )
        return None


def endings_from_log(run: Run, target: Target | None, watched: Watched) -> None:
    """Tell drained / forced / aborted apart from mod_wsgi's own log lines."""
    log = watched.log
    if log is None or not log.available:
        return
    log.poll()
    events = log.events
    apache_restarted = target.apache_restarted if target is not None else None
    for rec in run.outcome.processes:
        if rec.ending != "exited":
            continue
        ending = ending_of(e for e in events if e.pid == rec.old_pid)
        if ending is Ending.FORCED and "SIGTERM" in rec.signals:
            # Our own SIGTERM (rolling mode, or --signal SIGTERM): mod_wsgi logs
            # a shutdown with no "completed" line, but no timer ran out and the
            # in-flight requests had shutdown-timeout; only an abort cuts them.
            rec.ending = "stopped"
            continue
        rec.ending = ending.value
        if rec.hung and ending in (Ending.FORCED, Ending.ABORTED):
            # "aborted" cuts requests only if there were any: say what showed there were none.
            mine = [e for e in events if e.pid == rec.old_pid]
            idle = any(e.kind == "completed" for e in mine)
            threads = f" (thread {', '.join(rec.hang_threads)})" if rec.hang_threads else ""
            run.warn(
                f"{rec.old_pid} blocked interpreter shutdown for {rec.exited_after or 0:.1f} s"
                f"{threads} until its shutdown-timeout {ending.value} it; no request was in "
                "flight: the router had none at the signal"
                + (" and mod_wsgi logged the process idle" if idle else ""),
            )
            continue
        if ending in (Ending.FORCED, Ending.ABORTED) and apache_restarted:
            # Apache's own restart stopped it, not its drain window running out.
            run.warn(
                f"{rec.old_pid} was stopped by Apache's own restart before it went idle: "
                + (
                    "requests still running were cut off"
                    if ending is Ending.ABORTED
                    else "its requests had shutdown-timeout to finish"
                ),
            )
            continue
        if ending in (Ending.FORCED, Ending.ABORTED):
            run.warn(
                f"{rec.old_pid} was {ending.value} by its timeout (mod_wsgi's log): "
                + (
                    "requests still running were cut off"
                    if ending is Ending.ABORTED
                    else "it was still busy when its drain window ran out"
                ),
            )
    if target is not None:
        quiet_log_note(run, target, watched)


def hang_notes(run: Run) -> None:
    """One line for processes that blocked interpreter shutdown and then exited."""
    hung = [r for r in run.outcome.processes if r.hung and r.exited_after is not None]
    if not hung:
        return
    longest = max(r.exited_after or 0.0 for r in hung)
    names = sorted({n for r in hung for n in r.hang_threads})
    run.outcome.notes.append(
        f"{len(hung)} process(es) blocked interpreter shutdown for {longest:.1f} s"
        + (f" (thread {', '.join(names)})" if names else "")
        + ": an application thread that is not a daemon thread keeps the interpreter "
        "from exiting until shutdown-timeout"
    )


def app_words(run: Run, target: Target, watched: Watched) -> None:
    """Put what the group's new processes wrote to the error log into the report."""
    log = watched.log
    if log is None or not log.available:
        return
    log.poll()
    run.outcome.app_log = log.words(new_pids(run, target, watched))


def quiet_log_note(run: Run, target: Target, watched: Watched) -> None:
    """Once per run, not per process: why old processes ended as 'exited', and the fix.

    At a log level above info (mod_wsgi-express's default is warn) mod_wsgi
    logs no shutdown step, so a followed log still tells no ending apart.
    Called at the end of `endings_from_log`; a second call adds nothing.
    """
    group = target.procs.group
    if watched.log is None or not watched.log.available or not quiet_log(group):
        return
    exited = [r for r in run.outcome.processes if r.ending == "exited"]
    if not exited or any(QUIET_ENDINGS in n for n in run.outcome.notes):
        return  # endings_from_log runs again when a run fails after the watch
    run.outcome.notes.append(quiet_endings_note(len(exited), group, target.instance.express))
