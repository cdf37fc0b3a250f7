"""Nobody gets root through us: `check` (and every command) as root through sudo.

A sudoers rule with `*` lets the caller pass any option to a root process.
These run the installed command as root with sudo's own marks in its
environment (SUDO_UID, SUDO_USER: what the code reads, and what sudo sets),
and prove that what would run a program, write a file or read a path the
caller chose is refused, names the option and the fix, and touches nothing;
that no error echoes a file's content; and that the documented sudoers lines
leave the caller nothing to choose.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest

from lab import skip_or_fail
from tests.integration.conftest import Run, run_cli

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SUDO = {"SUDO_UID": "65534", "SUDO_USER": "nobody", "SUDO_COMMAND": "/usr/local/bin/wsgi-drain"}
REFUSED = "is refused when run as root through sudo (by nobody)"


@pytest.fixture(autouse=True)
def as_root() -> None:
    if os.geteuid() != 0:
        # CI runs as root: there these must run, never skip.
        skip_or_fail("sudo makes the check root: these need root (CI runs as root)")


def check_under_sudo(tmp_path: Path, *args: str, group: str = "myapp") -> Run:
    return run_cli(
        "check", "--group", group, "-t", "20", *args,
        env={**SUDO, "WSGI_DRAIN_CONFIG": ""},
    )  # fmt: skip


def assert_refused(run: Run, option: str) -> None:
    assert run.returncode == 3, (run.stdout, run.stderr)
    first = run.stdout.splitlines()[0]
    assert first.startswith("WSGI-DRAIN UNKNOWN - "), run.stdout
    assert f"{option}" in first and REFUSED in first, first
    assert len(first) < 200, first  # the fix in full on the next line (issue 22)
    assert "/etc/wsgi-drain.toml" in run.stdout, "the fix is named"


def test_check_under_sudo_refuses_a_command_router_and_runs_nothing(tmp_path: Path) -> None:
    proof = tmp_path / "ran-as-root"
    run = check_under_sudo(tmp_path, "--router", f"command:/bin/sh -c 'touch {proof}' --")
    assert_refused(run, "--router")
    assert not proof.exists(), "the caller's program ran as root"


def test_check_under_sudo_refuses_textfile_and_writes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "profile.d" / "zz.sh"
    target.parent.mkdir()
    run = check_under_sudo(tmp_path, "--textfile", str(target), group="$(id>/tmp/x/pwned)")
    assert_refused(run, "--textfile")
    assert not target.exists() and not list(target.parent.iterdir())


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--apache-pidfile", "/etc/shadow"),
        ("--apache-config", "/etc/shadow"),
        ("--state-dir", "/root"),
        ("--health-ca", "/etc/shadow"),
        ("--haproxy", "/run/some.sock:be/web1"),
    ],
)
def test_check_under_sudo_refuses_paths_the_caller_chose(
    tmp_path: Path, option: str, value: str
) -> None:
    args = [option, value]
    if option == "--health-ca":
        args += ["--health-url", "https://127.0.0.1:9/health"]
    assert_refused(check_under_sudo(tmp_path, *args), option)


def test_check_under_sudo_refuses_a_config_file_the_caller_could_write(tmp_path: Path) -> None:
    mine = tmp_path / "open"
    mine.mkdir(mode=0o777)
    mine.chmod(0o777)
    conf = mine / "evil.toml"
    conf.write_text('[groups.myapp]\nrouters = ["command:/bin/true"]\n')
    assert_refused(check_under_sudo(tmp_path, "--config", str(conf)), "--config")
    via_env = run_cli("check", "--group", "myapp", env={**SUDO, "WSGI_DRAIN_CONFIG": str(conf)})
    assert_refused(via_env, "--config")


def test_check_under_sudo_takes_paths_from_roots_own_configuration_file(tmp_path: Path) -> None:
    # The same kind of setting, written by root in a root-only file: root's choice.
    pidfile = tmp_path / "apache.pid"
    pidfile.write_text("not-a-pid\n")
    conf = tmp_path / "wsgi-drain.toml"
    conf.write_text(f'[groups.myapp]\napache_pidfile = "{pidfile}"\n')
    conf.chmod(0o644)
    run = check_under_sudo(tmp_path, "--config", str(conf))
    assert run.returncode == 2, run.stdout  # Apache not found through it: CRITICAL
    assert REFUSED not in run.stdout
    assert f"Apache pid file {pidfile} does not hold a pid" in run.stdout, run.stdout


def test_sudo_no_error_echoes_the_content_of_a_file_it_was_pointed_at(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("root:$6$hunter2-s3cr3t:19000:0:99999:7:::\n")
    secret.chmod(0o600)
    for command in ("check", "restart", "status"):
        args = [command, "--apache-pidfile", str(secret)]
        if command != "status":
            args += ["--group", "myapp"]
        run = run_cli(*args, "--state-dir", str(tmp_path / "state"), env={"WSGI_DRAIN_CONFIG": ""})
        assert run.returncode != 0
        assert "hunter2" not in run.stdout + run.stderr, (command, run.stdout, run.stderr)
        assert str(secret) in run.stdout + run.stderr


def _sudoers_lines() -> list[tuple[str, str]]:
    found = []
    for doc in ("README.md", "scripts/nagios-wsgi-drain.cfg", "docs/install.md"):
        for line in (REPO / doc).read_text().splitlines():
            if "NOPASSWD:" in line:
                found.append((doc, line.lstrip("# ").strip()))
    return found


def test_sudo_the_documented_sudoers_lines_have_fixed_arguments() -> None:
    lines = _sudoers_lines()
    assert lines, "no sudoers line documented"
    for doc, line in lines:
        command = line.split("NOPASSWD:", 1)[1]
        for entry in command.split(","):
            words = shlex.split(entry)
            assert words[:2] == ["/usr/local/bin/wsgi-drain", "check"], (doc, line)
            # sudoers wildcards (* ? [) and a trailing "" would let the caller choose.
            assert not any(re.search(r"[*?\[\]]", w) for w in words), (doc, line)
            assert "--group" in words and words[-1] != '""', (doc, line)
            chosen = {w for w in words if w.startswith("--")}
            assert not chosen & {"--router", "--haproxy", "--textfile", "--config"}, (doc, line)
