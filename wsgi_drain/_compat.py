"""What the Pythons wsgi-drain supports (3.9 to 3.13) do not all have.

RHEL 9's system Python is 3.9 and Ubuntu 22.04's 3.10; `enum.StrEnum` and
`tomllib` arrived in 3.11.
"""

from __future__ import annotations

import sys
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib

if sys.version_info >= (3, 11):
    from enum import StrEnum
else:  # pragma: no cover - exercised by the 3.9/3.10 unit runs

    class StrEnum(str, Enum):
        """`enum.StrEnum` before 3.11: members are strings and print as their value."""

        def __str__(self) -> str:
            return str(self.value)

        def __format__(self, spec: str) -> str:
            return str(self.value).__format__(spec)


def __getattr__(name: str) -> Any:
    """`tomllib` on first use (PEP 562): `check` without a file never loads a TOML parser."""
    if name == "tomllib":
        if sys.version_info >= (3, 11):
            import tomllib as module
        else:  # pragma: no cover
            import tomli as module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["StrEnum", "tomllib"]


def print_bug(err: BaseException) -> None:
    """A bug's traceback on stderr, on every supported Python.

    `traceback.print_exception(err)` with the exception alone is 3.10+; 3.9
    wants (type, value, traceback).  Imported here, lazily: only a bug needs it.
    """
    import traceback

    traceback.print_exception(type(err), err, err.__traceback__, file=sys.stderr)
