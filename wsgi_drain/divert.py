"""The router step alone: `drain` and `undrain` for hand-run maintenance and repair.

`undrain` is also how an operator repairs a run that was killed outright or
that left the backend diverted on purpose: it restores every router the
group's journal names (and the configured ones), then removes the journal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from wsgi_drain import routers as routers_mod
from wsgi_drain.config import Settings
from wsgi_drain.deadline import Deadline
from wsgi_drain.errors import ConfigError, DrainError, RouterError
from wsgi_drain.outcome import Progress
from wsgi_drain.routers import RouterState
from wsgi_drain.state import Journal


@dataclass
class DivertResult:
    group: str
    action: str
    states: list[RouterState] = field(default_factory=list)
    journal_removed: bool = False


def _specs(settings: Settings, journal: Journal | None) -> list[str]:
    specs = [routers_mod.spec_of("haproxy", s) for s in settings.haproxy]
    if journal is not None:
        specs += [s for s in journal.routers if s not in specs]
    if not specs:
        raise ConfigError(
            f"no router for group {settings.group!r}: pass --haproxy SOCKET:BACKEND/SERVER "
            "or name it in /etc/wsgi-drain.toml"
        )
    return specs


def drain(settings: Settings, progress: Progress) -> DivertResult:
    """Divert every configured router and wait (up to drain_timeout) for in-flight requests."""
    result = DivertResult(settings.group, "drain")
    routers = [routers_mod.from_journal(s) for s in _specs(settings, None)]
    for router in routers:
        state = router.state()
        if state.peers_up < settings.min_peers and state.admin == "ready":
            raise RouterError(
                router.name,
                f"only {state.peers_up} other server(s) are UP: draining this one would fail "
                "every request (lower --min-peers only if that is really what you want)",
            )
    deadline = Deadline(settings.drain_timeout)
    for router in routers:
        router.divert()
        progress("divert", f"{router.name}: drain")
    for router in routers:
        state = router.wait_drained(deadline)
        result.states.append(state)
        progress("divert", f"{router.name}: {state.sessions} in flight, {state.queued} queued")
    return result


def undrain(settings: Settings, progress: Progress) -> DivertResult:
    """Restore every router named by the options, the file, or a left-behind journal."""
    result = DivertResult(settings.group, "undrain")
    journal = Journal.load(settings.state_dir, settings.group)
    errors: list[str] = []
    for spec in _specs(settings, journal):
        router = routers_mod.from_journal(spec)
        try:
            router.restore()
            result.states.append(router.state())
            progress("restore", f"{router.name}: ready")
        except DrainError as err:
            errors.append(str(err))
    if errors:
        raise RouterError("undrain", "; ".join(errors))
    if journal is not None:
        journal.remove(settings.state_dir)
        result.journal_removed = True
        progress("restore", f"removed the journal left by pid {journal.pid}")
    return result
