"""Front-end routers: take this host's backend out of rotation and put it back.

Every router implements the small `Router` protocol below; `restart.py` only
talks to that protocol, so adding a router is adding a module and a registry
entry.
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
    rotation (not drained, not in maintenance); `since` seconds since the last
    status change when known.
    """

    name: str
    admin: str
    status: str
    sessions: int
    queued: int
    peers_up: int
    since: float | None = None


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


def build(kind: str, spec: str) -> Router:
    """A router from its kind and spec, e.g. ("haproxy", "/run/haproxy.sock:be/web1").

    Modules are imported here, on use, so commands that need no router stay fast.
    """
    if kind == "haproxy":
        from wsgi_drain.routers.haproxy import HAProxyRouter, parse_target

        return HAProxyRouter(parse_target(spec))
    raise ValueError(f"unknown router kind {kind!r}")


def spec_of(kind: str, spec: str) -> str:
    """The journal form of a router: "KIND:SPEC"."""
    return f"{kind}:{spec}"


def from_journal(entry: str) -> Router:
    kind, _, spec = entry.partition(":")
    return build(kind, spec)
