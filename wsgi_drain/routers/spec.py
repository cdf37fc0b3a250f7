"""What router specs share: an optional leading ``KEY=VALUE:`` before the router's own part.

`command:timeout=10:/usr/local/sbin/lb-hook web1` and
`nginx:pid=/run/nginx.pid:/etc/nginx/upstreams/app.conf:10.0.0.11:8080` split
the same way; each router parses and checks its own value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from wsgi_drain.errors import ConfigError

T = TypeVar("T")


def leading_option(
    spec: str, key: str, error: str, parse: Callable[[str], T | None], default: T
) -> tuple[T, str]:
    """(VALUE, REST) of a spec starting ``KEY=VALUE:REST``; (default, spec) without KEY=.

    VALUE is `parse` of the text up to the first ':'.  Raises
    ConfigError(error) when no ':' ends it or `parse` returns None.
    """
    prefix = f"{key}="
    if not spec.startswith(prefix):
        return default, spec
    text, sep, rest = spec[len(prefix) :].partition(":")
    value = parse(text) if sep else None
    if value is None:
        raise ConfigError(error)
    return value, rest
