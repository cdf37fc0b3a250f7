"""The peer rule: how many other servers must be UP before this one goes out.

`--min-peers` is a number, or ``all``: every other server the router can see
must be UP and in rotation (none drained, in maintenance or down).  ``all``
is the fleet rule "never two hosts out": a rollout, a second play, or a host
left out by an earlier failed run all count.

Two hosts that check at the same instant both see enough peers.  So a run
counts again right after its own divert (`restart/divert.py`, `divert.py`); if a
peer went out meanwhile it puts its server back and, with `--peer-wait`,
waits for the peers and tries again after a random pause.  Whatever the
interleaving, of several runs that divert at once the last to recount sees
all the others out, so no two go past their recount together (with ``all``);
both may back off, and the random pause lets one of them win the next round.
The load balancer's own state is the shared register: nothing else to run.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Union

from wsgi_drain.deadline import Deadline
from wsgi_drain.errors import ConfigError, RouterError
from wsgi_drain.interrupts import Interrupts
from wsgi_drain.routers import Router, RouterState

ALL = "all"
MinPeers = Union[int, str]  # a count, or ALL

# How often a waiting run reads the router again.
POLL = 1.0
# The random pause after a back-off, so two runs that collided do not again.
BACKOFF = (0.2, 2.0)


def parse(value: object) -> MinPeers:
    """`--min-peers` as given: a whole number 0 or more, or "all"."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == ALL:
            return ALL
        if text.isdigit():
            return int(text)
    elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ConfigError(f"--min-peers must be a whole number (0 or more) or 'all', not {value!r}")


def needed(state: RouterState, min_peers: MinPeers) -> int | None:
    """How many other servers must be UP for `state`'s router; None when it cannot tell."""
    if state.peers_up is None:
        return None
    if min_peers == ALL:
        if not state.peers_listed:
            return None
        return state.peers_up + len(state.peers_out)
    assert isinstance(min_peers, int)
    return min_peers


def uncounted(state: RouterState, min_peers: MinPeers) -> str | None:
    """Why `--min-peers all` cannot be checked against `state`'s router; None when it can.

    "all" means every other server: a router that cannot name the servers out
    of rotation would make it `peers_up >= peers_up`, a rule that always
    passes.  So it is a refusal, never a silent pass.  A count (`--min-peers
    N`) with a router that reports no count is taken on trust instead, and
    the caller says so.
    """
    if min_peers != ALL or needed(state, min_peers) is not None:
        return None
    what = "count the other servers UP" if state.peers_up is None else "name the servers out"
    return (
        f"{state.name} cannot {what}, so --min-peers all cannot be checked (a command "
        "router's state must print peers_up=N and peers_out=NAME,...; or give --min-peers N, "
        "taken on trust)"
    )


def short(state: RouterState, min_peers: MinPeers) -> bool:
    """Whether this one may not go out: too few others UP, or "all" cannot be checked.

    A count the router cannot check is not short (taken on trust, said by the caller).
    """
    if uncounted(state, min_peers) is not None:
        return True
    need = needed(state, min_peers)
    if need is None or state.peers_up is None:
        return False
    return state.peers_up < need


def describe(min_peers: MinPeers) -> str:
    return "--min-peers all" if min_peers == ALL else f"--min-peers {min_peers}"


def shortfall(state: RouterState, min_peers: MinPeers, waited: float) -> str:
    """Who is missing, for a refusal: "1 other server(s) UP, --min-peers all needed: ..."."""
    why = uncounted(state, min_peers)
    if why is not None:
        return why
    out = f": out of rotation: {', '.join(state.peers_out)}" if state.peers_out else ""
    after = f" after waiting {waited:g} s (--peer-wait)" if waited > 0 else ""
    return f"{state.peers_up} other server(s) UP, {describe(min_peers)} needed{out}{after}"


def backoff_pause(interrupts: Interrupts, deadline: Deadline) -> None:
    """Sleep a random moment (within `deadline`) after backing off."""
    interrupts.sleep(min(random.uniform(*BACKOFF), deadline.remaining()))


@dataclass
class Turn:
    """How a divert under the peer rule went: seconds waited, back-offs taken."""

    waited: float = 0.0
    backoffs: int = 0
    last: dict[str, RouterState] = field(default_factory=dict)


def divert_in_turn(
    routers: Sequence[Router],
    min_peers: MinPeers,
    limit: Deadline,
    interrupts: Interrupts,
    *,
    divert: Callable[[Router], None],
    put_back: Callable[[], None],
    progress: Callable[[str], None],
    refuse: Callable[[Router, RouterState, str], Exception],
    turn: Turn | None = None,
) -> Turn:
    """Divert each of `routers` in order, taking turns with parallel runs (module docstring).

    Before each divert: wait within `limit` until enough peers are UP, else
    raise `refuse(router, state, "")`.  After it: count again; a peer gone
    out meanwhile makes this run call `put_back()` (every divert so far),
    pause a random moment and start over; with `limit` used up, raise
    `refuse(router, state, why)`.  `turn` (kept up to date as it goes, so a
    caller sees the wait even when this raises) is returned.
    """
    turn = turn if turn is not None else Turn()
    while True:
        collided: tuple[Router, RouterState] | None = None
        for router in routers:
            state = _await(router, min_peers, limit, interrupts, progress, turn)
            if short(state, min_peers):
                raise refuse(router, state, "")
            divert(router)
            try:
                now = router.state()
            except RouterError:
                continue  # the drain wait reads it again and reports it unreachable
            turn.last[router.name] = now
            if short(now, min_peers):
                collided = (router, now)
                break
        if collided is None:
            return turn
        router, now = collided
        turn.backoffs += 1
        put_back()
        why = (
            f"another server went out of rotation while this one was diverted "
            f"({', '.join(now.peers_out) or 'unnamed'}; {now.peers_up} other(s) UP, "
            f"{describe(min_peers)}); put back"
        )
        if limit.expired():
            raise refuse(router, now, why)
        progress(f"{router.name}: {why}: trying again after a random pause")
        backoff_pause(interrupts, limit)


def _await(
    router: Router,
    min_peers: MinPeers,
    limit: Deadline,
    interrupts: Interrupts,
    progress: Callable[[str], None],
    turn: Turn,
) -> RouterState:
    def told(state: RouterState) -> None:
        progress(
            f"{router.name}: {state.peers_up} other server(s) UP, {describe(min_peers)}: "
            f"waiting up to {limit.remaining():.0f} s for {', '.join(state.peers_out) or 'them'} "
            "(--peer-wait)"
        )

    started = time.monotonic()
    state = wait_until_enough(router.state, min_peers, limit, interrupts, told)
    turn.waited += time.monotonic() - started
    turn.last[router.name] = state
    return state


def wait_until_enough(
    read: Callable[[], RouterState],
    min_peers: MinPeers,
    deadline: Deadline,
    interrupts: Interrupts,
    on_wait: Callable[[RouterState], None],
) -> RouterState:
    """Read the router until enough peers are UP or the deadline passes; the last state.

    `on_wait(state)` is called once, the first time the peers are short,
    so the operator sees who is awaited.
    """
    state = read()
    told = False
    while short(state, min_peers) and not deadline.expired():
        if not told:
            on_wait(state)
            told = True
        interrupts.sleep(min(POLL, deadline.remaining()))
        state = read()
    return state
