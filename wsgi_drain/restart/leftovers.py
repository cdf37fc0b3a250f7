"""Leftovers: what the old daemons started that outlives them is named, or ended on request.

Each old daemon's descendants are recorded right before it is signalled
(drain mode's signal and each rolling step call `record`), through pidfds
opened while their ancestry was proven (descendants.py).  When the run ends,
however it ends (`after_run` wraps the locked part, the restore included),
those still running whose daemon has gone are *left behind*: listed in the
report, counted on the verdict line, and with `--leftovers stop` (or
`leftovers = "stop"`) sent SIGTERM, given the group's shutdown-timeout,
then SIGKILL.  A stuck daemon's descendants are not left behind while it
lives.  The state directory's leftovers record (leftovers_record.py) keeps
what still runs for `check` and `status`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

from wsgi_drain import leftovers_record
from wsgi_drain.descendants import Descendant, end
from wsgi_drain.outcome import Phase
from wsgi_drain.restart.records import Run, Target, Watched
from wsgi_drain.signals import Handle


def record(run: Run, watched: Watched, handles: Iterable[Handle]) -> None:
    """Record each old daemon's descendants; call it right before the daemons are signalled."""
    tracker = watched.descendants
    before = tracker.untracked
    for handle in handles:
        tracker.record(handle.pid, handle.fd)
    if tracker.untracked and not before:  # said once (rolling mode records at every step)
        run.warn(
            f"more than {tracker.followed} descendants of the old daemons: only the first "
            f"{tracker.followed} are followed (the others are neither named nor ended)"
        )


@contextlib.contextmanager
def after_run(run: Run, target: Target | None, watched: Watched) -> Iterator[None]:
    """Around the locked part of a run: once it is over, deal with what was left behind."""
    try:
        yield
    finally:
        try:
            if watched.descendants.families and target is not None:
                _settle(run, target, watched)
        finally:
            watched.descendants.close()


def _settle(run: Run, target: Target, watched: Watched) -> None:
    tracker = watched.descendants
    out, stop = run.outcome, run.settings.leftovers == "stop"
    left = tracker.left_behind()
    out.leftovers = left
    if left:
        with out.phase(Phase.LEFTOVERS, run.progress) as ph:
            for proc in left:
                run.progress("leftover", _describe(proc))
            if stop:
                complete = end(left, target.procs.group.shutdown_window, wake_fd=run.interrupts.fd)
                for proc in left:
                    run.progress("leftover", f"{proc.pid} {proc.ending or 'still running'}")
                if not complete:
                    run.warn("interrupted while ending the processes left behind")
            ph.detail = summary(left, stop)
            out.notes.append(ph.detail)
    running = [p for p in left if p.ending in (None, "survived")] + tracker.held()
    try:
        leftovers_record.save(run.settings.state_dir, run.settings.group, running)
    except OSError as err:
        run.warn(
            f"cannot write the leftovers record in {run.settings.state_dir} ({err.strerror}): "
            "`check` will not see the processes left behind"
        )


def summary(left: list[Descendant], stop: bool) -> str:
    """The verdict line's words for what the old daemons left behind."""
    n = len(left)
    what = f"{n} process{'es' if n != 1 else ''} left behind by the old daemons"
    if not stop:
        return f"{what}, still running (--leftovers stop ends them)"
    counts: dict[str, int] = {}
    for proc in left:
        key = proc.ending or "still running"
        counts[key] = counts.get(key, 0) + 1
    return f"{what}: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))


def _describe(proc: Descendant) -> str:
    return (
        f"{proc.pid} left behind by daemon {proc.daemon_pid}, age {proc.age:.0f} s: "
        f"{proc.command[:200]}"
    )
