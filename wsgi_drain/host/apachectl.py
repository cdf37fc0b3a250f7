"""Apache's own command line: its configuration test, and signals to the parent.

The configuration test runs the binary the parent runs (`/proc/PID/exe`)
with the parent's own -d/-f/-D/-C/-c arguments and environment (Debian's
apache2ctl exports APACHE_CONFDIR, APACHE_RUN_DIR, ... before it starts
httpd, and the configuration reads them), adding `-t`: no shell, no
apachectl script, so it tests exactly what a graceful restart will read.
A failed test must stop a reload: Apache re-reads its configuration on
SIGUSR1, and a parent that cannot read it exits (docs/apache.md).

The parent is signalled through a pidfd opened and then checked against the
pid and start time discovery saw, never by a bare pid.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

import psutil

from wsgi_drain import procfacts, procfs
from wsgi_drain.discovery import ApacheInstance
from wsgi_drain.errors import NotFoundError, UnsupportedError

# `httpd -t` reads every file of the configuration; a large one takes a second.
CONFIGTEST_TIMEOUT = 60.0
# httpd's arguments that choose what it reads (the rest, like -k or -X, choose what it does).
_KEPT = ("-d", "-f", "-D", "-C", "-c")


@dataclass(frozen=True)
class ConfigTest:
    """The outcome of `httpd -t`: passed or not, the command shown, what Apache said."""

    ok: bool
    command: str
    output: str


def configtest_argv(argv: list[str]) -> list[str]:
    """httpd's arguments that choose its configuration, from a running parent's argv, + -t."""
    kept: list[str] = []
    words = iter(argv[1:])
    for word in words:
        flag, attached = word[:2], word[2:]
        if flag in _KEPT:
            kept += [flag, attached or next(words, "")]
    return [*kept, "-t"]


def configtest(instance: ApacheInstance, environ: Mapping[str, str] | None = None) -> ConfigTest:
    """Run the instance's binary with its own arguments and `-t`; never raises for a failure."""
    pid = instance.pid
    argv = procfs.cmdline(pid)
    if not argv:
        raise NotFoundError(f"cannot read the command line of Apache pid {pid}: run as root")
    env = dict(environ) if environ is not None else _environ(pid)
    running = f"/proc/{pid}/exe"
    binary = running if procfs.exe(pid) else instance.exe
    args = configtest_argv(argv)
    shown = " ".join([instance.exe or argv[0], *args])
    try:
        done = subprocess.run(
            [argv[0], *args],
            executable=binary,
            capture_output=True,
            text=True,
            env=env,
            timeout=CONFIGTEST_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return ConfigTest(False, shown, f"did not finish within {CONFIGTEST_TIMEOUT:g} s")
    except OSError as err:
        return ConfigTest(False, shown, f"cannot run it: {err}")
    text = "\n".join(part.strip() for part in (done.stderr, done.stdout) if part.strip())
    return ConfigTest(done.returncode == 0, shown, text)


def _environ(pid: int) -> dict[str, str]:
    """The parent's environment (root may read it), else a minimal one."""
    try:
        return dict(psutil.Process(pid).environ())
    except (psutil.Error, OSError):
        return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}


def signal_parent(instance: ApacheInstance, sig: signal.Signals) -> None:
    """Send `sig` to the Apache parent discovery found, through a pidfd checked after opening.

    NotFoundError when the parent is gone or is another process now (pid
    reused); UnsupportedError without pidfds.
    """
    pid = instance.pid
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        raise NotFoundError(f"Apache pid {pid} is gone; nothing was signalled") from None
    except OSError as err:
        raise UnsupportedError(f"cannot open a pidfd on Apache pid {pid}: {err.strerror}") from err
    try:
        try:
            same = procfacts.create_time(pid) == instance.create_time
        except ProcessLookupError:
            same = False
        if not same or procfs.gone(pid):
            raise NotFoundError(
                f"Apache pid {pid} is no longer the parent found at discovery; nothing signalled"
            )
        try:
            signal.pidfd_send_signal(fd, sig)
        except ProcessLookupError:
            raise NotFoundError(f"Apache pid {pid} exited; nothing was signalled") from None
    finally:
        os.close(fd)
