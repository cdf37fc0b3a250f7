"""For load balancers that only watch a health URL (cloud LBs, F5 monitors, httpchk).

Spec: ``health-file:PATH``.  The file's presence makes the app's health URL
answer 503 (an Apache mod_rewrite rule, ``apache-conf/health-file.conf``; no
app change), so the load balancer takes the host out at its own pace.

divert creates the file (O_EXCL, never through a symlink, mode 0644 so
Apache's workers can see it: put it in a directory they can traverse, not in
wsgi-drain's private state directory); restore removes it.  The drain is:

1. wait `lb_detect` seconds (``--lb-detect``: the LB's check interval x its
   unhealthy threshold, plus its deregistration delay) - nothing on the host
   can tell when the LB stopped sending;
2. then wait until the host has no request in flight, measured on the host
   itself: the accepted connections on the group's daemon socket in
   /proc/net/unix (one per request between Apache and the daemon).

``state().queued`` is 1 while the LB may still be sending (step 1), so the
restart keeps waiting; ``sessions`` is the in-flight count of step 2.  The
router cannot see the LB's other servers: ``peers_up`` is unknown.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from wsgi_drain.deadline import Deadline
from wsgi_drain.errors import ConfigError, RouterError
from wsgi_drain.routers.protocol import RouterState

_POLL = 0.1


def parse_path(spec: str) -> Path:
    path = Path(spec)
    if not path.is_absolute():
        raise ConfigError(
            f"health-file router {spec!r}: give an absolute path, e.g. "
            "health-file:/run/wsgi-drain-health/myapp.down"
        )
    return path


class HealthFileRouter:
    """The Router protocol over a marker file the app's health check looks for."""

    def __init__(self, path: Path, lb_detect: float | None = None) -> None:
        self.path = path
        self.lb_detect = lb_detect
        # Set by the restart once the group's socket is known: requests in flight.
        self.in_flight: Callable[[], int | None] | None = None
        self._diverted_at: float | None = None

    @property
    def name(self) -> str:
        return f"health-file {self.path}"

    @property
    def settle_delay(self) -> float:
        """Seconds the LB needs to notice; the drain deadline is extended by it."""
        return self.lb_detect or 0.0

    def __repr__(self) -> str:
        return f"HealthFileRouter({self.path!r})"

    def _need_detect(self) -> float:
        if self.lb_detect is None:
            raise ConfigError(
                f"{self.name}: give --lb-detect SECONDS (the load balancer's check interval x "
                "unhealthy threshold + its deregistration delay): how long it takes to stop "
                "sending to this host once the health URL fails"
            )
        return self.lb_detect

    def state(self) -> RouterState:
        try:
            down = self.path.exists()
        except OSError as err:
            raise RouterError(self.name, f"cannot check the file: {err.strerror}") from err
        waiting = 0
        if down and self._diverted_at is not None:
            waiting = int(time.monotonic() - self._diverted_at < self._need_detect())
        count = self.in_flight() if self.in_flight is not None else None
        return RouterState(
            name=self.name,
            admin="drain" if down else "ready",
            status="FAILING HEALTH (file present)" if down else "HEALTHY",
            sessions=count or 0,
            queued=waiting,
            peers_up=None,
            sessions_known=count is not None,
        )

    def divert(self) -> None:
        self._need_detect()
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags, 0o644)
        except FileExistsError:
            self._diverted_at = time.monotonic()
            return  # already there (ours from a lost answer, or the operator's)
        except OSError as err:
            raise RouterError(
                self.name,
                f"cannot create the file: {err.strerror} (does {self.path.parent} exist, and may "
                "wsgi-drain write there?)",
            ) from err
        try:
            os.fchmod(fd, 0o644)  # readable by Apache's workers whatever the umask
            os.write(fd, f"taken out of rotation by wsgi-drain (pid {os.getpid()})\n".encode())
        finally:
            os.close(fd)
        self._diverted_at = time.monotonic()

    def restore(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        except OSError as err:
            raise RouterError(self.name, f"cannot remove the file: {err.strerror}") from err
        self._diverted_at = None

    def wait_drained(self, deadline: Deadline) -> RouterState:
        while True:
            state = self.state()
            if (state.sessions == 0 and state.queued == 0) or deadline.expired():
                return state
            time.sleep(min(_POLL, max(0.0, deadline.remaining())))
