"""Divert: take this host out of rotation at every router, with its peers, and wait for quiet.

Never drain when fewer than --min-peers other servers are healthy (peers.py
takes turns with parallel runs on other hosts).  Then wait until nothing is
in flight through the routers, and for the requests that reached Apache
directly; a router found back in rotation before the signal stops the run.
"""

from __future__ import annotations

import time

from wsgi_drain import inflight, peers
from wsgi_drain.deadline import Deadline
from wsgi_drain.errors import RouterError
from wsgi_drain.outcome import Phase, RouterRecord
from wsgi_drain.restart.records import Routing, Run, Target
from wsgi_drain.restart.restore import put_back
from wsgi_drain.restart.timing import HOST_POLL
from wsgi_drain.routers import Router, RouterState

# How often the peers are read while draining (a peer failing its checks
# under the extra load ends the drain at once, see _peers_lost).
DRAIN_SLICE = 0.1


def divert(run: Run, target: Target, routing: Routing) -> bool:
    """Take every router this run owns out of rotation; wait until nothing is in flight.

    The journal records each divert *before* the command is sent: an answer
    that never arrives may hide a command HAProxy carried out, and the
    failure policy must then still put the server back.  Returns False when
    the other servers dropped below --min-peers during the wait (they could
    not carry this one's traffic): everything was put back, nothing was
    signalled, and the caller restarts in place instead.
    """
    out = run.outcome
    with out.phase(Phase.DIVERT, run.progress) as ph:
        if not _divert_with_peers(run, routing):
            ph.detail = "not diverted: too few other servers UP after --peer-wait"
            return False
        # A router the LB watches from afar (health-file) needs its detection
        # time on top of the drain timeout.
        settle = max((getattr(r, "settle_delay", 0.0) for _s, r in routing.routers), default=0.0)
        drain_deadline = Deadline(run.settings.drain_timeout + settle)
        for (_spec, router), rec in routing.paired():
            # Short slices so SIGINT/SIGTERM is acted on promptly.
            while True:
                state = router.wait_drained(drain_deadline.within(DRAIN_SLICE))
                run.interrupts.check()
                if _peers_lost(run, routing, rec, state):
                    ph.detail = "put back: the other servers went down during the drain"
                    return False
                if (state.sessions == 0 and state.queued == 0) or drain_deadline.expired():
                    break
            if not state.sessions_known:
                run.warn(
                    f"{router.name} cannot count requests in flight: not waited for at the "
                    "router; requests still running get the group's drain window"
                )
                continue
            rec.sessions_at_signal = state.sessions + state.queued
            if rec.sessions_at_signal:
                run.warn(
                    f"{router.name}: {rec.sessions_at_signal} request(s) still in flight after "
                    f"{run.settings.drain_timeout:g} s; they get the group's drain window"
                )
        _wait_host_requests(run, target, drain_deadline)
        for _spec, router in routing.routers:
            # A HAProxy reload or an agent check can silently undo the drain;
            # signalling then would cut requests the router still sends.
            admin = router.state().admin
            if admin == "ready":
                raise RouterError(
                    router.name,
                    "the server is back in rotation (was HAProxy reloaded, or the state "
                    "changed by hand?); nothing was signalled",
                )
        ph.detail = "; ".join(f"{r.name}: {r.sessions_at_signal} in flight" for r in out.routers)
    return True


def too_few_peers(run: Run, state: RouterState) -> str:
    """Why a fleet-safe run (--if-few-peers refuse) will not take this host out."""
    s = run.settings
    return (
        f"{peers.shortfall(state, s.min_peers, s.peer_wait)}; refusing to take "
        "this host out too (--if-few-peers refuse). If a host was left out by an earlier "
        f"run, repair it there (`wsgi-drain undrain --group {s.group}`) or find why its "
        "checks fail, then rerun"
    )


def _peers_lost(run: Run, routing: Routing, rec: RouterRecord, state: RouterState) -> bool:
    """During the drain: did the other servers drop below --min-peers? Then undo it.

    Diverting one of two saturated hosts doubles the other's load; its own
    health checks can then time out and the load balancer takes it out too,
    leaving no server at all (measured: thousands of 503s, bench/load_cases.py
    saturated-drain).  Before any signal that is still reversible: every
    diverted router is put back at once, and the run restarts in place (or,
    with --if-few-peers refuse, stops with exit 4).
    """
    s = run.settings
    if not rec.diverted or state.peers_up is None:
        return False
    # A peer failing its checks ("UP 1/2") is on its way out: act before it is.
    # Capacity, not order: with --min-peers all one healthy peer is enough
    # here (another run diverting for a moment must not undo ours).
    healthy = state.peers_up - len(state.peers_failing)
    need = 1 if s.min_peers == peers.ALL else s.min_peers
    assert isinstance(need, int)
    if healthy >= need:
        return False
    out = [*state.peers_out, *(f"{n} (failing its checks)" for n in state.peers_failing)]
    why = (
        f"{rec.name}: the other servers went out of rotation during the drain "
        f"({', '.join(out) or 'unnamed'}; {healthy} UP and healthy, need {need}): they "
        "cannot carry this server's traffic"
    )
    journal = routing.journal
    for (spec, router), other in routing.paired():
        if other.diverted:
            put_back(run, router, other)
            other.diverted = False
            if journal is not None and spec in journal.diverted:
                journal.diverted.remove(spec)
    if journal is not None:
        journal.save(s.state_dir)
    if s.few_peers == "refuse":
        raise RouterError(rec.name, f"{why}; put back, nothing signalled (--if-few-peers refuse)")
    run.warn(f"{why}; put back at once, restarting in place instead")
    return True


class _TooFewPeers(RouterError):
    """Still too few peers after --peer-wait, under --if-few-peers rolling."""


def _divert_with_peers(run: Run, routing: Routing) -> bool:
    """Divert every router this run owns, taking turns with parallel runs (peers.py).

    Peers are counted before each divert (waited for, up to --peer-wait) and
    again after it; a peer gone out in between is another run diverting at
    the same moment: this run puts back what it diverted and tries again
    after a random pause, until --peer-wait is used up (then exit 4, nothing
    signalled).  Returns False when the peers stayed too few and
    --if-few-peers rolling asks for a restart in place (nothing left diverted).
    """
    s = run.settings
    owned = {id(router): (spec, rec) for (spec, router), rec in routing.paired()}

    def divert_one(router: Router) -> None:
        spec, rec = owned[id(router)]
        _divert_one(run, routing, spec, router, rec)

    def refuse(router: Router, state: RouterState, why: str) -> RouterError:
        if why:
            return RouterError(router.name, f"{why}, nothing signalled")
        if s.few_peers == "rolling":
            return _TooFewPeers(
                router.name,
                f"{peers.shortfall(state, s.min_peers, s.peer_wait)}: restarting in place, one "
                "process at a time, without diverting",
            )
        return RouterError(router.name, too_few_peers(run, state))

    todo = [router for (_spec, router), rec in routing.paired() if rec.ours and not rec.diverted]
    turn = peers.Turn()
    try:
        peers.divert_in_turn(
            todo,
            s.min_peers,
            Deadline(s.peer_wait),
            run.interrupts,
            divert=divert_one,
            put_back=lambda: back_off(run, routing),
            progress=lambda message: run.progress("divert", message),
            refuse=refuse,
            turn=turn,
        )
    except _TooFewPeers as err:
        back_off(run, routing)
        run.warn(str(err))
        return False
    finally:
        run.outcome.peer_wait, run.outcome.backoffs = turn.waited, turn.backoffs
    for (_spec, router), rec in routing.paired():
        rec.state = turn.last.get(router.name, rec.state)
        if rec.diverted and rec.out_at is None:
            rec.out_at = time.time()
    return True


def _divert_one(run: Run, routing: Routing, spec: str, router: Router, rec: RouterRecord) -> None:
    """Divert one router, journalled *before* the command (see divert)."""
    journal = routing.journal
    assert journal is not None
    journal.phase = "divert"
    journal.diverted.append(spec)
    journal.save(run.settings.state_dir)
    rec.diverted = True
    try:
        router.divert()
    except RouterError as err:
        if err.applied is False:
            rec.diverted = False
            journal.diverted.remove(spec)
            journal.save(run.settings.state_dir)
        else:
            rec.unconfirmed = True
        raise
    up = "?" if rec.peers_up is None else str(rec.peers_up)
    run.progress("divert", f"{router.name}: drain ({up} other server(s) UP)")


def back_off(run: Run, routing: Routing) -> None:
    """Put back every router this run diverted (not those it took over), journal to match."""
    journal = routing.journal
    assert journal is not None
    for (spec, router), rec in routing.paired():
        if rec.diverted and not rec.adopted:
            put_back(run, router, rec)
            rec.diverted = rec.restored = rec.unconfirmed = False
            rec.back_at = None
            if spec in journal.diverted:
                journal.diverted.remove(spec)
    journal.save(run.settings.state_dir)


def _wait_host_requests(run: Run, target: Target, deadline: Deadline) -> None:
    """Wait for the requests the router cannot see: those that reached Apache directly.

    Once the routers show nothing in flight, what the daemons still hold came
    from elsewhere (an internal call straight to Apache).  Those requests,
    the ones in flight now, are waited for within the drain timeout; requests
    that arrive later are not (steady internal traffic would hold every
    restart to the timeout), and SIGUSR1 gives them the drain window.
    """
    if target.procs.socket is None:
        return
    pending = _held(target)
    if pending is None:
        run.warn(
            "cannot read the daemons' sockets: requests that bypassed the router are not awaited"
        )
        return
    if pending:
        run.progress(
            "divert",
            f"host: {len(pending)} request(s) in flight that did not come through the router; "
            f"waiting up to {max(deadline.remaining(), 0):.0f} s",
        )
    while pending and not deadline.expired():
        run.interrupts.check()
        time.sleep(min(HOST_POLL, max(deadline.remaining(), 0.0)))
        pending &= _held(target) or set()
    run.outcome.host_in_flight_at_signal = len(pending)
    if pending:
        run.warn(
            f"host: {len(pending)} request(s) that did not come through the router still in "
            f"flight after {run.settings.drain_timeout:g} s; they get the group's drain window"
        )


def wait_host_requests(run: Run, target: Target, deadline: Deadline) -> None:
    """A group's requests that bypassed the router, for the runs of several groups.

    restart/several.py waits so for each group after the first; the host's
    runs (wsgi_drain/host/) for every group of the instance.
    """
    _wait_host_requests(run, target, deadline)


def _held(target: Target) -> set[int] | None:
    """The requests the group's processes hold now (not those queued in the socket's backlog).

    A connection still in the listen backlog is served by whichever process
    accepts it, a replacement included: only accepted ones can be cut.
    """
    assert target.procs.socket is not None
    held = inflight.by_process(target.procs.pids, target.procs.socket.path)
    return None if held is None else set().union(*held.values())
