"""`check`'s plain command lines parsed without click give exactly click's values (issue 22).

Cron's `wsgi-drain check` no longer imports click when its command line is
plain (`cli/check_args.py`); anything else still goes to click, whose
messages, help and exit statuses are the contract.  So: the table mirrors
the click command option by option, a plain line parses to click's values,
and every line click would refuse (or answer with help) is left to click.
"""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from wsgi_drain.cli import check_args
from wsgi_drain.cli.check import check

ENV = [
    "WSGI_DRAIN_GROUP", "WSGI_DRAIN_APACHE_CONFIG", "WSGI_DRAIN_APACHE_PIDFILE",
    "WSGI_DRAIN_HAPROXY", "WSGI_DRAIN_HEALTH_URL", "WSGI_DRAIN_HEALTH_TIMEOUT",
    "WSGI_DRAIN_HEALTH_HOST", "WSGI_DRAIN_HEALTH_CA", "WSGI_DRAIN_STATE_DIR",
]  # fmt: skip


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def _click_values(args: list[str]) -> dict[str, object]:
    return dict(check.make_context("check", list(args)).params)


def test_check_args_table_mirrors_the_click_command_option_by_option() -> None:
    params = {p.name: p for p in check.params if isinstance(p, click.Option) and p.name != "help"}
    specs = {spec.name: spec for spec in check_args.OPTIONS}
    assert set(specs) == set(params)
    for name, param in params.items():
        spec = specs[name]
        assert set(spec.opts) == set(param.opts) | set(param.secondary_opts), name
        assert (spec.envvar, spec.multiple, spec.required) == (
            param.envvar, param.multiple, param.required
        ), name  # fmt: skip
        assert (spec.kind == "flag") == param.is_flag, name
        kind = param.type
        if isinstance(kind, click.Path):
            assert spec.kind == "path", name
            assert (spec.file_okay, spec.dir_okay, spec.readable) == (
                kind.file_okay, kind.dir_okay, kind.readable
            ), name  # fmt: skip
            assert not kind.exists and not kind.resolve_path and not kind.allow_dash, name
        elif isinstance(kind, (click.FloatRange, click.IntRange)):
            assert spec.kind == ("int" if isinstance(kind, click.IntRange) else "float"), name
            assert spec.minimum == kind.min and kind.max is None and not kind.min_open, name
        elif not param.is_flag:
            assert kind is click.STRING and spec.kind == "str", name


@pytest.mark.parametrize(
    "args",
    [
        ["--group", "myapp"],
        ["-g", "myapp", "--json", "--health-insecure"],
        ["--group=myapp", "--apache-pidfile", "/run/apache2/apache2.pid", "--health-url",
         "http://127.0.0.1:8080/health?x=1", "--state-dir", "/tmp", "--textfile", "/tmp/x.prom"],
        ["-g", "myapp", "--haproxy", "/run/h.sock:be/a", "--haproxy=/run/h2.sock:be/a",
         "--router", "health-file:/var/www/down", "--ack-trap", "a", "--ack-trap", "b"],
        ["-g", "myapp", "-t", "5", "--health-warn", "0.5", "--rss-warn", "300", "--age-warn",
         "86400", "--log-window", "0", "--health-timeout", "2.5", "--lb-detect", "10",
         "--health-host", "app.example", "--config", "/etc/wsgi-drain.toml"],
        ["--timeout=1", "--group", "a=b"],
    ],
)  # fmt: skip
def test_check_args_plain_line_parses_to_clicks_values(args: list[str]) -> None:
    assert check_args.parse(args) == _click_values(args)


def test_check_args_environment_is_read_as_click_reads_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WSGI_DRAIN_GROUP", "from-env")
    monkeypatch.setenv("WSGI_DRAIN_HAPROXY", " /run/h.sock:be/a  /run/h2.sock:be/b ")
    monkeypatch.setenv("WSGI_DRAIN_HEALTH_TIMEOUT", "3")
    monkeypatch.setenv("WSGI_DRAIN_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("WSGI_DRAIN_HEALTH_URL", "http://127.0.0.1:1/")
    for args in ([], ["--group", "given", "--haproxy", "/run/x.sock:be/c"]):
        assert check_args.parse(args) == _click_values(args)
    assert check_args.parse([])["haproxy"] == ("/run/h.sock:be/a", "/run/h2.sock:be/b")  # type: ignore[index]


@pytest.mark.parametrize(
    "args",
    [
        ["--help"], ["-h"], ["--group"], ["--grup", "x"], ["-g", "x", "extra"],
        ["-g", "x", "--json=1"], ["-g", "x", "--timeout", "0.5"],
        ["-g", "x", "--rss-warn", "1.5"], ["-g", "x", "--rss-warn", "0"],
        ["-g", "x", "--log-window", "-1"], ["-g", "x", "--", "y"], [],
    ],
)  # fmt: skip
def test_check_args_anything_click_refuses_or_helps_with_is_left_to_click(
    args: list[str],
) -> None:
    assert check_args.parse(args) is None
    # --help ends with click's Exit; a usage error with check's UNKNOWN exit (3).
    with pytest.raises((click.exceptions.Exit, SystemExit)) as refused:
        _click_values(args)
    assert refused.type is click.exceptions.Exit or refused.value.code == 3


def test_check_args_unsure_but_valid_lines_go_to_click_too(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Not refused by click, but not plain: click parses them (last --group wins, "" is a
    # value, "--json" after -g is the group's name, "nan" a float, -gx the group x).
    for args in (
        ["-g", "a", "-g", "b"], ["--group", ""], ["-g", "x", "--json", "--json"], ["-g", "--json"],
        ["-g", "x", "--health-timeout", "nan"], ["-gx"],
    ):  # fmt: skip
        assert check_args.parse(args) is None
        _click_values(args)
    monkeypatch.setenv("WSGI_DRAIN_GROUP", "")  # click's own rule for an empty variable
    assert check_args.parse([]) is None


def test_check_args_path_checks_are_clicks(tmp_path: Path) -> None:
    # A directory for a file, a file for the state directory: click refuses, so does the table.
    afile = tmp_path / "f"
    afile.write_text("")
    for args in (["-g", "x", "--textfile", str(tmp_path)], ["-g", "x", "--state-dir", str(afile)]):
        assert check_args.parse(args) is None
        with pytest.raises(SystemExit, match="3"):
            _click_values(args)
    args = ["-g", "x", "--textfile", str(tmp_path / "new.prom"), "--state-dir", str(tmp_path)]
    assert check_args.parse(args) == _click_values(args)
