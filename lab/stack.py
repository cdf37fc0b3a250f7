"""Two Apache hosts behind one HAProxy: the stack the demo, the tests and the bench share.

Host `a` is the one restarted, `b` the peer that keeps serving; `/slow` is
pinned to `a`, so a long request is in flight where the restart happens.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from lab.apache import ApacheLab, ModWsgi
from lab.errors import LabUnavailable
from lab.haproxy import HAProxyLab


@dataclass
class Stack:
    """Two Apache hosts behind one HAProxy; `a` is restarted, `b` is the peer that serves on."""

    a: ApacheLab
    b: ApacheLab
    haproxy: HAProxyLab
    state_dir: Path


@contextmanager
def two_hosts(
    root: Path,
    modwsgi: ModWsgi = "debian",
    *,
    processes: int = 3,
    daemon_options: Mapping[str, str | int | float] | None = None,
    preload: bool = False,
    hang: bool = False,
    children: str = "",
    mpm: str = "event",
    extra_config: Mapping[str, str] | None = None,
    check_path: str = "/health",
    extra_groups: tuple[str, ...] = (),
) -> Iterator[Stack]:
    """A fresh stack under `root`, stopped (everything it started, by pid) on exit.

    `preload` loads the app as each daemon starts (WSGIScriptAlias with
    process-group and application-group), instead of on its first request.
    `children` ("plain" or "hook") makes host a's daemons start two children
    each as they import the app (lab/app.py).  `extra_config` maps a host name
    ("a", "b") to configuration appended to its httpd.conf; `check_path` is
    what HAProxy's health checks request;
    `extra_groups` are more daemon groups on both hosts, each at ``/NAME/``.
    Raises LabUnavailable when Apache, HAProxy or the chosen mod_wsgi build is
    missing.
    """
    with ExitStack() as stop:
        hosts = []
        for name in ("a", "b"):
            host = ApacheLab(
                root / name,
                modwsgi=modwsgi,
                processes=processes,
                daemon_options=daemon_options,
                preload=preload,
                hang=hang,
                children=children if name == "a" else "",
                mpm=mpm,
                extra_config=(extra_config or {}).get(name, ""),
                extra_groups=extra_groups,
            )
            stop.callback(host.stop)
            host.start()
            hosts.append(host)
        a, b = hosts
        haproxy = HAProxyLab(
            root / "haproxy",
            [("a", "127.0.0.1", a.port), ("b", "127.0.0.1", b.port)],
            pin={"/slow": "a", **{f"/{g}/slow": "a" for g in extra_groups}},
            check_path=check_path,
        )
        stop.callback(haproxy.stop)
        haproxy.start()
        yield Stack(a, b, haproxy, root / "state")


def wsgi_drain_command() -> list[str]:
    """The installed console script next to this interpreter, else on PATH.

    Raises LabUnavailable, saying how to install it, when there is none.
    """
    beside = Path(sys.executable).parent / "wsgi-drain"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("wsgi-drain")
    if found is None:
        raise LabUnavailable("the wsgi-drain command is not installed: pip install -e .")
    return [found]
