"""The lab's WSGI test application (a `WSGIScriptAlias` target).

Standard library only: Debian's mod_wsgi embeds /usr/bin/python3, which sees
none of this project's packages.  ApacheLab copies this file into the lab's
app directory; the control files it reads live next to the copy:

- ``version.txt``: read once, at import, and served by ``/version`` (and in the
  ``X-Version`` header), so a changed answer proves the process restarted.
- ``hang``: if present at import, a non-daemon thread named ``lab-hang`` starts
  and never ends, so the process hangs in interpreter shutdown the way an app
  with a stuck thread does (aborted only at ``shutdown-timeout``).
- ``unhealthy``: while present, ``/health`` answers 503.
- ``loaded/``: each process writes a file named after its pid there once it
  has imported this module (how the lab knows every daemon loaded the app).
- ``crash``: if present at import, the process exits at once with status 3,
  the way a deploy whose code kills the interpreter does (with preloading,
  every replacement then dies as it starts: a crash loop).
- ``broken``: if present at import, the module raises ModuleNotFoundError (a
  deploy that forgot a dependency): the process lives, every request is 500.
- ``import-delay``: if present at import, holds seconds the import sleeps (an
  app with a slow import: with lazy loading, the first request of each new
  process waits that long).
- ``children``: if present at import, the process starts two children
  (``app_child.py``, beside this file): with ``plain`` in it they only sleep
  and outlive their daemon (what wsgi-drain's leftovers names); with ``hook``
  the app ends them when its daemon exits, the way docs/app-children.md
  shows (mod_wsgi.subscribe_shutdown, atexit, a child that watches its parent).

Routes: ``/`` (200, the serving pid), ``/health``, ``/slow?s=SECONDS`` (sleeps,
capped at 600 s, then 200), ``/busy?s=SECONDS`` (the same, for load the lab's
HAProxy balances: it pins ``/slow`` to one server; ``/slow/NAME`` too, pinned
to server NAME in a fleet), ``/version``.  Every response carries ``X-Pid``,
and ``X-Loaded-At``: the moment (CLOCK_MONOTONIC, one clock for every process
of the host) this process finished importing the app; a request begun before
it waited for the import.
"""

from __future__ import annotations

import atexit
import importlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

HERE = os.path.dirname(os.path.abspath(__file__))
VERSION_FILE = os.path.join(HERE, "version.txt")
HANG_FILE = os.path.join(HERE, "hang")
CRASH_FILE = os.path.join(HERE, "crash")
BROKEN_FILE = os.path.join(HERE, "broken")
UNHEALTHY_FILE = os.path.join(HERE, "unhealthy")
MAX_SLOW = 600.0

StartResponse = Callable[..., Any]


def _read_version() -> str:
    try:
        with open(VERSION_FILE, encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return "unknown"


VERSION = _read_version()


def _hang_forever() -> None:
    # Never returns: threading._shutdown() joins this non-daemon thread forever.
    while True:
        time.sleep(3600)


if os.path.exists(CRASH_FILE):
    os._exit(3)


def _import_delay() -> float:
    try:
        with open(os.path.join(HERE, "import-delay"), encoding="utf-8") as f:
            return min(max(float(f.read().strip() or 0), 0.0), 60.0)
    except (OSError, ValueError):
        return 0.0


time.sleep(_import_delay())

if os.path.exists(BROKEN_FILE):
    import lab_missing_dependency  # type: ignore[import-not-found]  # noqa: F401

try:
    with open(os.path.join(HERE, "loaded", str(os.getpid())), "w") as _marker:
        _marker.write(VERSION)
except OSError:
    pass

if os.path.exists(HANG_FILE):
    threading.Thread(target=_hang_forever, name="lab-hang", daemon=False).start()

LOADED_AT = time.monotonic()


# --- docs/app-children.md: the app's side ---
CHILDREN: list[subprocess.Popen[bytes]] = []
# Under mod_wsgi sys.executable need not be a Python interpreter: name one.
CHILD_PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
CHILD_GRACE = 2.0  # seconds; keep it under the group's shutdown-timeout


def end_children(*_args: object, **_kwargs: object) -> None:
    """SIGTERM every child, wait a little, SIGKILL the rest, reap them all (idempotent)."""
    for child in CHILDREN:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    until = time.monotonic() + CHILD_GRACE
    for child in CHILDREN:
        try:
            child.wait(timeout=max(0.0, until - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def on_daemon_exit() -> None:
    """Run end_children when the daemon shuts down, on every mod_wsgi version."""
    try:
        mod_wsgi = importlib.import_module("mod_wsgi")  # the daemon's embedded module
    except ImportError:
        mod_wsgi = None
    if mod_wsgi is not None and hasattr(mod_wsgi, "subscribe_shutdown"):
        # mod_wsgi >= 4.8.0: called as the daemon begins its shutdown, while
        # shutdown-timeout's reaper bounds it.
        mod_wsgi.subscribe_shutdown(end_children)
    # Older versions, and a shutdown that skips the callbacks: at interpreter exit.
    atexit.register(end_children)


# --- end ---


def _start_children(mode: str) -> None:
    child = os.path.join(HERE, "app_child.py")
    argv = [CHILD_PYTHON, child, "watch", str(os.getpid())] if mode == "hook" else None
    for _ in range(2):
        CHILDREN.append(subprocess.Popen(argv or [CHILD_PYTHON, child, "plain"]))
    if mode == "hook":
        on_daemon_exit()
        _note_shutdown_callbacks()


def _note_shutdown_callbacks() -> None:
    # For the tests: loaded/PID.stopping proves mod_wsgi ran its shutdown callbacks.
    try:
        subscribe = importlib.import_module("mod_wsgi").subscribe_shutdown
    except (ImportError, AttributeError):
        return
    marker = os.path.join(HERE, "loaded", f"{os.getpid()}.stopping")

    def note(*args: object, **kwargs: object) -> None:
        with open(marker, "w", encoding="utf-8") as out:
            out.write(f"{args} {sorted(kwargs.items())}\n")

    subscribe(note)


try:
    with open(os.path.join(HERE, "children"), encoding="utf-8") as _flag:
        _start_children(_flag.read().strip())
except FileNotFoundError:
    pass


def _slow_seconds(query: str) -> float:
    try:
        seconds = float(parse_qs(query).get("s", ["1"])[0])
    except ValueError:
        seconds = 1.0
    return min(max(seconds, 0.0), MAX_SLOW)


def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "") or "/"
    pid = os.getpid()
    status = "200 OK"
    if path == "/":
        body = f"pid {pid}\n"
    elif path == "/health":
        if os.path.exists(UNHEALTHY_FILE):
            status, body = "503 Service Unavailable", "unhealthy\n"
        else:
            body = "ok\n"
    elif path in ("/slow", "/busy") or path.startswith("/slow/"):
        # /busy is /slow that the lab's HAProxy does not pin to one server;
        # /slow/NAME is /slow that a fleet's HAProxy pins to server NAME.
        seconds = _slow_seconds(environ.get("QUERY_STRING", ""))
        time.sleep(seconds)
        body = f"slept {seconds} pid {pid}\n"
    elif path == "/version":
        body = f"{VERSION}\n"
    else:
        status, body = "404 Not Found", "not found\n"
    data = body.encode()
    start_response(
        status,
        [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(data))),
            ("X-Pid", str(pid)),
            ("X-Version", VERSION),
            ("X-Loaded-At", f"{LOADED_AT:.6f}"),
        ],
    )
    return [data]
