"""What serves what when new code failed with nothing diverted: the truth, told.

In rolling mode no router shields the users: the replacement that runs the
new, failing code takes its share of the requests (each daemon of a group
takes about an equal share), while the processes not yet signalled still
run the old code.  Stopping the rollout does not fix that: the way back is
the deploy's own rollback, then a restart that replaces the broken
processes (`--rollback` does both).  The journal keeps the record, so that
`check` is CRITICAL while those processes serve.
"""

from __future__ import annotations

from dataclasses import dataclass

from wsgi_drain.errors import DrainError
from wsgi_drain.newcode import NEW_CODE_PHASE as NEW_CODE_PHASE
from wsgi_drain.restart.apache_restarted import reader
from wsgi_drain.restart.records import Run, Target


@dataclass(frozen=True)
class Serving:
    """The group's members after the failure: on the new code, and still on the old."""

    new: tuple[int, ...]
    old: tuple[int, ...]

    @property
    def share(self) -> float:
        """The share of requests the new code takes (each process an equal share)."""
        total = len(self.new) + len(self.old)
        return len(self.new) / total if total else 0.0

    def describe(self, group: str) -> str:
        """The sentence: what serves what, that nothing was diverted, and the fix."""
        new, old = len(self.new), len(self.old)
        total = new + old
        pids = " ".join(map(str, self.new))
        return (
            f"{new} of {total} process(es) (pid {pids}) run the new code, which fails, and "
            f"take about {self.share:.0%} of requests; {old} still run the old code; nothing "
            "was diverted (no router), so users reach both. Roll back the code, then run "
            f"`wsgi-drain restart --group {group}` again (or rerun with --rollback)"
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "new_code": list(self.new),
            "old_code": list(self.old),
            "share_new": round(self.share, 3),
            "diverted": False,
        }


def serving_now(run: Run, target: Target) -> Serving | None:
    """The members now, split by code; None when the group cannot be read."""
    try:
        current = reader(run, target)()
    except DrainError:
        return None
    old = target.old_pids
    return Serving(
        new=tuple(sorted(p for p in current.pids if p not in old)),
        old=tuple(sorted(p for p in current.pids if p in old)),
    )


class NewCodeServingError(DrainError):
    """A failure after the signal, with nothing diverted: users reach the failing code.

    Keeps the status of the failure it tells about (exit 6 for code that is
    unhealthy, 5 for replacements that never came up).
    """

    def __init__(self, cause: DrainError, serving: Serving, group: str) -> None:
        self.status = cause.status
        self.cause = cause
        self.serving = serving
        super().__init__(f"{cause}; {serving.describe(group)}")
