"""What every server the lab starts shares: used as a context manager, stopped on exit."""

from __future__ import annotations

from types import TracebackType
from typing import TypeVar

S = TypeVar("S", bound="Service")


class Service:
    """Start on `with`, stop (everything it started, by pid) on leaving it."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self: S) -> S:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
