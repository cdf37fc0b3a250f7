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


@dataclass(frozen=True)
class ParentSeen:
    """The Apache parent at one moment of the run: its pid and its group sockets' generations.

    A graceful restart keeps the pid and moves the generation on; the
    numbers are as the socket names carry them (one, unless sockets of two
    generations were open at once).
    """

    pid: int
    generations: tuple[str, ...]

    def describe(self) -> str:
        return "/".join(self.generations)


@dataclass
class HostOutcome:
    """The report of one `reload` or `stop`: the parent `before` the run and `after` it."""

    command: str
    base: Outcome
    before: ParentSeen | None = None
    after: ParentSeen | None = None
    # One record per group name, in the order the run met them.
    groups: dict[str, GroupReport] = field(default_factory=dict)
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
        """The record of group `name`, added when the run first meets it."""
        return self.groups.setdefault(name, GroupReport(name=name))
