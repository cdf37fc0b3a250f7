"""A run's journal about new code that failed: what `check` and `status` say of it.

Two records (state.py's Journal): a rolling-mode run that stopped with
processes on new code that fails and nothing diverted (`phase`
NEW_CODE_PHASE, the pids in `new_code`), and a run that started its
rollback (`rollback`, the program) and died in it.  The first is CRITICAL
while any of those processes still runs (users reach it); once they are all
gone (a later restart, Apache restarted) it is only noted.  Neither is ever
answered with `undrain` when nothing was diverted.
"""

from __future__ import annotations

from collections.abc import Callable

from wsgi_drain.state import Journal

NEW_CODE_PHASE = "new-code-serving"


def still_serving(journal: Journal, alive: Callable[[int], bool]) -> list[int]:
    """The processes the journal names as on the failing new code that still run."""
    return [pid for pid in journal.new_code if alive(pid)]


def new_code_words(journal: Journal, group: str, serving: list[int]) -> str:
    """check's CRITICAL line for processes left on the failing new code."""
    return (
        f"a restart (pid {journal.pid}) left {len(serving)} process(es) on new code that fails "
        f"(pid {' '.join(map(str, serving))}), serving users; nothing was diverted. Roll back "
        f"the code, then run `wsgi-drain restart --group {group}` again"
    )


def rollback_words(journal: Journal) -> str:
    """What a journal says when its run died during its rollback ("" when it did not)."""
    if not journal.rollback:
        return ""
    return f" during its rollback ({journal.rollback})"


def fix_for(journal: Journal, group: str) -> str:
    """The repair a journal asks for: `undrain`, but never for new code serving undiverted.

    (A journal of a run killed outright is still cleared by `undrain`, which
    puts back whatever it names and moves the journal aside.)
    """
    if journal.phase == NEW_CODE_PHASE:
        return (
            "roll back the code if it is broken, then run "
            f"`wsgi-drain restart --group {group}` again"
        )
    return f"wsgi-drain undrain --group {group}"
