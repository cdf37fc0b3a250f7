"""Front-end routers: take this host's backend out of rotation and put it back.

Every router implements the small `Router` protocol (routers/protocol.py,
re-exported here); `restart/` only talks to that protocol, so adding a
router is adding a module and a registry entry.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from wsgi_drain.errors import ConfigError
from wsgi_drain.routers.protocol import Router, RouterState

__all__ = [
    "KINDS",
    "Router",
    "RouterState",
    "build",
    "from_spec",
    "parse_spec",
    "spec_of",
    "specs",
]


KINDS = ("haproxy", "nginx", "health-file", "command")
# What each kind's spec is, and an example of it, for the message when it is missing.
EXAMPLES = {
    "haproxy": ("the stats socket and the server", "haproxy:/run/haproxy/admin.sock:be_app/web1"),
    "nginx": (
        "the upstream file and the server",
        "nginx:/etc/nginx/upstreams/myapp.conf:10.0.0.11:8080",
    ),
    "health-file": (
        "the file whose presence fails the health URL",
        "health-file:/var/www/myapp/maintenance",
    ),
    "command": ("the program and its arguments", "command:'/usr/local/sbin/lb-hook web1'"),
}


def build(
    kind: str,
    spec: str,
    group: str | None = None,
    lb_detect: float | None = None,
    state_dir: Path | None = None,
) -> Router:
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

        return NginxRouter(parse_nginx(spec), state_dir)
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
    if sep and kind in EXAMPLES and not spec.strip():
        raise ConfigError(
            f"router {entry!r}: nothing after '{kind}:'; give {EXAMPLES[kind][0]}, "
            f"e.g. {EXAMPLES[kind][1]}"
        )
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


def from_spec(
    entry: str,
    group: str | None = None,
    lb_detect: float | None = None,
    state_dir: Path | None = None,
) -> Router:
    """A router from its "KIND:SPEC" form (command line, configuration, journal).

    `group` is told to routers that pass it on (the command router's environment);
    `state_dir` is where routers that edit shared files take their locks (nginx).
    """
    kind, spec = parse_spec(entry)
    return build(kind, spec, group, lb_detect, state_dir)
