"""Session-wide rules for every test.

Under CI (CI=true) the session refuses to start when this interpreter's
virtualenv is on PATH: users call `wsgi-drain` by full path from cron, Ansible
or systemd with no virtualenv on PATH, so a lookup that only works with
.venv/bin on PATH must fail in CI, not at a user's. `scripts/test` (and so
`.ci/run`) runs pytest with a system PATH.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest


def venv_dirs_on_path() -> list[str]:
    """PATH entries that are this interpreter's virtualenv bin directory."""
    if sys.prefix == sys.base_prefix:
        return []
    bin_dir = Path(sys.prefix, "bin").resolve()
    entries = os.environ.get("PATH", "").split(os.pathsep)
    return [e for e in entries if e and Path(e).resolve() == bin_dir]


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.environ.get("CI") == "true" and venv_dirs_on_path():
        raise pytest.UsageError(
            f"PATH contains the virtualenv {venv_dirs_on_path()[0]}: run the tests as "
            "scripts/test does (PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin), the way "
            "cron and Ansible run wsgi-drain"
        )
