"""A child process the lab's app starts at import (``children`` control file; lab/app.py).

Run as ``python3 app_child.py plain`` it only sleeps: what an app's worker
looks like to wsgi-drain when nobody ends it, and it outlives its daemon.
Run as ``python3 app_child.py watch PARENT_PID`` it is the child of
docs/app-children.md that watches its parent: the kernel sends it SIGTERM
when its parent's thread exits (PR_SET_PDEATHSIG), and it checks its parent
once a second as well (the signal is tied to the forking thread, and is
lost if the parent died before the prctl).  Standard library only.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def watch(parent: int) -> None:
    # --- docs/app-children.md: the child's side ---
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: the poll below still ends it
    while os.getppid() == parent:  # reparented (to init): the daemon has gone
        time.sleep(1.0)
    # --- end ---


def main() -> None:
    if sys.argv[1:2] == ["watch"]:
        watch(int(sys.argv[2]))
        return
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
