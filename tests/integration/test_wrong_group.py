"""Never the wrong group: the configuration on disk is not trusted to say which socket is ours.

Real Apache + mod_wsgi with two or more daemon groups; the configuration is
edited after Apache started, or decides positions through `<Macro>`/`Use`,
`<IfModule>`, `<IfVersion>` or `-C`.  Each test checks, through the lab's own
view of the kernel's sockets (psutil, independent of wsgi-drain's
discovery), that no process of another group was signalled, and that
`restart --group myapp` either restarted myapp's processes, proven, or
refused with exit 3 naming why.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import ApacheLab, ModWsgi
from lab.apache import APACHE_MODULES, DEBIAN_MOD_WSGI
from tests.integration.conftest import run_cli, start

pytestmark = pytest.mark.integration

OTHER = "WSGIDaemonProcess other processes=2 threads=2 {title}\n"


def restart(lab: ApacheLab, tmp_path: Path, *extra: str) -> dict[str, object]:
    run = run_cli(
        "restart", "--group", "myapp", "--apache-pidfile", str(lab.pid_file),
        "--state-dir", str(tmp_path / "state"), "--json", *extra,
    )  # fmt: skip
    report: dict[str, object] = run.json()
    report["_stderr"] = run.stderr
    assert report["exit_status"] == run.returncode
    return report


def edit(lab: ApacheLab, old: str, new: str) -> None:
    """Change httpd.conf on disk after Apache started (Apache does not see it)."""
    text = lab.conf_path.read_text()
    assert old in text
    time.sleep(0.01)  # a distinct ctime, as any real edit has
    lab.conf_path.write_text(text.replace(old, new, 1))


def settled(lab: ApacheLab) -> dict[int, list[int]]:
    """The group sockets' holders once respawns are over (nothing changes for 0.5 s)."""
    previous = lab.socket_holders()
    while True:
        time.sleep(0.5)
        now = lab.socket_holders()
        if now == previous:
            return now
        previous = now


@pytest.fixture
def titled_lab(tmp_path: Path, modwsgi: ModWsgi) -> Iterator[ApacheLab]:
    """myapp first, then `other`, both with display-name=%{GROUP}."""
    lab = ApacheLab(
        tmp_path / "a",
        modwsgi=modwsgi,
        extra_config=OTHER.format(title="display-name=%{GROUP}"),
    )
    try:
        start(lab)
        yield lab
    finally:
        lab.stop()


@pytest.fixture
def untitled_lab(tmp_path: Path, modwsgi: ModWsgi) -> Iterator[ApacheLab]:
    """myapp first, then `other`, neither with display-name: only sockets tell them apart."""
    lab = ApacheLab(
        tmp_path / "a", modwsgi=modwsgi, display_name=False, extra_config=OTHER.format(title="")
    )
    try:
        start(lab)
        yield lab
    finally:
        lab.stop()


def test_wrong_group_inserted_before_ours_is_refused_without_titles(
    untitled_lab: ApacheLab, tmp_path: Path
) -> None:
    # The review's reproduction: myapp (id 1) and other (id 2) run; a vhost is
    # added first on disk, so the files now say myapp is 2 -- other's socket.
    lab = untitled_lab
    before = lab.socket_holders()
    assert sorted(before) == [1, 2]
    edit(
        lab,
        "WSGIDaemonProcess myapp",
        "WSGIDaemonProcess newcomer threads=2\nWSGIDaemonProcess myapp",
    )

    report = restart(lab, tmp_path)

    assert report["exit_status"] == 3, report["_stderr"]
    message = str(report["message"])
    assert "cannot prove which processes belong to group 'myapp'" in message
    assert "nothing is signalled" in message and str(lab.conf_path) in message
    assert not any(p["signals"] for p in report["processes"])  # type: ignore[union-attr]
    assert settled(lab) == before


def test_wrong_group_inserted_before_ours_restarts_the_right_one_by_title(
    titled_lab: ApacheLab, tmp_path: Path
) -> None:
    lab = titled_lab
    before = lab.socket_holders()
    mine = set(lab.daemon_pids())
    assert set(before[1]) == mine
    edit(
        lab,
        "WSGIDaemonProcess myapp",
        "WSGIDaemonProcess newcomer threads=2 display-name=%{GROUP}\nWSGIDaemonProcess myapp",
    )

    report = restart(lab, tmp_path)

    assert report["exit_status"] == 0, report["_stderr"]
    assert {p["old_pid"] for p in report["processes"]} == mine  # type: ignore[union-attr]
    after = settled(lab)
    assert after[2] == before[2], "a process of group 'other' was signalled"
    assert not set(after[1]) & mine and len(after[1]) == 3
    assert any("not what Apache runs" in w for w in report["warnings"])  # type: ignore[union-attr]


def test_wrong_group_removed_before_ours_is_refused_without_titles(
    tmp_path: Path, modwsgi: ModWsgi
) -> None:
    # The review's real-Apache reproduction: a group defined before ours is
    # removed from the file after start; the files then say myapp is 1, which
    # is that group's socket (it signalled its two daemons and waited for a third).
    early = "WSGIDaemonProcess early processes=2 threads=2\n"
    lab = ApacheLab(tmp_path / "a", modwsgi=modwsgi, display_name=False, before_config=early)
    try:
        start(lab)
        before = lab.socket_holders()
        assert len(before[1]) == 2 and len(before[2]) == 3
        edit(lab, early, "")

        report = restart(lab, tmp_path)

        assert report["exit_status"] == 3, report["_stderr"]
        assert "cannot prove" in str(report["message"])
        assert settled(lab) == before
    finally:
        lab.stop()


def test_wrong_group_removed_before_ours_restarts_the_right_one_by_title(
    tmp_path: Path, modwsgi: ModWsgi
) -> None:
    early = "WSGIDaemonProcess early processes=2 threads=2 display-name=%{GROUP}\n"
    lab = ApacheLab(tmp_path / "a", modwsgi=modwsgi, before_config=early)
    try:
        start(lab)
        before = lab.socket_holders()
        mine = set(lab.daemon_pids())
        assert set(before[2]) == mine
        edit(lab, early, "")

        report = restart(lab, tmp_path, "--health-url", f"{lab.url}/health")

        assert report["exit_status"] == 0, report["_stderr"]
        after = settled(lab)
        assert after[1] == before[1], "a process of group 'early' was signalled"
        assert len(after[2]) == 3 and not set(after[2]) & mine
    finally:
        lab.stop()


def test_wrong_group_defined_through_macro_use_is_counted(tmp_path: Path, modwsgi: ModWsgi) -> None:
    # Groups defined by `Use` of a `<Macro>` before ours: the parser used to
    # skip them, and signalled the first macro group as myapp.
    macro = (
        "<Macro Early $name>\n"
        "    WSGIDaemonProcess $name processes=1 threads=2\n"
        "</Macro>\n"
        "Use Early alpha\n"
        "Use Early beta\n"
    )
    load = f"LoadModule macro_module {APACHE_MODULES / 'mod_macro.so'}\n"
    lab = ApacheLab(
        tmp_path / "a", modwsgi=modwsgi, display_name=False, before_config=load + macro, group_id=3
    )
    try:
        start(lab)
        before = lab.socket_holders()
        assert [len(before[i]) for i in (1, 2, 3)] == [1, 1, 3]

        report = restart(lab, tmp_path)

        assert report["exit_status"] == 0, report["_stderr"]
        after = settled(lab)
        assert (after[1], after[2]) == (before[1], before[2]), "a macro group was signalled"
        assert len(after[3]) == 3 and not set(after[3]) & set(before[3])
    finally:
        lab.stop()


def test_wrong_group_positions_decided_by_ifmodule_and_ifversion(tmp_path: Path) -> None:
    # <IfModule !x> used to count as false and <IfVersion> as true: here the
    # first holds a group (mod_nonexistent is not loaded) and the second does
    # not (this Apache is not older than 2.4), so myapp is the third group.
    sections = (
        "<IfModule !mod_nonexistent.c>\n"
        "    WSGIDaemonProcess cond processes=1 threads=2\n"
        "</IfModule>\n"
        "<IfVersion < 2.4>\n"
        "    WSGIDaemonProcess ancient processes=1 threads=2\n"
        "</IfVersion>\n"
        "<IfVersion >= 2.4>\n"
        "    WSGIDaemonProcess modern processes=1 threads=2\n"
        "</IfVersion>\n"
    )
    lab = ApacheLab(tmp_path / "a", display_name=False, before_config=sections, group_id=3)
    try:
        start(lab)
        before = lab.socket_holders()
        assert sorted(before) == [1, 2, 3] and len(before[3]) == 3

        report = restart(lab, tmp_path, "--dry-run")

        assert report["exit_status"] == 0, report["_stderr"]
        plan = " ".join(report["plan"])  # type: ignore[arg-type]
        assert all(str(pid) in plan for pid in before[3])
        assert not any(str(pid) in plan for pid in before[1] + before[2])
    finally:
        lab.stop()


def test_wrong_group_defined_on_the_command_line_with_dash_c(tmp_path: Path) -> None:
    # -C directives are read before the configuration file: a group defined
    # there comes first (mod_wsgi must be loaded before it, by -C too).
    args = [
        "-C", f"LoadModule wsgi_module {DEBIAN_MOD_WSGI}",
        "-C", "WSGIDaemonProcess fromcli processes=1 threads=2",
    ]  # fmt: skip
    lab = ApacheLab(tmp_path / "a", display_name=False, args=args, group_id=2)
    try:
        start(lab)
        before = lab.socket_holders()
        assert len(before[1]) == 1 and len(before[2]) == 3

        report = restart(lab, tmp_path)

        assert report["exit_status"] == 0, report["_stderr"]
        after = settled(lab)
        assert after[1] == before[1], "the -C group was signalled"
        assert len(after[2]) == 3 and not set(after[2]) & set(before[2])
    finally:
        lab.stop()
