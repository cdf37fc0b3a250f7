"""The router step alone: `drain` and `undrain` for hand-run maintenance and repair.

Both take the group's lock, so neither can run while a restart of the group
is going (an `undrain` mid-restart would put the backend back while its
processes restart).  Both record or read the servers' states before: only a
server that was READY is ever diverted, and `undrain` puts a server back only
when wsgi-drain took it out (or it is in DRAIN and named by the operator); a
server in MAINT is the operator's and is left so, with the command to change
it if that is really meant.

`undrain` is also how an operator repairs a restart that was killed outright
or that left the backend diverted on purpose.  It puts back exactly the
routers asked for (options, or the file's for the group); with none named,
every router the group's journals name.  A journal forgets the servers put
back, and is removed once it names no other.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from wsgi_drain import peers
from wsgi_drain import routers as routers_mod
from wsgi_drain.config import Settings
from wsgi_drain.deadline import Deadline
from wsgi_drain.errors import ConfigError, DrainError, JournalError, RouterError
from wsgi_drain.interrupts import Interrupts
from wsgi_drain.outcome import Progress
from wsgi_drain.routers import Router, RouterState
from wsgi_drain.state import HOST, Journal, group_lock, journal_lock, router_lock


@dataclass
class DivertResult:
    group: str
    action: str
    states: list[RouterState] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    journal_removed: bool = False


def _configured(settings: Settings) -> list[str]:
    return routers_mod.specs(settings.haproxy, settings.routers)


def _router(settings: Settings, spec: str) -> Router:
    return routers_mod.from_spec(spec, settings.group, settings.lb_detect, settings.state_dir)


def _need_routers(group: str, specs: list[str]) -> None:
    if not specs:
        raise ConfigError(
            f"no router for group {group!r}: pass --router KIND:SPEC (or --haproxy "
            "SOCKET:BACKEND/SERVER), or name it in /etc/wsgi-drain.toml"
        )


def drain(settings: Settings, progress: Progress) -> DivertResult:
    """Divert every configured router that is in rotation; wait (drain_timeout) for requests.

    A server already out of rotation (DRAIN, MAINT) is left as it is.  The
    hand-run drain is journalled (kind "drain") so `undrain` restores exactly
    what it changed, and `check` shows it.
    """
    result = DivertResult(settings.group, "drain")
    specs = _configured(settings)
    _need_routers(settings.group, specs)
    with contextlib.ExitStack() as locks:
        # Shared: the drains of other servers of the group (a load balancer's
        # host) run beside this one; a restart of the group excludes it.
        locks.enter_context(
            group_lock(settings.state_dir, settings.group, what="drain", shared=True)
        )
        for spec in specs:
            locks.enter_context(router_lock(settings.state_dir, spec, settings.group))
        routers = [(spec, _router(settings, spec)) for spec in specs]
        before: dict[str, str] = {}
        to_divert: list[tuple[str, Router]] = []
        for spec, router in routers:
            state = router.state()
            before[spec] = state.admin
            if state.admin != "ready":
                result.notes.append(f"{router.name}: already in {state.admin}, left so")
                continue
            if state.peers_up is None and settings.min_peers not in (0, peers.ALL):
                result.notes.append(
                    f"{router.name} cannot tell how many other servers are UP: "
                    f"{peers.describe(settings.min_peers)} taken on trust"
                )
            to_divert.append((spec, router))
        spec_of = {id(router): spec for spec, router in to_divert}
        done: list[tuple[str, Router]] = []

        def divert(router: Router) -> None:
            spec = spec_of[id(router)]

            def record(journal: Journal) -> None:
                if spec not in journal.routers:
                    journal.routers.append(spec)
                    journal.before[spec] = before[spec]
                if spec not in journal.diverted:
                    journal.diverted.append(spec)

            # Journalled before the command: an unanswered one may have been applied.
            _update_drain_journal(settings, record)
            router.divert()
            done.append((spec, router))
            progress("divert", f"{router.name}: drain")

        def put_back() -> None:
            # Another host went out as this one did: undo ours, try again.
            for _spec, router in done:
                router.restore()
            backed = [spec for spec, _router in done]
            done.clear()
            _update_drain_journal(settings, lambda journal: _drop(journal, backed))

        def refuse(router: Router, state: RouterState, why: str) -> RouterError:
            return RouterError(
                router.name,
                why
                or f"{peers.shortfall(state, settings.min_peers, settings.peer_wait)}: draining "
                "this one would fail every request, or take a second host out (lower "
                "--min-peers only if that is really what you want)",
            )

        with Interrupts() as interrupts:
            try:
                turn = peers.divert_in_turn(
                    [router for _spec, router in to_divert],
                    settings.min_peers,
                    Deadline(settings.peer_wait),
                    interrupts,
                    divert=divert,
                    put_back=put_back,
                    progress=lambda message: progress("divert", message),
                    refuse=refuse,
                )
            except RouterError:
                put_back()  # refused at a later router: nothing stays half drained
                raise
        for _spec, router in done:
            result.notes.append(f"{router.name}: drain (was ready)")
        if turn.backoffs or turn.waited >= 1:
            result.notes.append(
                f"waited {turn.waited:.1f} s for other servers, backed off {turn.backoffs} time(s)"
            )
        deadline = Deadline(settings.drain_timeout)
        for _spec, router in routers:
            state = router.wait_drained(deadline)
            result.states.append(state)
            progress("divert", f"{router.name}: {state.sessions} in flight, {state.queued} queued")
    return result


def _update_drain_journal(settings: Settings, change: Callable[[Journal], None]) -> None:
    """Read, change and write the group's drain journal under its journal lock.

    Drains of several servers of one group (a load balancer's host) share the
    journal, and run at once: each change is made to the journal as it is on
    disk now, never to a copy read earlier.  A journal left naming nothing
    diverted is removed.
    """
    with journal_lock(settings.state_dir, settings.group):
        journal = Journal.load(settings.state_dir, settings.group, "drain") or Journal(
            group=settings.group, pid=os.getpid(), started=time.time(), kind="drain"
        )
        journal.phase = "drained"
        change(journal)
        if journal.diverted:
            journal.save(settings.state_dir)
        else:
            journal.remove(settings.state_dir)


def _drop(journal: Journal, specs: list[str]) -> None:
    """Forget `specs` in `journal`: put back, they are no longer wsgi-drain's to undo."""
    journal.routers = [spec for spec in journal.routers if spec not in specs]
    journal.diverted = [spec for spec in journal.diverted if spec not in specs]
    journal.before = {k: v for k, v in journal.before.items() if k not in specs}


def undrain(
    settings: Settings, progress: Progress, wait_ready: float | None = None
) -> DivertResult:
    """Put back what wsgi-drain took out: the routers of the options, the file, the journals.

    Refuses (LockedError, exit 7) while a restart of the group runs.  A
    journal that cannot be read blocks nothing when routers are named: those
    are handled, and the broken journal is moved aside (and said so).  With
    `wait_ready`, first waits up to that many seconds until the group has all
    its processes and its health URL answers 2xx (`ready.wait_ready`); if it
    does not, nothing is restored (UnhealthyError, exit 6).
    """
    result = DivertResult(settings.group, "undrain")
    configured = _configured(settings)
    with contextlib.ExitStack() as locks:
        locks.enter_context(
            group_lock(settings.state_dir, settings.group, what="undrain", shared=True)
        )
        if wait_ready is not None:
            from wsgi_drain.ready import wait_ready as wait

            result.notes.append(f"ready: {wait(settings, wait_ready, progress)}")
        journals = [
            j
            for kind in ("restart", "drain")
            if (j := _journal(settings, kind, configured, result))
        ]
        # A reload or a maintenance stop of the whole host (wsgi_drain/host/)
        # is repaired from any of its groups.
        host = [
            j
            for kind in ("reload", "stop")
            if (j := _journal(settings, kind, configured, result, HOST))
        ]
        if host:
            locks.enter_context(group_lock(settings.state_dir, HOST, what="undrain", shared=True))
        journals += host
        # Exactly the servers asked for: on a load balancer's host one group's
        # journal names many app servers (each host's drain), and another may
        # be out on purpose.  Only with none named does undrain repair them all.
        specs = list(configured)
        if not specs:
            for journal in journals:
                specs += [s for s in journal.routers if s not in specs]
        _need_routers(settings.group, specs)
        for spec in specs:
            locks.enter_context(router_lock(settings.state_dir, spec, settings.group))
        errors: list[str] = []
        for spec in specs:
            router = _router(settings, spec)
            try:
                note = _undrain_one(router, spec, journals)
                result.states.append(router.state())
            except DrainError as err:
                errors.append(str(err))
                continue
            result.notes.append(f"{router.name}: {note}")
            progress("restore", f"{router.name}: {note}")
        if errors:
            raise RouterError("undrain", "; ".join(errors))
        for journal in journals:
            _forget(settings, journal, specs, result, progress)
    return result


def _forget(
    settings: Settings,
    journal: Journal,
    handled: list[str],
    result: DivertResult,
    progress: Progress,
) -> None:
    """Take the servers just handled out of `journal`; remove it once it names no other.

    Read again under the journal lock: another server's drain may have
    written it since it was read.
    """
    what = "a hand-run drain" if journal.kind == "drain" else f"pid {journal.pid}"
    if journal.kind in ("reload", "stop"):
        what = f"the {journal.kind} of pid {journal.pid}"
    with journal_lock(settings.state_dir, journal.group):
        try:
            now = Journal.load(settings.state_dir, journal.group, journal.kind)
        except JournalError:
            now = journal
        if now is None:
            return
        left = [spec for spec in now.still_diverted if spec not in handled]
        if not left:
            now.remove(settings.state_dir)
            result.journal_removed = True
            progress("restore", f"removed the journal left by {what}")
            return
        _drop(now, handled)
        now.save(settings.state_dir)
    result.notes.append(
        f"left out, as asked (the journal of {what} still names them; `wsgi-drain undrain "
        f"--group {settings.group} --router SPEC` puts one back): {', '.join(left)}"
    )


def _journal(
    settings: Settings,
    kind: str,
    configured: list[str],
    result: DivertResult,
    name: str | None = None,
) -> Journal | None:
    """The group's (or `name`'s) journal of `kind`; a broken one is moved aside when routers
    are named."""
    name = name or settings.group
    try:
        return Journal.load(settings.state_dir, name, kind)
    except JournalError as err:
        if not configured:
            raise
        path = Journal.path_for(settings.state_dir, name, kind)
        aside = path.with_name(f"{path.name}.broken-{time.strftime('%Y%m%dT%H%M%S')}")
        with contextlib.suppress(OSError):
            os.replace(path, aside)
        result.notes.append(
            f"{err}. It was moved to {aside}; the routers named were handled without it "
            "(their state before the run is unknown)"
        )
        return None


def _undrain_one(router: Router, spec: str, journals: list[Journal]) -> str:
    """Restore one server to its state before wsgi-drain took it out; say what was done."""
    state = router.state()
    ours = any(spec in j.still_diverted for j in journals)
    recorded = next((j.before[spec] for j in journals if spec in j.before), None)
    if state.admin == "ready":
        return "ready (already)"
    if ours:
        if state.admin == "drain":
            router.restore()
            return "ready (its state before wsgi-drain diverted it)"
        return (
            f"left in {state.admin}: someone set it after wsgi-drain diverted it; "
            f"{_by_hand(router)} if you mean it"
        )
    if recorded is not None and recorded != "ready":
        return (
            f"left in {state.admin}: it was in {recorded} before wsgi-drain ran, which did not "
            "touch it"
        )
    if state.admin == "drain":
        router.restore()
        return "ready (was in drain)"
    return (
        f"left in {state.admin}, which wsgi-drain never sets (an operator's maintenance?); "
        f"{_by_hand(router)} if you mean it"
    )


def _by_hand(router: Router) -> str:
    """How an operator puts this router's server back by hand, in the router's own terms."""
    target = getattr(router, "target", None)
    if target is not None and hasattr(target, "backend"):  # HAProxy
        return f"`set server {target.backend}/{target.server} state ready` on the HAProxy socket"
    upstream = getattr(target, "upstream_file", None)
    if target is not None and upstream is not None:  # nginx: an unmarked `down` is the operator's
        return f"remove the `down` of `server {target.server}` in {upstream}, then reload nginx"
    return f"put it back in rotation by hand ({router.name})"
