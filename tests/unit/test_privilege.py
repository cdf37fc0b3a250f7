"""Under sudo the caller chooses nothing that runs, writes or opens (wsgi_drain/privilege.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wsgi_drain import privilege


@pytest.fixture
def as_root_via_sudo(monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() != 0:  # being root cannot be produced in-process otherwise
        monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setenv("SUDO_USER", "nagios")
    monkeypatch.setenv("SUDO_UID", "110")
    monkeypatch.delenv("WSGI_DRAIN_CONFIG", raising=False)


def test_sudo_caller_is_read_from_sudos_marks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.delenv("SUDO_USER", raising=False)
    monkeypatch.delenv("SUDO_UID", raising=False)
    assert privilege.sudo_caller() is None  # root itself chooses for itself
    monkeypatch.setenv("SUDO_UID", "110")
    assert privilege.sudo_caller() == "uid 110"
    monkeypatch.setattr(os, "geteuid", lambda: 110)
    assert privilege.sudo_caller() is None  # not root: nothing to hand out


@pytest.mark.parametrize(
    ("key", "value", "option"),
    [
        ("routers", ("command:/bin/sh -c id",), "--router"),
        ("haproxy", ("/run/x.sock:be/a",), "--haproxy (or WSGI_DRAIN_HAPROXY)"),
        ("textfile", Path("/etc/profile.d/zz.sh"), "--textfile"),
        ("apache_pidfile", Path("/etc/shadow"), "--apache-pidfile (or WSGI_DRAIN_APACHE_PIDFILE)"),
        ("py_spy", Path("/tmp/py-spy"), "--py-spy"),
    ],
)
def test_sudo_refuses_what_the_caller_chose_naming_the_option_and_the_fix(
    as_root_via_sudo: None, key: str, value: object, option: str
) -> None:
    with pytest.raises(privilege.SudoRefused) as refused:
        privilege.refuse_under_sudo({key: value, "group": "myapp"})
    message = str(refused.value)
    assert message.startswith(f"{option} is refused when run as root through sudo (by nagios)")
    assert "/etc/wsgi-drain.toml" in message


def test_sudo_leaves_options_not_given_and_harmless_ones(as_root_via_sudo: None) -> None:
    privilege.refuse_under_sudo(
        {"group": "myapp", "routers": (), "haproxy": (), "textfile": None, "health_url": "http://x"}
    )


def test_sudo_config_file_must_be_roots_own(
    as_root_via_sudo: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "wsgi-drain.toml"
    conf.write_text("")
    conf.chmod(0o666)
    with pytest.raises(privilege.SudoRefused, match="--config"):
        privilege.refuse_under_sudo({"config_file": conf})
    monkeypatch.setenv("WSGI_DRAIN_CONFIG", str(conf))
    with pytest.raises(privilege.SudoRefused, match="--config"):
        privilege.refuse_under_sudo({})
    if conf.stat().st_uid == 0 and tmp_path.stat().st_uid == 0:
        conf.chmod(0o644)
        privilege.refuse_under_sudo({"config_file": conf})  # root's own: stands
