"""py-spy: the Python stacks of a daemon that will not exit.

A daemon stuck in interpreter shutdown shows `MainThread` in
`threading._shutdown` and the culprit thread by name; that one look is what an
operator needs.  py-spy is optional (a PyPI wheel): it is looked for where
the user said, next to the interpreter running wsgi-drain (a virtualenv's
bin/, which is not on PATH when cron, systemd or Ansible run the command by
its full path), then on PATH.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

DUMP_TIMEOUT = 15.0


def find(explicit: Path | None = None) -> tuple[str | None, str]:
    """The py-spy executable, or None and why not (for the report)."""
    if explicit is not None:
        if os.access(explicit, os.X_OK) and explicit.is_file():
            return str(explicit), ""
        return None, f"--py-spy {explicit} is not an executable file"
    beside = Path(sys.executable).parent / "py-spy"
    if os.access(beside, os.X_OK) and beside.is_file():
        return str(beside), ""
    found = shutil.which("py-spy")
    if found:
        return found, ""
    return None, (
        f"py-spy is not installed (looked in {beside.parent} and on PATH): "
        "`pip install py-spy` into wsgi-drain's environment, or pass --py-spy PATH"
    )


# py-spy dump's thread header: 'Thread 1234 (idle): "lab-hang"' (0.3.x).
_THREAD = re.compile(r'^Thread (?:0x)?[0-9a-fA-F]+ \([^)]*\): "(?P<name>[^"]*)"', re.MULTILINE)


def thread_names(stack: str | None) -> list[str]:
    """The names of the threads in a dump other than MainThread (the ones that block exit)."""
    if not stack:
        return []
    return [m["name"] for m in _THREAD.finditer(stack) if m["name"] != "MainThread"]


def dump(py_spy: str, pid: int) -> str | None:
    """`py-spy dump --pid PID`, a line saying why it failed, or None if it printed nothing."""
    try:
        done = subprocess.run(
            [py_spy, "dump", "--pid", str(pid)],
            capture_output=True,
            text=True,
            timeout=DUMP_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"py-spy failed: {err}"
    return (done.stdout or done.stderr).strip() or None
