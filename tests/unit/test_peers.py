"""The peer rule and the turn-taking of parallel rollouts (wsgi_drain/peers.py).

The load balancer is modelled as a shared table of server states; each
"host" is a thread running `divert_in_turn` against it, as two Ansible plays
(or `serial: 2`) would against one HAProxy.  The real thing is in
tests/integration/test_fleet_peers.py.
"""

from __future__ import annotations

import threading
import time
from typing import cast

import pytest

from wsgi_drain import peers
from wsgi_drain.deadline import Deadline
from wsgi_drain.errors import ConfigError, RouterError
from wsgi_drain.interrupts import Interrupts
from wsgi_drain.routers import RouterState


def state(up: int | None, out: tuple[str, ...] = ()) -> RouterState:
    return RouterState("lb", "ready", "UP", 0, 0, up, peers_out=out)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("all", "all"), ("ALL", "all"), ("0", 0), ("3", 3), (2, 2)],
)
def test_min_peers_takes_a_count_or_all(value: object, expected: object) -> None:
    assert peers.parse(value) == expected


@pytest.mark.parametrize("value", ["-1", "two", "", True, -1, 1.5])
def test_min_peers_refuses_anything_else(value: object) -> None:
    with pytest.raises(ConfigError, match="whole number"):
        peers.parse(value)


def test_min_peers_all_needs_every_other_server_up() -> None:
    assert not peers.short(state(3), "all")
    assert peers.short(state(2, ("web3 (drain)",)), "all")
    assert peers.needed(state(2, ("web3 (drain)",)), "all") == 3
    # A count is a floor, whoever else is out.
    assert not peers.short(state(2, ("web3 (drain)",)), 2)
    assert peers.short(state(1, ("web3 (drain)", "web4 (DOWN)")), 2)


def test_a_router_that_cannot_see_its_peers_is_never_short() -> None:
    assert peers.needed(state(None), "all") is None
    assert not peers.short(state(None), 5)


class Balancer:
    """A load balancer's server table, read and written atomically like HAProxy's."""

    def __init__(self, names: list[str]) -> None:
        self.lock = threading.Lock()
        self.admin = dict.fromkeys(names, "ready")
        self.out_spans: dict[str, list[tuple[float, float]]] = {n: [] for n in names}

    def state(self, name: str) -> RouterState:
        with self.lock:
            others = {n: a for n, a in self.admin.items() if n != name}
            up = sum(1 for a in others.values() if a == "ready")
            out = tuple(f"{n} ({a})" for n, a in others.items() if a != "ready")
            return RouterState(name, self.admin[name], "UP", 0, 0, up, peers_out=out)

    def set(self, name: str, admin: str) -> None:
        with self.lock:
            self.admin[name] = admin


class Server:
    """One host's router handle on the shared balancer."""

    def __init__(self, lb: Balancer, name: str, pause: threading.Barrier | None = None) -> None:
        self.lb, self._name, self.pause = lb, name, pause

    @property
    def name(self) -> str:
        return self._name

    def state(self) -> RouterState:
        return self.lb.state(self._name)

    def divert(self) -> None:
        if self.pause is None:
            self.lb.set(self._name, "drain")
            return
        # The worst interleaving, once: both hosts counted their peers, both
        # divert, and only then does either count again.
        self.pause.wait(timeout=5)
        self.lb.set(self._name, "drain")
        self.pause.wait(timeout=5)
        self.pause = None

    def wait_drained(self, deadline: Deadline) -> RouterState:
        return self.state()

    def restore(self) -> None:
        self.lb.set(self._name, "ready")


class Sleeper:
    """Interrupts' sleep for a worker thread (signals reach only the main thread)."""

    def sleep(self, timeout: float) -> None:
        time.sleep(max(timeout, 0.0))


def rollout(
    lb: Balancer, name: str, wait: float, spans: list, errors: list, pause: threading.Barrier
) -> None:
    """One host's run: divert in turn, "restart" while out, put back."""
    server = Server(lb, name, pause)
    try:
        peers.divert_in_turn(
            [server],
            "all",
            Deadline(wait),
            cast(Interrupts, Sleeper()),
            divert=lambda r: r.divert(),
            put_back=server.restore,
            progress=lambda m: None,
            refuse=lambda r, s, why: RouterError(r.name, why or "short"),
        )
    except RouterError as err:
        errors.append((name, str(err)))
        return
    start = time.monotonic()
    time.sleep(0.3)  # the restart, while out of rotation
    spans.append((name, start, time.monotonic()))
    server.restore()


def run_together(wait: float) -> tuple[list, list]:
    lb = Balancer(["web1", "web2", "web3", "web4"])
    barrier = threading.Barrier(2)
    spans: list = []
    errors: list = []
    threads = [
        threading.Thread(target=rollout, args=(lb, n, wait, spans, errors, barrier))
        for n in ("web1", "web2")
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert all(lb.admin[n] == "ready" for n in lb.admin), lb.admin
    return spans, errors


def test_two_rollouts_at_once_never_both_go_on_without_peer_wait() -> None:
    spans, errors = run_together(wait=0)
    # Both diverted before either recounted: whichever recounts first sees the
    # other out and backs off; the other may then find everyone UP and go on.
    assert len(spans) <= 1 and len(spans) + len(errors) == 2
    assert errors and all("another server went out" in why for _, why in errors)


def test_two_rollouts_at_once_take_turns_with_peer_wait() -> None:
    spans, errors = run_together(wait=30)
    assert errors == []
    assert sorted(name for name, *_ in spans) == ["web1", "web2"]
    (_, _, first_back), (_, second_out, _) = sorted(spans, key=lambda s: s[1])
    assert first_back <= second_out, "two hosts were out of rotation at once"


def test_min_peers_all_refuses_a_router_that_cannot_name_the_servers_out() -> None:
    # peers_up=1 but the servers out unknown: "all" would be 1 >= 1, always.
    unlisted = RouterState("hook", "ready", "UP", 0, 0, peers_up=1, peers_listed=False)
    assert peers.short(unlisted, peers.ALL)
    assert "cannot name the servers out" in peers.shortfall(unlisted, peers.ALL, 0)
    assert not peers.short(unlisted, 1)
    uncounted = RouterState("hook", "ready", "UP", 0, 0, peers_up=None)
    assert peers.short(uncounted, peers.ALL)
    assert "cannot count the other servers UP" in peers.shortfall(uncounted, peers.ALL, 0)
    assert not peers.short(uncounted, 1)  # a count with no count to check: taken on trust
