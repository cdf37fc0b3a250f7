"""A router driven by the operator's own program: an F5 or cloud CLI, an internal API, ssh.

Spec: ``command:[timeout=SECONDS:]PROGRAM [ARGS...]`` (words split as a POSIX
shell would split them, but never run through a shell).  PROGRAM must be an
absolute path: cron, systemd and Ansible run wsgi-drain with a minimal PATH.
wsgi-drain runs

    PROGRAM ARGS... divert      take this host out of rotation (keep in-flight requests)
    PROGRAM ARGS... restore     put it back
    PROGRAM ARGS... state       print this host's state on stdout

each with a timeout (30 s, or ``timeout=``) on the program itself (a child it
leaves running in the background does not hold the run), in a new session so
that a program that hangs is killed with everything it started, and with
``WSGI_DRAIN_ACTION`` and ``WSGI_DRAIN_GROUP`` in its environment.  Exit status
0 is success; anything else is a router error carrying the last line of the
program's stderr.

``state`` prints one line of ``key=value`` words (or just the admin word):

    admin=ready sessions=0 queued=0 peers_up=2 peers_out=web3,web4 status=UP

``admin`` (ready, drain or maint) is required.  ``sessions`` (requests in
flight at the load balancer for this host) lets wsgi-drain wait for the
drain; without it the drain is not waited for at the router.  ``peers_up``
(other servers in rotation) lets wsgi-drain refuse to take out the last
server; without it a `--min-peers` count is taken on trust, and said so.
``peers_out`` (the other servers out of rotation, comma-separated; empty for
none) is what ``--min-peers all`` needs: without it (or without
``peers_up``) "all" cannot be checked and is refused.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from wsgi_drain.deadline import Deadline
from wsgi_drain.errors import ConfigError, RouterError
from wsgi_drain.routers.protocol import RouterState
from wsgi_drain.routers.spec import LeadingOption

DEFAULT_TIMEOUT = 30.0
_ADMIN = ("ready", "drain", "maint")
_POLL = 0.5
_STDERR_TAIL = 400
# How much of the program's output is read: a state line, an error message.
_OUTPUT_LIMIT = 1 << 16
# Seconds to reap the program after SIGKILL (it cannot ignore it).
_REAP = 5.0


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]
    timeout: float = DEFAULT_TIMEOUT


def _positive_seconds(text: str) -> float | None:
    try:
        seconds = float(text)
    except ValueError:
        return None
    return seconds if seconds > 0 else None


# `timeout=SECONDS:` before the program: how long one call of it may take.
TIMEOUT = LeadingOption(
    "command", "timeout", _positive_seconds, DEFAULT_TIMEOUT, "a positive number of seconds"
)


def parse_command(spec: str) -> Command:
    """``[timeout=SECONDS:]PROGRAM ARGS...`` -> Command; ConfigError with the fix otherwise."""
    timeout, rest = TIMEOUT.split(spec, "command:timeout=10:/usr/local/sbin/lb-hook web1")
    try:
        argv = tuple(shlex.split(rest))
    except ValueError as err:
        raise ConfigError(f"command router {spec!r}: {err}") from err
    if not argv or not Path(argv[0]).is_absolute():
        raise ConfigError(
            f"command router {spec!r}: give the program's absolute path (cron and systemd "
            "run wsgi-drain with a minimal PATH), e.g. command:/usr/local/sbin/lb-hook web1"
        )
    return Command(argv, timeout)


class CommandRouter:
    """The Router protocol over the operator's program."""

    def __init__(self, command: Command, group: str | None = None) -> None:
        self.command = command
        self.group = group

    @property
    def name(self) -> str:
        return "command " + shlex.join(self.command.argv)

    def __repr__(self) -> str:
        return f"CommandRouter({self.command.argv!r})"

    def _run(self, action: str, timeout: float | None = None) -> str:
        """Run `PROGRAM ARGS... action`; its stdout.  Waits for the program, not its children.

        Output goes to unnamed temporary files, not pipes: a child the program
        leaves running (a backgrounded helper, an ssh ControlPersist master,
        one that called setsid) keeps a pipe open long after the program
        exited, and waiting for end of file would wait for that child.  On
        timeout the program's process group (its own session) is killed,
        which is everything it started that stayed in it, and only that.
        """
        env = dict(os.environ, WSGI_DRAIN_ACTION=action)
        if self.group is not None:
            env["WSGI_DRAIN_GROUP"] = self.group
        limit = self.command.timeout if timeout is None else timeout
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err_out:
            try:
                proc = subprocess.Popen(
                    [*self.command.argv, action],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err_out,
                    env=env,
                    start_new_session=True,
                )
            except OSError as err:
                raise RouterError(self.name, f"cannot run it: {err.strerror or err}") from err
            try:
                returncode = proc.wait(timeout=limit)
            except BaseException as interrupted:
                # Timed out, or interrupted (Ctrl-C, the check's -t): end what
                # we started.  SIGKILL cannot be ignored, so the wait is short.
                with contextlib.suppress(ProcessLookupError):  # exited just before the kill
                    os.killpg(proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=_REAP)
                if not isinstance(interrupted, subprocess.TimeoutExpired):
                    raise
                raise RouterError(
                    self.name,
                    f"{action} did not finish within {limit:g} s and was killed",
                    applied=None if action != "state" else False,
                ) from None
            stdout, stderr = _read(out), _read(err_out)
        if returncode != 0:
            tail = stderr.strip().splitlines()[-1:] or ["(no message on stderr)"]
            raise RouterError(
                self.name,
                f"{action} failed with exit status {returncode}: {tail[0][:_STDERR_TAIL]}",
            )
        return stdout

    def state(self) -> RouterState:
        out = self._run("state")
        return parse_state(self.name, out)

    def divert(self) -> None:
        self._run("divert")

    def restore(self) -> None:
        self._run("restore")

    def wait_drained(self, deadline: Deadline) -> RouterState:
        """Poll `state` until it reports no session in flight (or cannot tell)."""
        while True:
            state = self.state()
            if state.sessions == 0 and state.queued == 0:
                return state
            if deadline.expired():
                return state
            time.sleep(min(_POLL, max(0.0, deadline.remaining())))


def _read(file: IO[bytes]) -> str:
    """The start of what the program wrote to `file` (bounded), as text."""
    file.seek(0)
    return file.read(_OUTPUT_LIMIT).decode(errors="replace")


def parse_state(name: str, out: str) -> RouterState:
    """The program's `state` line -> RouterState; RouterError naming what is wrong."""
    line = next((ln for ln in out.splitlines() if ln.strip()), "")
    words = line.split()
    fields: dict[str, str] = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep:
            key, value = "admin", word
        fields[key.lower()] = value
    admin = fields.get("admin", "").lower()
    if admin not in _ADMIN:
        raise RouterError(
            name,
            f"state printed {line!r}: expected 'admin=ready|drain|maint' and optional "
            "sessions=N queued=N peers_up=N peers_out=NAME,NAME status=WORD",
        )

    def number(key: str) -> int | None:
        value = fields.get(key)
        if value is None:
            return None
        if not value.isdigit():
            raise RouterError(name, f"state printed {key}={value!r}: not a whole number")
        return int(value)

    sessions = number("sessions")
    listed = fields.get("peers_out")
    names = tuple(n for n in (listed or "").split(",") if n)
    return RouterState(
        name=name,
        admin=admin,
        status=fields.get("status", admin.upper()),
        sessions=sessions or 0,
        queued=number("queued") or 0,
        peers_up=number("peers_up"),
        sessions_known=sessions is not None,
        peers_out=names,
        peers_listed=listed is not None,
    )
