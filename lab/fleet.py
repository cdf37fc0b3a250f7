"""A fleet of Apache hosts behind one HAProxy, for rollouts across hosts (Ansible).

Each host is its own ApacheLab (its own ServerRoot, pid file, daemons) named
h1..hN, all on loopback; HAProxy balances them in backend ``be_app`` with its
runtime API on a unix socket and on TCP (as a central load-balancer host
offers it), and pins ``/slow/hN`` to host hN so a long request can be held
on the very host a rollout is restarting.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from lab.apache import ApacheLab, ModWsgi
from lab.errors import LabUnavailable
from lab.haproxy import HAProxyLab
from lab.ports import LOOPBACK


@dataclass
class Fleet:
    hosts: dict[str, ApacheLab]
    haproxy: HAProxyLab
    root: Path

    def router(self, name: str) -> str:
        """The --router spec that reaches host `name`'s server over HAProxy's TCP runtime API."""
        return f"haproxy:ipv4@{self.haproxy.admin_address}:be_app/{name}"

    def state_dir(self, name: str) -> Path:
        """Host `name`'s own state directory (each host has its own /run/wsgi-drain)."""
        return self.root / "state" / name


@contextmanager
def fleet(
    root: Path,
    size: int = 4,
    modwsgi: ModWsgi = "debian",
    *,
    daemon_options: Mapping[str, str | int | float] | None = None,
) -> Iterator[Fleet]:
    """`size` hosts h1..hN and their HAProxy, stopped (by pid) on exit."""
    with ExitStack() as stop:
        hosts: dict[str, ApacheLab] = {}
        for i in range(1, size + 1):
            name = f"h{i}"
            lab = ApacheLab(root / name, modwsgi=modwsgi, daemon_options=daemon_options)
            stop.callback(lab.stop)
            lab.start()
            hosts[name] = lab
        haproxy = HAProxyLab(
            root / "lb",
            [(name, LOOPBACK, lab.port) for name, lab in hosts.items()],
            pin={f"/slow/{name}": name for name in hosts},
            admin_tcp=True,
        )
        stop.callback(haproxy.stop)
        haproxy.start()
        yield Fleet(hosts, haproxy, root)


def host_args(f: Fleet, name: str, *, router: bool = True) -> list[str]:
    """What host `name`'s inventory passes to wsgi-drain: its Apache, router, health URL, state."""
    lab = f.hosts[name]
    words = [
        "--apache-pidfile", str(lab.pid_file),
        "--health-url", f"{lab.url}/health", "--state-dir", str(f.state_dir(name)),
    ]  # fmt: skip
    return [*words, "--router", f.router(name)] if router else words


def host_vars(f: Fleet, name: str, *, router: bool = True) -> dict[str, object]:
    """Host `name`'s inventory in the role's typed options (what host_args says as words)."""
    lab = f.hosts[name]
    options: dict[str, object] = {
        "wsgi_drain_apache_pidfile": str(lab.pid_file),
        "wsgi_drain_health_url": f"{lab.url}/health",
        "wsgi_drain_state_dir": str(f.state_dir(name)),
    }
    if router:
        socket = f"ipv4@{f.haproxy.admin_address}"
        route = {"kind": "haproxy", "socket": socket, "backend": "be_app", "server": name}
        options["wsgi_drain_routers"] = [route]
    return options


@dataclass
class Collection:
    """The wsgi_drain.apache collection, built and installed from its tarball."""

    tarball: Path
    path: Path  # the collections path it is installed in (ANSIBLE_COLLECTIONS_PATH)


def ansible_env(home: Path, collections: Path | None = None) -> dict[str, str]:
    """A bare controller environment for Ansible's commands: its home under `home`, no venv."""
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(home),
        "ANSIBLE_HOME": str(home),
        "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
        "ANSIBLE_REMOTE_TEMP": str(home / "remote-tmp"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "LANG": "C.UTF-8",
    }
    if collections is not None:
        env["ANSIBLE_COLLECTIONS_PATH"] = str(collections)
        env["ANSIBLE_COLLECTIONS_SCAN_SYS_PATH"] = "false"
    return env


def ansible_tool(name: str) -> Path:
    """The venv's ansible-* command `name`; LabUnavailable when ansible-core is missing."""
    binary = Path(sys.executable).parent / name
    if not binary.exists():
        raise LabUnavailable(f"{binary} not found: pip install -e '.[test]' (ansible-core)")
    return binary


def build_collection(source: Path, work: Path) -> Collection:
    """`ansible-galaxy collection build` of `source`, then `install` of the tarball under `work`."""
    galaxy = ansible_tool("ansible-galaxy")
    env = ansible_env(work / "ansible-home")
    build = subprocess.run(
        [str(galaxy), "collection", "build", str(source), "--output-path", str(work)],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    if build.returncode != 0:
        raise AssertionError(f"collection build failed: {build.stdout}{build.stderr}")
    (tarball,) = work.glob("wsgi_drain-apache-*.tar.gz")
    path = work / "collections"
    install = subprocess.run(
        [str(galaxy), "collection", "install", "--offline", str(tarball), "-p", str(path)],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    if install.returncode != 0:
        raise AssertionError(f"collection install failed: {install.stdout}{install.stderr}")
    return Collection(tarball, path)


def run_playbook(
    f: Fleet,
    workdir: Path,
    playbook: Path | str,
    command: str,
    *extra: str,
    timeout: float = 600,
    router_on_host: bool = True,
    collections: Path | None = None,
    typed: bool = True,
    group: str | None = "myapp",
    overrides: Mapping[str, Mapping[str, object]] | None = None,
) -> subprocess.CompletedProcess[str]:
    """The real ansible-playbook on an inventory of the fleet (connection local), bounded.

    `playbook` is a file or a collection's playbook by name
    (``wsgi_drain.apache.rolling_restart``, found under `collections`). The
    inventory gives each host its own options in host vars: the role's typed
    options (`typed`), else the free-form ``wsgi_drain_args`` words; then
    `overrides[host]`.  `group` None leaves ``wsgi_drain_group`` unset.
    Ansible's home and temporary directories live under `workdir`, and the
    environment is a bare system one (no virtualenv on PATH), as on a
    controller.  `router_on_host=False` leaves the router out of the hosts'
    options (the router step is then delegated to the load balancer's host).
    Raises LabUnavailable when ansible-playbook is missing.
    """
    binary = ansible_tool("ansible-playbook")
    hosts: dict[str, dict[str, object]] = {}
    for name in f.hosts:
        options = (
            host_vars(f, name, router=router_on_host)
            if typed
            else {"wsgi_drain_args": host_args(f, name, router=router_on_host)}
        )
        connection = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
        hosts[name] = {**connection, **options, **(overrides or {}).get(name, {})}
    inventory = workdir / "inventory.json"
    inventory.write_text(json.dumps({"all": {"children": {"app": {"hosts": hosts}}}}))
    env = ansible_env(workdir / "ansible-home", collections)
    group_var = ["-e", f"wsgi_drain_group={group}"] if group is not None else []
    argv = [
        str(binary), "-i", str(inventory), str(playbook),
        *group_var, "-e", f"wsgi_drain_command={command}", *extra,
    ]  # fmt: skip
    return subprocess.run(
        argv, capture_output=True, text=True, env=env, timeout=timeout, check=False
    )


class StateSampler:
    """Every `interval`: each server's state in HAProxy ("ready", "drain", "maint", "down").

    "down" is in rotation by the operator's word but not UP by HAProxy's
    checks; anything but "ready" is out of rotation.  A context manager; a
    thread of its own, bounded by `max_seconds`.
    """

    def __init__(self, f: Fleet, interval: float = 0.05, max_seconds: float = 900) -> None:
        self.fleet = f
        self.interval = interval
        self.max_seconds = max_seconds
        self.samples: list[tuple[float, dict[str, str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fleet-sampler", daemon=True)

    def _run(self) -> None:
        end = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < end:
            stats = self.fleet.haproxy.server_states()
            states = {}
            for name in self.fleet.hosts:
                admin = self.fleet.haproxy.admin_state(name)
                up = stats[name].status.startswith("UP")
                states[name] = admin if admin != "ready" else ("ready" if up else "down")
            self.samples.append((time.monotonic(), states))
            self._stop.wait(self.interval)

    def __enter__(self) -> StateSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def out_counts(self) -> list[tuple[float, int, str]]:
        """(time, servers out of rotation, their names) per sample."""
        return [
            (t, sum(1 for s in st.values() if s != "ready"),
             ",".join(n for n, s in st.items() if s != "ready"))
            for t, st in self.samples
        ]  # fmt: skip

    @property
    def most_out(self) -> int:
        return max((n for _t, n, _w in self.out_counts()), default=0)
