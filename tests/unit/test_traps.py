"""Every configuration trap, from real configuration text through the real parser."""

from pathlib import Path

import pytest

from wsgi_drain.apacheconf import parse_config
from wsgi_drain.traps import find_traps

SAFE = (
    "WSGIDaemonProcess myapp processes=3 display-name=%{GROUP} "
    "graceful-timeout=15 shutdown-timeout=5\n"
    "WSGIScriptReloading Off\nLogLevel warn wsgi:info\n"
    "WSGIScriptAlias / /srv/app.wsgi process-group=myapp application-group=%{GLOBAL}\n"
)


def traps_of(tmp_path: Path, text: str, *, fds_readable: bool = True) -> list[str]:
    conf = tmp_path / "httpd.conf"
    conf.write_text(text)
    config = parse_config(conf, server_root=tmp_path, environ={})
    return [t.key for t in find_traps(config.group("myapp"), fds_readable=fds_readable)]


def test_a_safe_group_has_no_trap(tmp_path: Path) -> None:
    assert traps_of(tmp_path, SAFE) == []


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (("graceful-timeout=15 ", ""), "no-drain-timeout"),
        (("shutdown-timeout=5", "shutdown-timeout=0"), "shutdown-timeout-zero"),
        (("graceful-timeout=15", "graceful-timeout=0"), "no-graceful-timer"),
        (
            ("display-name=%{GROUP}", "display-name=%{GROUP} deadlock-timeout=0"),
            "no-monitor-thread",
        ),
        (("WSGIScriptReloading Off", "WSGIScriptReloading On"), "script-reloading"),
        (("LogLevel warn wsgi:info", "LogLevel warn"), "log-level"),
        ((" process-group=myapp application-group=%{GLOBAL}", ""), "lazy-load"),
        ((" application-group=%{GLOBAL}", ""), "lazy-load"),
    ],
)
def test_each_trap_alone(tmp_path: Path, change: tuple[str, str], key: str) -> None:
    assert traps_of(tmp_path, SAFE.replace(*change)) == [key]


def test_no_identity_only_when_sockets_are_unreadable(tmp_path: Path) -> None:
    text = SAFE.replace("display-name=%{GROUP} ", "")
    assert traps_of(tmp_path, text) == []
    assert traps_of(tmp_path, text, fds_readable=False) == ["no-identity"]


def test_every_trap_message_says_the_fix(tmp_path: Path) -> None:
    conf = tmp_path / "httpd.conf"
    conf.write_text("WSGIDaemonProcess myapp shutdown-timeout=0\nLogLevel error\n")
    group = parse_config(conf, server_root=tmp_path, environ={}).group("myapp")
    traps = find_traps(group, fds_readable=False)
    # Every kind of trap this configuration falls into, so the loop below checks them all.
    assert [t.key for t in traps] == [
        "no-drain-timeout", "shutdown-timeout-zero", "script-reloading", "log-level",
        "lazy-load", "no-identity",
    ]  # fmt: skip
    for trap in traps:
        assert any(word in trap.message for word in ("set ", "add ", "use ", "remove ")), trap


def test_lazy_load_not_when_preloaded_by_wsgi_import_script(tmp_path: Path) -> None:
    text = SAFE.replace(" process-group=myapp application-group=%{GLOBAL}", "")
    text += "WSGIImportScript /srv/app.wsgi process-group=myapp application-group=%{GLOBAL}\n"
    assert traps_of(tmp_path, text) == []


def test_lazy_load_is_a_restart_warning_not_a_check_one() -> None:
    from wsgi_drain.traps import KEYS, RESTART_ONLY

    assert "lazy-load" in KEYS and {"lazy-load"} == RESTART_ONLY


def test_express_no_lazy_load_trap_when_preloaded_with_quoted_group(tmp_path: Path) -> None:
    # mod_wsgi-express 6.1 writes the group and its value quoted like this.
    text = SAFE.replace(" process-group=myapp application-group=%{GLOBAL}", "")
    text += (
        "WSGIImportScript '/srv/handler.wsgi' process-group='myapp' application-group=%{GLOBAL}\n"
    )
    assert traps_of(tmp_path, text) == []


def test_express_check_unit_sees_the_default_server_root_in_tmp() -> None:
    # mod_wsgi-express's default server root is /tmp/mod_wsgi-HOST:PORT:UID:
    # a private /tmp would hide its pid file and sockets from the check.
    import configparser

    unit = configparser.ConfigParser(interpolation=None, strict=True)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    path = Path(__file__).resolve().parents[2] / "scripts" / "systemd" / "wsgi-drain-check@.service"
    unit.read(path)
    assert unit["Service"]["ExecStart"].split()[1] == "check"
    assert unit["Service"].get("PrivateTmp", "no").lower() in ("no", "false", "0")
