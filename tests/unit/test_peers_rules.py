"""The peer rule's parts one at a time (wsgi_drain/peers.py), for the words and the edges.

test_peers.py runs two rollouts against one shared table; these pin each
part: the parsing of `--min-peers`, the boundary of "enough", the refusal's
words an operator reads, and the turn-taking loop (wait, divert, recount,
back off, try again) step by step against a scripted router.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import pytest

from wsgi_drain import peers
from wsgi_drain.deadline import Deadline
from wsgi_drain.errors import ConfigError, RouterError
from wsgi_drain.interrupts import Interrupts
from wsgi_drain.routers import RouterState


def st(up: int | None, out: tuple[str, ...] = (), *, listed: bool = True) -> RouterState:
    return RouterState("web1", "ready", "UP", 0, 0, up, peers_out=out, peers_listed=listed)


class Clock:
    """Interrupts' sleep, recorded instead of slept (the loop's pauses are what is checked)."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def sleep(self, timeout: float) -> None:
        self.sleeps.append(timeout)

    def check(self) -> None:
        pass


def interrupts(clock: Clock) -> Interrupts:
    return cast(Interrupts, clock)


class Script:
    """A router answering `state()` from a list (the last answer repeats)."""

    def __init__(self, name: str, answers: list[RouterState]) -> None:
        self._name, self.answers, self.reads, self.diverts = name, answers, 0, 0

    @property
    def name(self) -> str:
        return self._name

    def state(self) -> RouterState:
        self.reads += 1
        return self.answers[min(self.reads, len(self.answers)) - 1]

    def divert(self) -> None:
        self.diverts += 1

    def wait_drained(self, deadline: Deadline) -> RouterState:
        return self.state()

    def restore(self) -> None:
        pass


# -- --min-peers as given ------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [(" all ", "all"), (" 3 ", 3), (0, 0), ("0", 0)])
def test_min_peers_parse_trims_and_takes_zero(value: object, expected: object) -> None:
    assert peers.parse(value) == expected


@pytest.mark.parametrize("value", [False, None, "3.0", " ", "all peers"])
def test_min_peers_parse_refuses_a_bool_and_other_text(value: object) -> None:
    with pytest.raises(ConfigError) as err:
        peers.parse(value)
    assert str(err.value) == (
        f"--min-peers must be a whole number (0 or more) or 'all', not {value!r}"
    )


# -- enough, and the boundary -----------------------------------------------------------------


def test_min_peers_count_is_a_floor_met_exactly() -> None:
    assert peers.needed(st(2), 2) == 2
    assert not peers.short(st(2), 2), "as many UP as needed is enough"
    assert peers.short(st(1), 2)
    assert not peers.short(st(0), 0)
    assert not peers.short(st(3), 2), "more than needed is enough"


def test_min_peers_all_counts_the_servers_up_and_out() -> None:
    assert peers.needed(st(2, ("web3 (drain)", "web4 (DOWN)")), peers.ALL) == 4
    assert peers.needed(st(2), peers.ALL) == 2
    assert peers.needed(st(2, listed=False), peers.ALL) is None
    assert peers.needed(st(None), 3) is None


def test_uncounted_only_for_all_with_a_router_that_cannot_tell() -> None:
    assert peers.uncounted(st(None), 3) is None
    assert peers.uncounted(st(2), peers.ALL) is None
    assert peers.uncounted(st(2, listed=False), peers.ALL) == (
        "web1 cannot name the servers out, so --min-peers all cannot be checked (a command "
        "router's state must print peers_up=N and peers_out=NAME,...; or give --min-peers N, "
        "taken on trust)"
    )
    assert peers.uncounted(st(None), peers.ALL) == (
        "web1 cannot count the other servers UP, so --min-peers all cannot be checked (a "
        "command router's state must print peers_up=N and peers_out=NAME,...; or give "
        "--min-peers N, taken on trust)"
    )


def test_describe_and_shortfall_words() -> None:
    assert peers.describe(peers.ALL) == "--min-peers all"
    assert peers.describe(2) == "--min-peers 2"
    assert peers.shortfall(st(1, ("web3 (drain)", "web4 (DOWN)")), 2, 5) == (
        "1 other server(s) UP, --min-peers 2 needed: out of rotation: web3 (drain), "
        "web4 (DOWN) after waiting 5 s (--peer-wait)"
    )
    assert peers.shortfall(st(1), 2, 0) == "1 other server(s) UP, --min-peers 2 needed"
    assert peers.shortfall(st(1), 2, 0.5).endswith(" after waiting 0.5 s (--peer-wait)")
    assert peers.shortfall(st(None), peers.ALL, 5) == peers.uncounted(st(None), peers.ALL)


def test_backoff_pause_is_random_within_backoff_and_the_deadline() -> None:
    clock = Clock()
    for _ in range(200):
        peers.backoff_pause(interrupts(clock), Deadline(60))
    # 0.2 to 2 s: long enough for the other run's recount, short against --peer-wait.
    assert all(0.2 <= s <= 2.0 for s in clock.sleeps), clock.sleeps
    assert min(clock.sleeps) < 0.6 and max(clock.sleeps) > 1.6, "spread over the range"
    short = Clock()
    peers.backoff_pause(interrupts(short), Deadline(0.05))
    assert len(short.sleeps) == 1 and 0 < short.sleeps[0] <= 0.05


def test_turn_starts_empty_and_each_has_its_own_table() -> None:
    one, two = peers.Turn(), peers.Turn()
    assert (one.waited, one.backoffs, one.last) == (0.0, 0, {})
    one.last["web1"] = st(1)
    assert two.last == {}


# -- the turn-taking loop, step by step ----------------------------------------------------------


def refuse_with(router: object, state: RouterState, why: str) -> Exception:
    return RouterError(getattr(router, "name", "?"), f"refused: {why or 'short'}")


def turns(
    routers: list[Script],
    min_peers: peers.MinPeers,
    limit: Deadline,
    clock: Clock,
    put_backs: list[int],
    said: list[str],
    turn: peers.Turn | None = None,
) -> peers.Turn:
    return peers.divert_in_turn(
        routers,
        min_peers,
        limit,
        interrupts(clock),
        divert=lambda r: cast(Script, r).divert(),
        put_back=lambda: put_backs.append(1),
        progress=said.append,
        refuse=refuse_with,
        turn=turn,
    )


def test_divert_in_turn_with_enough_peers_diverts_once_and_records_the_recount() -> None:
    router = Script("web1", [st(1), st(1, ())])
    put_backs: list[int] = []
    given = peers.Turn()
    turn = turns([router], 1, Deadline(0), Clock(), put_backs, [], given)
    assert turn is given
    assert router.diverts == 1 and router.reads == 2 and put_backs == []
    assert turn.backoffs == 0 and turn.last == {"web1": st(1, ())}


def test_divert_in_turn_refuses_before_diverting_when_too_few() -> None:
    router = Script("web1", [st(0, ("web2 (DOWN)",))])
    with pytest.raises(RouterError) as err:
        turns([router], 1, Deadline(0), Clock(), [], [])
    assert str(err.value) == "web1: refused: short" and router.diverts == 0


def test_divert_in_turn_collision_at_the_deadline_puts_back_and_refuses_with_who() -> None:
    router = Script("web1", [st(3), st(2, ("web3 (drain)",))])
    put_backs: list[int] = []
    turn = peers.Turn()
    with pytest.raises(RouterError) as err:
        turns([router], peers.ALL, Deadline(0), Clock(), put_backs, [], turn)
    assert str(err.value) == (
        "web1: refused: another server went out of rotation while this one was diverted "
        "(web3 (drain); 2 other(s) UP, --min-peers all); put back"
    )
    assert put_backs == [1] and turn.backoffs == 1


def test_divert_in_turn_collision_with_peer_wait_backs_off_then_tries_again() -> None:
    # Count, divert, recount short (another run), back off; then all UP again.
    router = Script("web1", [st(3), st(2, ("web3 (drain)",)), st(3), st(3)])
    put_backs: list[int] = []
    said: list[str] = []
    clock = Clock()
    turn = turns([router], peers.ALL, Deadline(60), clock, put_backs, said)
    assert router.diverts == 2 and put_backs == [1] and turn.backoffs == 1
    assert said == [
        "web1: another server went out of rotation while this one was diverted "
        "(web3 (drain); 2 other(s) UP, --min-peers all); put back: trying again after a "
        "random pause"
    ]
    assert len(clock.sleeps) == 1 and peers.BACKOFF[0] <= clock.sleeps[0] <= peers.BACKOFF[1]


def test_divert_in_turn_stops_the_round_at_the_first_collision() -> None:
    first = Script("web1", [st(3), st(2, ("web9 (drain)",))])
    second = Script("web1b", [st(3)])
    with pytest.raises(RouterError):
        turns([first, second], peers.ALL, Deadline(0), Clock(), [], [])
    assert second.diverts == 0 and second.reads == 0


def test_divert_in_turn_unnamed_collision_says_unnamed() -> None:
    router = Script("web1", [st(2), st(1)])
    with pytest.raises(RouterError) as err:
        turns([router], 2, Deadline(0), Clock(), [], [])
    assert "(unnamed; 1 other(s) UP, --min-peers 2)" in str(err.value)


def test_divert_in_turn_a_failed_recount_read_is_no_collision() -> None:
    class Unreadable(Script):
        def state(self) -> RouterState:
            if self.diverts:
                raise RouterError(self.name, "unreachable")
            return super().state()

    router = Unreadable("web1", [st(1)])
    put_backs: list[int] = []
    turn = turns([router], 1, Deadline(0), Clock(), put_backs, [])
    assert router.diverts == 1 and put_backs == [] and turn.backoffs == 0
    assert turn.last == {"web1": st(1)}, "the state before the divert is what is known"


# -- waiting for peers ------------------------------------------------------------------------


def test_wait_until_enough_polls_and_tells_once() -> None:
    reads = [st(0, ("web2 (DOWN)",)), st(0, ("web2 (DOWN)",)), st(1)]
    told: list[RouterState] = []
    clock = Clock()
    got = peers.wait_until_enough(
        lambda: reads.pop(0), 1, Deadline(60), interrupts(clock), told.append
    )
    assert got == st(1) and reads == []
    assert told == [st(0, ("web2 (DOWN)",))]
    assert clock.sleeps == [1.0, 1.0], "a waiting run reads the router once a second"


def test_wait_until_enough_with_no_time_left_reads_once_and_waits_not() -> None:
    told: list[RouterState] = []
    clock = Clock()
    read: Callable[[], RouterState] = lambda: st(0)  # noqa: E731
    got = peers.wait_until_enough(read, 1, Deadline(0), interrupts(clock), told.append)
    assert got == st(0) and told == [] and clock.sleeps == []


def test_wait_until_enough_sleeps_no_longer_than_the_deadline() -> None:
    clock = Clock()
    answers = [st(0), st(1)]
    peers.wait_until_enough(
        lambda: answers.pop(0), 1, Deadline(0.5), interrupts(clock), lambda state: None
    )
    assert len(clock.sleeps) == 1 and 0 < clock.sleeps[0] <= 0.5 < peers.POLL


def test_waiting_for_peers_says_who_and_how_long() -> None:
    router = Script("web1", [st(0, ("web2 (DOWN)",)), st(1), st(1)])
    said: list[str] = []
    turns([router], 1, Deadline(30), Clock(), [], said)
    assert said == [
        "web1: 0 other server(s) UP, --min-peers 1: waiting up to 30 s for web2 (DOWN) "
        "(--peer-wait)"
    ]
    assert router.diverts == 1
    unnamed = Script("web1", [st(0), st(1), st(1)])
    said.clear()
    turns([unnamed], 1, Deadline(30), Clock(), [], said)
    assert said[0].endswith("waiting up to 30 s for them (--peer-wait)")


def test_waiting_for_peers_adds_the_time_waited_to_the_turn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    limit = Deadline(30)
    turn = peers.Turn(waited=1.0)
    router = Script("web1", [st(1)])
    ticks = iter([100.0, 250.0, 300.0, 301.0])
    monkeypatch.setattr(peers.time, "monotonic", lambda: next(ticks))
    peers._await(router, 1, limit, interrupts(Clock()), lambda m: None, turn)
    peers._await(router, 1, limit, interrupts(Clock()), lambda m: None, turn)
    monkeypatch.undo()
    assert turn.waited == 1.0 + 150.0 + 1.0
    assert turn.last == {"web1": st(1)}


def test_divert_in_turn_a_failed_recount_read_still_diverts_the_next_router() -> None:
    class Unreadable(Script):
        def state(self) -> RouterState:
            if self.diverts:
                raise RouterError(self.name, "unreachable")
            return super().state()

    first, second = Unreadable("web1", [st(1)]), Script("web1b", [st(1)])
    turns([first, second], 1, Deadline(0), Clock(), [], [])
    assert (first.diverts, second.diverts) == (1, 1)
