"""What every router is to the rest of wsgi-drain: the `Router` protocol and its `RouterState`.

Kept apart from the registry (`wsgi_drain.routers`) so that a router module
imports only this, and the registry imports the router modules: the imports
run one way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from wsgi_drain.deadline import Deadline


@dataclass(frozen=True)
class RouterState:
    """What a router says about our backend server right now.

    `admin` is the administrative state ("ready", "drain", "maint"); `status`
    the operational one as the router reports it ("UP", "DOWN", "DRAIN", "MAINT",
    "no check"...); `sessions`/`queued` the in-flight and queued requests;
    `peers_up` how many *other* servers of the same backend are UP and in
    rotation (not drained, not in maintenance), None when the router cannot
    tell; `since` seconds since the last status change when known;
    `sessions_known` False when the router cannot count requests in flight
    (then `sessions` is 0 and means nothing).  `peers_out` names the other
    servers that are not UP and in rotation, each with its state (e.g.
    "web2 (drain)"), when the router can tell; `peers_listed` False when it
    cannot (it counts the servers UP but cannot name those out), so
    `--min-peers all` cannot be checked against it.  `lb_up` is whether the router
    itself sees the server UP (its health checks pass), None when it has no
    such view (then only `admin` counts).  `peers_failing` names the peers
    that are UP but failing their checks (about to go down).
    """

    name: str
    admin: str
    status: str
    sessions: int
    queued: int
    peers_up: int | None
    since: float | None = None
    sessions_known: bool = True
    peers_out: tuple[str, ...] = ()
    peers_listed: bool = True
    lb_up: bool | None = None
    # Other servers UP but failing their health checks now (HAProxy "UP 1/2":
    # going down): counted in peers_up until they are DOWN.
    peers_failing: tuple[str, ...] = ()


class Router(Protocol):
    """One front-end router's handle on one backend server."""

    @property
    def name(self) -> str:
        """A short human name, e.g. "haproxy /run/haproxy/admin.sock be_app/web1"."""
        ...

    def state(self) -> RouterState:
        """Read the server's current state.  Raises RouterError when unreachable."""
        ...

    def divert(self) -> None:
        """Stop sending new requests to the server (keep in-flight ones)."""
        ...

    def wait_drained(self, deadline: Deadline) -> RouterState:
        """Block until no request is in flight or queued, or the deadline passes.

        Returns the last state seen; the caller decides whether a non-empty
        state at the deadline is fatal.
        """
        ...

    def restore(self) -> None:
        """Put the server back in rotation."""
        ...
