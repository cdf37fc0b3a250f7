"""What a run over several groups did: the host's part and one Outcome per group.

`restart --group A --group B` diverts the host once, so the routers, the
divert and the restore belong to the host (`host`), while each group has
its own processes, phases, health and error (`groups`, in run order).
report_groups.py turns it into text or JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from wsgi_drain.outcome import Outcome
from wsgi_drain.status import ExitStatus


@dataclass
class GroupsOutcome:
    """The report of one run over several groups; one verdict for the run."""

    host: Outcome
    groups: list[Outcome] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [o.group for o in self.groups]

    @property
    def failed(self) -> list[Outcome]:
        """The groups that failed (their error or a bug), in run order."""
        return [o for o in self.groups if o.status != ExitStatus.SUCCESS]

    @property
    def status(self) -> ExitStatus:
        """The run's exit status: a bug first, then an interruption, the host's error, a group's.

        Any group that fails decides for the run (and, by the failure policy,
        for the host): the first failing group's status is the run's.
        """
        everything = [self.host, *self.groups]
        if any(o.unexpected is not None for o in everything):
            return ExitStatus.ERROR
        statuses = [o.status for o in everything]
        if ExitStatus.INTERRUPTED in statuses:
            return ExitStatus.INTERRUPTED
        return next((s for s in statuses if s != ExitStatus.SUCCESS), ExitStatus.SUCCESS)

    @property
    def verdict(self) -> str:
        return self.status.name.lower()
