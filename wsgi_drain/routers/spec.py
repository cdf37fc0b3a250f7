"""What router specs share: an optional leading ``KEY=VALUE:`` before the router's own part.

`command:timeout=10:/usr/local/sbin/lb-hook web1` and
`nginx:pid=/run/nginx.pid:/etc/nginx/upstreams/app.conf:10.0.0.11:8080`
split the same way.  Each router declares its option once, as a
`LeadingOption` (its key, how its value is parsed and checked, the default,
what the value must be); the splitting and the error's form are here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from wsgi_drain.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class LeadingOption(Generic[T]):
    """A router's optional ``KEY=VALUE:`` at the start of its spec.

    `parse` returns the value, or None when the text is not a valid one;
    `needs` says what it must be (for the error).
    """

    router: str
    key: str
    parse: Callable[[str], T | None]
    default: T
    needs: str

    def split(self, spec: str, example: str) -> tuple[T, str]:
        """(VALUE, REST) of a spec starting ``KEY=VALUE:REST``; (default, spec) without KEY=.

        VALUE is `parse` of the text up to the first ':'.  Raises ConfigError,
        showing `example` (a whole spec with the option), when no ':' ends it
        or `parse` returns None.
        """
        prefix = f"{self.key}="
        if not spec.startswith(prefix):
            return self.default, spec
        text, sep, rest = spec[len(prefix) :].partition(":")
        value = self.parse(text) if sep else None
        if value is None:
            raise ConfigError(
                f"{self.router} router {spec!r}: {self.key}= needs {self.needs}, e.g. {example}"
            )
        return value, rest
