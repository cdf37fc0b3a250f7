"""The crash-loop rule: replacements that die as they start stop the run at once.

Code that kills the interpreter as it loads makes Apache respawn a daemon
that dies again, over and over: the group never fills up, and waiting for the
deadline only prolongs it.  Deaths are counted from the parent's "has died"
lines (which see even a daemon that died before any re-read could) and from
members seen once and gone since; the old processes' own exits never count.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from wsgi_drain.applog import RunLog
from wsgi_drain.deadline import Deadline
from wsgi_drain.discovery import GroupProcesses
from wsgi_drain.errors import CrashLoopError
from wsgi_drain.restart.apache_died import guarded
from wsgi_drain.restart.apache_restarted import reader
from wsgi_drain.restart.policy import Verdict, stays_out
from wsgi_drain.restart.records import Run, Target, Watched

# New processes of the group that die after the signal before the verdict:
# this many make a crash loop (the parent respawns a dead daemon within about
# a second, so two deaths come within ~1-2 s of the first replacement).
CRASH_EXITS = 2
# How long to wait for the parent's log lines on those deaths (exit status).
CRASH_WORDS_WAIT = 1.5
# A replacement must live this long to count (verify, and in rolling mode
# before the next process is signalled): code that kills the interpreter as
# it loads (a preloaded app) dies within it.
SETTLE = 0.5


def is_crash_loop(dead: Iterable[int]) -> bool:
    """Do these deaths of new processes make a crash loop? CRASH_EXITS of them do."""
    return len(set(dead)) >= CRASH_EXITS


def new_deaths(log: RunLog | None, old: set[int], gone: Iterable[int] = ()) -> dict[int, str]:
    """New processes of the group known dead: pid -> how, as logged ("" unknown).

    From the parent's "has died" lines in `log` and `gone`, members seen once
    and gone since; the exits of `old` (the processes before the signal)
    never count.
    """
    dead: dict[int, str] = {}
    if log is not None:
        log.poll()
        dead = log.deaths(old)
    for pid in gone:
        dead.setdefault(pid, "")
    return dead


def watching_reader(
    run: Run, target: Target, watched: Watched, verdict: Verdict
) -> Callable[[], GroupProcesses]:
    """`reader`, which also stops the run at once on a crash loop, or when Apache died."""
    read = guarded(reader(run, target), run, target, watched, verdict)

    def read_and_check() -> GroupProcesses:
        current = read()
        note_members(target, watched, set(current.pids))
        check_crash_loop(run, target, watched, verdict)
        return current

    return read_and_check


def note_members(target: Target, watched: Watched, pids: set[int]) -> None:
    """Record the group's members now: new ones seen, and new ones gone since."""
    watched.vanished |= watched.seen_new - pids
    watched.seen_new |= pids - target.old_pids


def check_crash_loop(run: Run, target: Target, watched: Watched, verdict: Verdict) -> None:
    """Raise CrashLoopError when new processes of the group keep dying (new_deaths)."""
    old = target.old_pids
    log = watched.log
    dead = new_deaths(log, old, watched.vanished)
    if not is_crash_loop(dead):
        return
    verdict.healthy = False
    if log is not None and log.available:
        # The parent logs a death (with its exit status) in its maintenance
        # loop, up to about a second after we saw it: wait for those words.
        wait = Deadline(CRASH_WORDS_WAIT)
        while not all(dead.values()) and not wait.expired():
            run.interrupts.sleep(0.1)
            log.poll()
            for pid, how in log.deaths(old).items():
                if pid in dead or len(dead) < CRASH_EXITS:
                    dead[pid] = how or dead.get(pid, "")
    since = time.monotonic() - (watched.signalled_at or run.outcome.started)
    hows = sorted({how for how in dead.values() if how})
    raise CrashLoopError(
        f"crash loop: replacements die at start: {len(dead)} exits in {since:.1f} s"
        + (f" ({', '.join(hows)})" if hows else "")
        + stays_out(run.outcome.routers, run.settings.group)
    )


def new_pids(run: Run, target: Target, watched: Watched) -> set[int]:
    """Every process of the group started since the signal that we know of."""
    pids = set(watched.seen_new) | set(run.outcome.new_pids)
    if watched.log is not None:
        pids |= watched.log.started() | set(watched.log.deaths(target.old_pids))
    return pids
