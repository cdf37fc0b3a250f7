"""What router specs share: an optional leading ``KEY=VALUE:`` before the router's own part.

`command:timeout=10:/usr/local/sbin/lb-hook web1` and
`nginx:pid=/run/nginx.pid:/etc/nginx/upstreams/app.conf:10.0.0.11:8080` split
the same way; each router checks its own value.
"""

from __future__ import annotations

from wsgi_drain.errors import ConfigError


def leading_option(spec: str, key: str, error: str) -> tuple[str | None, str]:
    """(VALUE, REST) of a spec starting ``KEY=VALUE:REST``; (None, spec) without KEY=.

    Raises ConfigError(error) when no ':' ends the value (the value is up to
    the first ':').
    """
    prefix = f"{key}="
    if not spec.startswith(prefix):
        return None, spec
    value, sep, rest = spec[len(prefix) :].partition(":")
    if not sep:
        raise ConfigError(error)
    return value, rest
