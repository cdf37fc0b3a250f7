"""What a host run did, as plain data (report_host.py formats it).

The phases, routers, warnings, error and plan are the restart's own Outcome
(`base`): the shared phases write there.  The rest is the host's: the
parent before and after, the generations, one record per group.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from wsgi_drain.outcome import Outcome
from wsgi_drain.status import ExitStatus


@dataclass
class GroupReport:
    """One daemon group across a host run."""

    name: str
    # kept | added (new in the configuration loaded) | removed (gone from it)
    change: str = "kept"
    old_pids: list[int] = field(default_factory=list)
    new_pids: list[int] = field(default_factory=list)
    expected: int | None = None
    health: dict[str, object] | None = None
    warm: dict[str, object] | None = None


@dataclass
class HostOutcome:
    """The report of one `reload` or `stop`."""

    command: str
    base: Outcome
    parent_before: int | None = None
    parent_after: int | None = None
    generation_before: list[str] = field(default_factory=list)
    generation_after: list[str] = field(default_factory=list)
    groups: list[GroupReport] = field(default_factory=list)
    configtest: dict[str, object] | None = None
    # `stop`: every process of the instance recorded before, and those still alive after.
    processes: list[int] = field(default_factory=list)
    still_running: list[int] = field(default_factory=list)
    # No router: requests in flight get only Apache's own allowance.
    unprotected: bool = False

    @property
    def status(self) -> ExitStatus:
        return self.base.status

    def group(self, name: str) -> GroupReport:
        for rec in self.groups:
            if rec.name == name:
                return rec
        rec = GroupReport(name=name)
        self.groups.append(rec)
        return rec
