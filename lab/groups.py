"""A host with two daemon groups (the lab's `myapp` and a second, `two`), behind HAProxy.

`two` serves the same app under /two (its own WSGIScriptAlias, defined before
the catch-all / of `myapp`, which mod_wsgi would otherwise match first), and
is preloaded (process-group on the alias) while `myapp` loads lazily: a
reload must both wait for a preloaded group and warm a lazy one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from lab.apache import ApacheLab, ModWsgi
from lab.haproxy import HAProxyLab
from lab.stack import Stack

SECOND = "two"
SECOND_PROCESSES = 2


class TwoGroupsLab(ApacheLab):
    """ApacheLab with a second group `two` (2 processes) at /two, defined first (socket id 1)."""

    def __init__(self, root: Path, **kwargs: Any) -> None:
        super().__init__(root, group_id=2, **kwargs)

    def _group_config(self) -> str:
        script = self.app_dir / "app.py"
        return f"""\
WSGIRestrictEmbedded On
WSGIDaemonProcess {SECOND} processes={SECOND_PROCESSES} threads=5 display-name=%{{GROUP}}
WSGIScriptAlias /{SECOND} "{script}" process-group={SECOND} application-group=%{{GLOBAL}}
{self._daemon_directives()}
{self.extra_config}
"""

    def second_pids(self) -> list[int]:
        """Pids of group `two`'s live daemons (by title)."""
        from lab import procs

        title = self.title_of(SECOND)
        return sorted(k.pid for k in self.children() if procs.title(k) == title)

    def start_again(self) -> None:
        """Start Apache again on the same port and configuration (after a stop, for maintenance)."""
        from wsgi_drain.deadline import Deadline

        deadline = Deadline(self.start_timeout)
        self._launch(deadline)
        self._wait_ready(deadline)

    def all_daemon_pids(self) -> set[int]:
        return set(self.daemon_pids()) | set(self.second_pids())


@contextmanager
def two_group_hosts(root: Path, modwsgi: ModWsgi = "debian") -> Iterator[Stack]:
    """Hosts `a` (reloaded) and `b` (its peer), two groups each, behind HAProxy; /slow on `a`."""
    with ExitStack() as stop:
        a = TwoGroupsLab(root / "a", modwsgi=modwsgi)
        stop.callback(a.stop)
        a.start()
        b = TwoGroupsLab(root / "b", modwsgi=modwsgi)
        stop.callback(b.stop)
        b.start()
        haproxy = HAProxyLab(
            root / "haproxy",
            [("a", "127.0.0.1", a.port), ("b", "127.0.0.1", b.port)],
            pin={"/slow": "a"},
        )
        stop.callback(haproxy.stop)
        haproxy.start()
        yield Stack(a, b, haproxy, root / "state")
