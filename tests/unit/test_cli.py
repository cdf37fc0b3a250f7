"""The command line's contract: help everywhere, usage errors without tracebacks."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from wsgi_drain.cli import cli

COMMANDS = ["restart", "drain", "undrain", "check", "status", "reload", "stop"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_that_teaches(command: str) -> None:
    result = CliRunner().invoke(cli, [command, "--help"], catch_exceptions=False)
    assert result.exit_code == 0
    assert result.output.startswith(f"Usage: cli {command} [OPTIONS]")
    docstring = cli.commands[command].help or ""
    assert len(docstring.split()) > 15, f"{command}'s help is too thin"
    for param in cli.commands[command].params:
        if param.name != "help":
            assert getattr(param, "help", None), f"{command} --{param.name} has no help"


def test_top_level_help_lists_every_command() -> None:
    result = CliRunner().invoke(cli, ["--help"], catch_exceptions=False)
    for command in COMMANDS:
        assert f"wsgi-drain {command}" in result.output


def test_restart_exit_statuses_are_documented() -> None:
    result = CliRunner().invoke(cli, ["restart", "--help"], catch_exceptions=False)
    text = " ".join(result.output.split())
    for words in ("0 success", "3 Apache or group not found", "4 router error", "7 another run"):
        assert words in text


def test_sigusr2_is_a_usage_error_with_the_reason() -> None:
    result = CliRunner().invoke(
        cli, ["restart", "--group", "g", "--signal", "SIGUSR2"], catch_exceptions=False
    )
    assert result.exit_code == 2
    assert "SIGUSR2 is not a restart signal" in result.output
    assert "Traceback" not in result.output


def test_bad_health_url_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "restart",
            "--group",
            "g",
            "--health-url",
            "localhost/health",
            "--state-dir",
            str(tmp_path),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 2
    assert "must be an absolute http:// or https:// URL" in result.output


def test_missing_apache_pidfile_exits_3_with_the_fix(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "restart", "--group", "g", "--apache-pidfile", str(tmp_path / "none.pid"),
            "--state-dir", str(tmp_path / "st"), "--json",
        ],
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 3
    assert "is Apache running with this PidFile?" in result.output


def test_undrain_without_router_says_how(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["undrain", "--group", "g", "--state-dir", str(tmp_path)], catch_exceptions=False
    )
    assert result.exit_code == 2
    assert "pass --router KIND:SPEC (or --haproxy SOCKET:BACKEND/SERVER)" in result.output
