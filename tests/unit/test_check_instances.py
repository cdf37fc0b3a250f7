"""Which Apache instance `check`/`restart` use when several run and no pid file is given.

`instance_by_pid` (our own reader of one running parent) is replaced by a
table, so each case of the rule is set up exactly; the integration test
tests/integration/test_check_two_apaches.py runs it on two real Apaches.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from wsgi_drain import discovery
from wsgi_drain.errors import AmbiguousApacheError, GroupNotFoundError, NotFoundError


def _instance(pid: int, *groups: str) -> Any:
    config = SimpleNamespace(
        groups=[SimpleNamespace(name=g) for g in groups], pid_file=Path(f"/run/a{pid}.pid")
    )
    return SimpleNamespace(pid=pid, config=config, describe=lambda: f"Apache pid {pid}")


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> dict[int, Any]:
    table: dict[int, Any] = {}

    def by_pid(pid: int, config_path: object, *, source: str) -> Any:
        found = table[pid]
        if isinstance(found, Exception):
            raise found
        return found

    monkeypatch.setattr(discovery, "instance_by_pid", by_pid)
    monkeypatch.setattr(
        discovery, "running_parents", lambda: [SimpleNamespace(pid=p) for p in table if p > 0]
    )
    monkeypatch.setattr(discovery.procfs, "gone", lambda pid: table.get(-pid) == "gone")
    return table


def test_check_several_apaches_uses_the_one_defining_the_group(host: dict[int, Any]) -> None:
    host[10] = _instance(10, "app1")
    host[20] = _instance(20, "app2", "other")
    assert discovery.find_apache(group="app2").pid == 20


def test_check_several_apaches_both_defining_the_group_name_each_pid_file(
    host: dict[int, Any],
) -> None:
    host[10] = _instance(10, "app")
    host[20] = _instance(20, "app")
    with pytest.raises(AmbiguousApacheError) as raised:
        discovery.find_apache(group="app")
    message = str(raised.value)
    assert "defined by 2 running Apache instances" in message
    assert "--apache-pidfile /run/a10.pid" in message and "--apache-pidfile /run/a20.pid" in message


def test_check_several_apaches_one_unreadable_chooses_none(host: dict[int, Any]) -> None:
    # The unreadable one may define the group too: choosing the other would be a guess.
    host[10] = _instance(10, "app")
    host[20] = NotFoundError("configuration cannot be read")
    with pytest.raises(AmbiguousApacheError, match="pid 20 cannot be read"):
        discovery.find_apache(group="app")


def test_check_several_apaches_one_unreadable_says_whether_another_defines_the_group(
    host: dict[int, Any],
) -> None:
    host[10] = _instance(10, "app")
    host[20] = NotFoundError("configuration cannot be read")
    with pytest.raises(AmbiguousApacheError) as raised:
        discovery.find_apache(group="app")
    assert str(raised.value).startswith(
        "group 'app' defined by Apache pid 10, but pid 20 cannot be read (configuration"
    )
    host[10] = _instance(10, "other")
    with pytest.raises(AmbiguousApacheError) as raised:
        discovery.find_apache(group="app")
    assert str(raised.value).startswith("group 'app' not found, and pid 20 cannot be read (")


def test_check_several_apaches_one_exited_meanwhile_is_skipped(host: dict[int, Any]) -> None:
    host[10] = _instance(10, "app")
    host[20] = NotFoundError("names pid 20, which has exited (zombie)")
    host.setdefault(-20, "gone")  # procfs.gone(20) looks up -20 here: see the fixture
    assert discovery.find_apache(group="app").pid == 10


def test_check_several_apaches_none_defining_the_group_lists_the_groups(
    host: dict[int, Any],
) -> None:
    host[10] = _instance(10, "app1")
    host[20] = _instance(20, "app2")
    with pytest.raises(GroupNotFoundError, match="groups defined there: app1, app2"):
        discovery.find_apache(group="app3")


def test_check_several_apaches_without_a_group_is_short(host: dict[int, Any]) -> None:
    host[10] = _instance(10, "app1")
    host[20] = _instance(20, "app2")
    with pytest.raises(AmbiguousApacheError) as raised:
        discovery.find_apache()
    assert str(raised.value) == (
        "2 Apache instances run (pids 10, 20); name one with --apache-pidfile or --apache-config"
    )


def test_check_several_apaches_one_exited_before_the_defining_one_is_skipped(
    host: dict[int, Any],
) -> None:
    # Gone first in the list: the search goes on to the ones after it.
    host[5] = NotFoundError("names pid 5, which is not running")
    host.setdefault(-5, "gone")
    host[10] = _instance(10, "app")
    host[20] = _instance(20, "other")
    assert discovery.find_apache(group="app").pid == 10
