"""Front-end routers: take this host's backend out of rotation and put it back.

Every router implements the small `Router` protocol below; `restart.py` only
talks to that protocol, so adding a router is adding a module and a registry
entry.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from wsgi_drain.deadline import Deadline
from wsgi_drain.errors import ConfigError


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


KINDS = ("haproxy", "nginx", "health-file", "command")


def build(kind: str, spec: str, group: str | None = None, lb_detect: float | None = None) -> Router:
    """A router from its kind and spec, e.g. ("haproxy", "/run/haproxy.sock:be/web1").

    Modules are imported here, on use, so commands that need no router stay fast.
    Raises ConfigError, naming the kinds, for an unknown kind or a bad spec.
    """
    if kind == "haproxy":
        from wsgi_drain.routers.haproxy import HAProxyRouter, parse_target

        return HAProxyRouter(parse_target(spec))
    if kind == "nginx":
        from wsgi_drain.routers.nginx import NginxRouter
        from wsgi_drain.routers.nginx import parse_target as parse_nginx

        return NginxRouter(parse_nginx(spec))
    if kind == "health-file":
        from wsgi_drain.routers.healthfile import HealthFileRouter, parse_path

        return HealthFileRouter(parse_path(spec), lb_detect)
    if kind == "command":
        from wsgi_drain.routers.command import CommandRouter, parse_command

        return CommandRouter(parse_command(spec), group)
    raise ConfigError(
        f"unknown router kind {kind!r} in {kind}:{spec}: use one of "
        + ", ".join(f"{k}:..." for k in KINDS)
    )


def parse_spec(entry: str) -> tuple[str, str]:
    """ "KIND:SPEC" -> (kind, spec); the kind is everything before the first ':'."""
    kind, sep, spec = entry.partition(":")
    if not sep or not kind or not spec:
        raise ConfigError(
            f"router {entry!r} must be KIND:SPEC, e.g. haproxy:/run/haproxy/admin.sock:be_app/web1 "
            f"(kinds: {', '.join(KINDS)})"
        )
    return kind, spec


def specs(haproxy: Iterable[str], routers: Iterable[str]) -> list[str]:
    """Every router of a group as "KIND:SPEC": --haproxy S is short for --router haproxy:S."""
    found = [spec_of("haproxy", s) for s in haproxy]
    for entry in routers:
        parse_spec(entry)
        if entry not in found:
            found.append(entry)
    return found


def spec_of(kind: str, spec: str) -> str:
    """The journal form of a router: "KIND:SPEC"."""
    return f"{kind}:{spec}"


def from_spec(entry: str, group: str | None = None, lb_detect: float | None = None) -> Router:
    """A router from its "KIND:SPEC" form (command line, configuration, journal).

    `group` is told to routers that pass it on (the command router's environment).
    """
    kind, spec = parse_spec(entry)
    return build(kind, spec, group, lb_detect)
