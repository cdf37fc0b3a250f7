"""What the Pythons wsgi-drain supports (3.9 to 3.13) do not all have.

RHEL 9's system Python is 3.9 and Ubuntu 22.04's 3.10; `enum.StrEnum` and
`tomllib` arrived in 3.11.
"""

from __future__ import annotations

import sys
from enum import Enum

if sys.version_info >= (3, 11):
    from enum import StrEnum

    import tomllib
else:  # pragma: no cover - exercised by the 3.9/3.10 unit runs
    import tomli as tomllib

    class StrEnum(str, Enum):
        """`enum.StrEnum` before 3.11: members are strings and print as their value."""

        def __str__(self) -> str:
            return str(self.value)

        def __format__(self, spec: str) -> str:
            return str(self.value).__format__(spec)


__all__ = ["StrEnum", "tomllib"]
