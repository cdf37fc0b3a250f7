"""apacheconf: Apache configuration files (tests/fixtures/apache) -> dataclasses.

Each fixture is real httpd syntax; the include order of `layout/` was checked
against `apache2 -t -D DUMP_INCLUDES` from Debian's apache2 2.4.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from wsgi_drain.apacheconf import (
    ApacheConfig,
    DaemonGroup,
    effective_module_level,
    load_envvars,
    parse_config,
)
from wsgi_drain.errors import ApacheConfigError, GroupNotFoundError

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "apache"


def parse(name: str, conf: str = "httpd.conf", **kwargs: object) -> ApacheConfig:
    kwargs.setdefault("environ", {})
    return parse_config(FIXTURES / name / conf, **kwargs)  # type: ignore[arg-type]


def names(config: ApacheConfig) -> list[str]:
    return [g.name for g in config.groups]


# --- syntax ----------------------------------------------------------------------


@pytest.fixture
def syntax() -> ApacheConfig:
    environ = {"FROM_ENV": "from-env", "FLAG": "flag-from-env", "APPDIR": "/not/this"}
    return parse("syntax", environ=environ)


def test_continuations_quotes_and_case_insensitive_names(syntax: ApacheConfig) -> None:
    group = syntax.group("quoted")
    assert dict(group.options) == {
        "processes": "2",
        "threads": "4",
        "python-path": "/srv/app/lib:/opt/with space",
        "home": "/srv/app",  # ${VAR} is expanded inside single quotes too
        "display-name": "%{GROUP}",
        "user": 'app"user',
        "lang": "en_US.UTF-8",
        "flagword": "",
        "graceful-timeout": "30",
        "shutdown-timeout": "10",
    }
    assert (group.processes, group.threads) == (2, 4)
    assert (group.graceful_timeout, group.shutdown_timeout) == (30.0, 10.0)
    assert group.eviction_timeout is None
    # The directive starts on line 14 and runs over six continuation lines.
    assert group.source == f"{FIXTURES / 'syntax' / 'httpd.conf'}:14"


def test_comment_ending_in_backslash_swallows_next_line(syntax: ApacheConfig) -> None:
    assert "swallowed-by-comment" not in names(syntax)


def test_ids_count_every_directive_in_order(syntax: ApacheConfig) -> None:
    assert [(g.id, g.name) for g in syntax.groups] == [
        (1, "quoted"),
        (2, "/srv/app-group"),
        (3, "variables"),
        (4, "backslashes"),
        (5, "defaults"),
        (6, "name with space"),
    ]


def test_variables_from_defines_then_environ(syntax: ApacheConfig) -> None:
    options = syntax.group("variables").options
    assert options["greeting"] == "hello world"
    assert options["gone"] == "${GONE}"  # UnDefine'd: left as written
    # A Define without a value defines a name, not a variable: environ answers.
    assert options["flag"] == "flag-from-env"
    assert options["env"] == "from-env"
    assert options["nope"] == "${NOT_DEFINED_ANYWHERE}/x"
    assert options["dollar"] == "$HOME"  # only ${...} is expanded
    # Define wins over the environment.
    assert syntax.groups[1].name == "/srv/app-group"


def test_backslash_escapes(syntax: ApacheConfig) -> None:
    options = syntax.group("backslashes").options
    assert options["python-path"] == "C:\\dir\\sub"  # "\\" is one backslash
    assert options["home"] == "a\\b"  # any other backslash stays
    assert options["quoted"] == "a\\b\\c"
    assert options["single"] == "it's"


def test_quoted_group_name_and_defaults(syntax: ApacheConfig) -> None:
    group = syntax.group("defaults")
    assert (group.processes, group.threads) == (1, 15)
    assert group.display_name is None and group.title is None
    assert group.graceful_timeout is group.eviction_timeout is group.shutdown_timeout is None
    assert (group.drain_window, group.shutdown_window) == (15.0, 5.0)
    assert syntax.group("name with space").processes == 1


def test_listen_and_main_defaults(syntax: ApacheConfig) -> None:
    assert syntax.listen == ("127.0.0.1:8080", "[::1]:8443 https")
    assert syntax.log_level == "warn"
    assert syntax.script_reloading is True
    assert syntax.socket_rotation is True
    assert syntax.socket_prefix is None and syntax.pid_file is None
    assert syntax.runtime_dir is None
    assert syntax.error_log == FIXTURES / "syntax" / "logs" / "error_log"  # httpd's default
    assert syntax.server_root == FIXTURES / "syntax"


def test_title_and_windows(syntax: ApacheConfig) -> None:
    assert syntax.group("quoted").title == "(wsgi:quoted)"
    custom = syntax.group("/srv/app-group")
    assert custom.title == "(wsgi:custom)"
    # eviction-timeout rules a signalled restart; graceful-timeout=0 is explicit.
    assert custom.drain_window == 3.0
    assert custom.graceful_timeout == 0.0
    assert syntax.group("quoted").drain_window == 30.0
    assert syntax.group("quoted").shutdown_window == 10.0


def test_unknown_group_names_the_known_ones(syntax: ApacheConfig) -> None:
    with pytest.raises(GroupNotFoundError) as info:
        syntax.group("Quoted")  # mod_wsgi compares names case-sensitively
    assert info.value.group == "Quoted"
    assert info.value.known == tuple(names(syntax))
    assert str(FIXTURES / "syntax" / "httpd.conf") in str(info.value)


def test_groups_are_frozen_and_hashable(syntax: ApacheConfig) -> None:
    group = syntax.group("quoted")
    with pytest.raises(AttributeError):
        group.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        group.options["processes"] = "9"  # type: ignore[index]
    assert len({group, syntax.group("defaults")}) == 2


# --- conditional sections ----------------------------------------------------------


def test_conditional_sections() -> None:
    config = parse("conditions")
    # <IfModule !x> counts as false (the documented simplification), even
    # where httpd would find x absent; <IfVersion> is always true.
    assert names(config) == [
        "if-define",
        "not-from-command-line",
        "if-module",
        "if-version",
        "if-version-old",
        "if-file",
    ]


def test_ifdefine_sees_command_line_defines() -> None:
    config = parse("conditions", defines=["FROM_COMMAND_LINE"])
    assert "from-command-line" in names(config)
    assert "not-from-command-line" not in names(config)


def test_macro_bodies_are_not_read() -> None:
    assert "$name" not in names(parse("conditions"))


# --- virtual hosts and log settings ----------------------------------------------------


@pytest.fixture
def vhosts() -> ApacheConfig:
    return parse("vhosts")


def test_ids_across_vhosts_and_files(vhosts: ApacheConfig) -> None:
    assert [(g.id, g.name) for g in vhosts.groups] == [
        (1, "main-group"),
        (2, "vhost-a"),
        (3, "vhost-b"),
        (4, "vhost-c"),
        (5, "vhost-d"),
        (6, "main-last"),
    ]
    assert vhosts.group("vhost-d").source == f"{FIXTURES / 'vhosts' / 'vhosts.d' / 'd.conf'}:3"


def test_main_server_settings(vhosts: ApacheConfig) -> None:
    main_log = FIXTURES / "vhosts" / "logs" / "main_error.log"
    assert vhosts.error_log == main_log
    # LogLevel lines add up; one later in the file still applies.
    assert vhosts.log_level == "info wsgi:info"
    assert vhosts.script_reloading is False
    group = vhosts.group("main-group")
    assert (group.processes, group.threads) == (3, 5)
    assert group.error_log == main_log
    assert group.wsgi_log_level == "info"
    assert group.script_reloading is False


def test_vhost_settings_apply_to_groups_inside(vhosts: ApacheConfig) -> None:
    a = vhosts.group("vhost-a")
    assert a.error_log == Path("/var/log/apache2/a_error.log")
    # Only a module level in the vhost: the main levels still count.
    assert a.log_level == "info wsgi:info wsgi:debug"
    assert a.wsgi_log_level == "debug"
    assert a.script_reloading is True


def test_piped_and_syslog_error_logs_are_none(vhosts: ApacheConfig) -> None:
    b = vhosts.group("vhost-b")
    assert b.error_log is None
    assert (b.log_level, b.wsgi_log_level) == ("warn", "warn")  # own level replaces main's
    c = vhosts.group("vhost-c")
    assert c.error_log is None
    # LogLevel and WSGIScriptReloading inside <Directory> are per directory.
    assert c.log_level == "info wsgi:info"
    assert c.script_reloading is False


def test_vhost_without_error_log_inherits_main(vhosts: ApacheConfig) -> None:
    d = vhosts.group("vhost-d")
    assert d.error_log == vhosts.error_log
    assert (d.log_level, d.wsgi_log_level) == ("notice", "notice")


@pytest.mark.parametrize(
    ("log_level", "expected"),
    [
        ("warn wsgi:info", "info"),
        ("info", "info"),
        ("warn", "warn"),
        ("WARN", "warn"),
        ("mod_wsgi:debug", "debug"),
        ("mod_wsgi.c:trace1", "trace1"),
        ("wsgi_module:info", "info"),
        ("warn ssl:debug", "warn"),
        ("wsgi:info error", "error"),  # a plain level resets module levels
        ("", "warn"),
    ],
)
def test_wsgi_log_level(log_level: str, expected: str) -> None:
    assert effective_module_level(log_level, {"wsgi", "wsgi_module", "mod_wsgi.c", "mod_wsgi"}) == (
        expected
    )
    group = DaemonGroup(
        name="g",
        id=1,
        options={},
        processes=1,
        threads=1,
        display_name=None,
        graceful_timeout=None,
        eviction_timeout=None,
        shutdown_timeout=None,
        error_log=None,
        log_level=log_level,
        source="x:1",
    )
    assert group.wsgi_log_level == expected


# --- paths -------------------------------------------------------------------------


def test_server_root_directive_and_relative_paths() -> None:
    root = FIXTURES / "paths"
    config = parse("paths", environ={"ROOT": str(root)}, server_root=Path("/nonexistent"))
    assert config.server_root == root
    assert config.runtime_dir == root / "run"
    assert config.pid_file == root / "run" / "httpd.pid"  # under DefaultRuntimeDir
    assert config.socket_prefix == root / "run" / "wsgi"
    assert config.socket_rotation is False
    assert config.error_log == root / "logs" / "error.log"  # "ErrorLog file PATH"
    # The Include after ServerRoot is found under the new root.
    assert config.files == (root / "httpd.conf", root / "conf" / "app.conf")
    assert names(config) == ["app"]


def test_pid_file_without_runtime_dir_is_under_server_root() -> None:
    root = FIXTURES / "paths"
    config = parse("paths", "no-runtime-dir.conf", server_root=root)
    assert config.runtime_dir is None
    assert config.pid_file == root / "run" / "httpd.pid"


def test_server_root_defaults_to_the_config_directory() -> None:
    config = parse("paths", "no-runtime-dir.conf")
    assert config.server_root == FIXTURES / "paths"


def test_absolute_paths_stay() -> None:
    config = parse("paths", "absolute.conf")
    assert config.pid_file == Path("/var/run/elsewhere/httpd.pid")
    assert config.socket_prefix == Path("/var/run/wsgi")


# --- includes -----------------------------------------------------------------------


def test_include_directories_globs_and_optional_misses() -> None:
    root = FIXTURES / "layout"
    config = parse("layout")
    # A directory is read whole and recursively, dot files included; "*.conf"
    # does not match ".dot.conf" nor "ignored.txt"; "parts/*/" only matches
    # directories; optional misses are fine; a file included twice counts once.
    assert names(config) == [
        "conf-d-hidden",
        "conf-d-10",
        "conf-d-20",
        "conf-d-sub-30",
        "sites-a",
        "sites-b",
        "parts-x",
        "parts-y",
    ]
    assert config.files == (
        root / "httpd.conf",
        root / "conf.d" / ".hidden.conf",
        root / "conf.d" / "10-first.conf",
        root / "conf.d" / "20-second.conf",
        root / "conf.d" / "sub" / "30-nested.conf",
        root / "sites" / "a.conf",
        root / "sites" / "b.conf",
        root / "parts" / "x" / "group.conf",
        root / "parts" / "y" / "group.conf",
        root / "common.conf",
    )


def error_of(conf: str) -> str:
    with pytest.raises(ApacheConfigError) as info:
        parse("errors", conf)
    return str(info.value)


def test_missing_include_names_file_and_line() -> None:
    message = error_of("missing-include.conf")
    assert f"{FIXTURES / 'errors' / 'missing-include.conf'}:3" in message
    assert str(FIXTURES / "errors" / "not-there.conf") in message


def test_include_wildcard_without_match_fails() -> None:
    message = error_of("no-match.conf")
    assert f"{FIXTURES / 'errors' / 'no-match.conf'}:1" in message
    assert "no matches" in message


def test_include_loop_is_refused() -> None:
    message = error_of("loop-a.conf")
    assert "Include loop" in message
    assert f"{FIXTURES / 'errors' / 'loop-b.conf'}:2" in message


def test_duplicate_group_name_is_refused() -> None:
    message = error_of("duplicate.conf")
    assert "Name duplicates previous WSGI daemon definition" in message
    assert "duplicate.conf:3" in message and "duplicate.conf:1" in message


@pytest.mark.parametrize(
    ("conf", "expected"),
    [
        ("unclosed.conf", "<VirtualHost> is not closed"),
        ("mismatched.conf", "expected </VirtualHost> but saw </Directory>"),
        ("bad-processes.conf", "Invalid process count"),
        ("include-two-args.conf", "include takes 1 argument"),
    ],
)
def test_syntax_errors(conf: str, expected: str) -> None:
    assert expected in error_of(conf)


def test_missing_main_config() -> None:
    with pytest.raises(ApacheConfigError, match="cannot read Apache configuration"):
        parse("errors", "no-such.conf")


# --- Debian layout --------------------------------------------------------------------

DEBIAN = FIXTURES / "debian"


def test_load_envvars_reads_simple_assignments_only() -> None:
    environ = {"APACHE_CONFDIR": "/etc/apache2", "HOME": "/root", "PATH": "/usr/bin"}
    result = load_envvars(DEBIAN / "envvars", environ)
    assert result == {
        "APACHE_CONFDIR": "/etc/apache2",
        "PATH": "/usr/bin",
        "APACHE_RUN_USER": "www-data",
        "APACHE_RUN_GROUP": "www-data",
        "APACHE_PID_FILE": "/var/run/apache2/apache2.pid",
        "APACHE_RUN_DIR": "/var/run/apache2",
        "APACHE_LOCK_DIR": "/var/lock/apache2",
        "APACHE_LOG_DIR": "/var/log/apache2",
        "LANG": "C",
        "APP_NAME": "my app",
        "APP_HOME": "/srv/my app",
    }
    # Nothing was executed, the caller's mapping is untouched.
    assert "HOME" in environ and "SUFFIX" not in result


def test_load_envvars_expands_from_environ() -> None:
    result = load_envvars(DEBIAN / "envvars", {"SUFFIX": "-two"})
    assert result["APACHE_LOG_DIR"] == "/var/log/apache2-two"
    assert result["APACHE_PID_FILE"] == "/var/run/apache2-two/apache2.pid"


def test_load_envvars_missing_file() -> None:
    with pytest.raises(ApacheConfigError):
        load_envvars(DEBIAN / "no-envvars", {})


def test_debian_layout() -> None:
    environ = load_envvars(DEBIAN / "envvars", {"APACHE_CONFDIR": "/etc/apache2"})
    config = parse_config(DEBIAN / "apache2.conf", environ=environ)
    assert config.server_root == DEBIAN
    assert config.runtime_dir == Path("/var/run/apache2")
    assert config.pid_file == Path("/var/run/apache2/apache2.pid")
    assert config.socket_prefix == Path("/var/run/apache2/wsgi")
    assert config.error_log == Path("/var/log/apache2/error.log")
    assert config.log_level == "warn"
    assert config.script_reloading is False
    assert config.listen == ("80", "443")
    # sites-available is not included; *.load before *.conf, as written.
    assert [f.relative_to(DEBIAN).as_posix() for f in config.files] == [
        "apache2.conf",
        "mods-enabled/mpm_event.load",
        "mods-enabled/wsgi.load",
        "mods-enabled/mpm_event.conf",
        "mods-enabled/wsgi.conf",
        "ports.conf",
        "conf-enabled/security.conf",
        "sites-enabled/000-default.conf",
        "sites-enabled/myapp.conf",
    ]
    group = config.group("myapp")
    assert group.id == 1
    assert (group.processes, group.threads) == (3, 5)
    assert group.title == "(wsgi:myapp)"
    assert (group.drain_window, group.shutdown_window) == (20.0, 5.0)
    assert group.options["home"] == "/srv/my app"
    assert group.error_log == Path("/var/log/apache2/myapp_error.log")
    assert (group.log_level, group.wsgi_log_level) == ("warn wsgi:info", "info")
    assert group.source == f"{DEBIAN / 'sites-enabled' / 'myapp.conf'}:3"


def test_debian_layout_without_envvars_leaves_variables() -> None:
    config = parse_config(DEBIAN / "apache2.conf", environ={})
    # httpd too keeps an undefined ${VAR} as text (and warns).
    assert config.error_log == DEBIAN / "${APACHE_LOG_DIR}" / "error.log"
    assert config.group("myapp").options["home"] == "${APP_HOME}"


# --- sections evaluated with the binary's facts, macros, -C/-c ----------------------------


class Facts:
    """What `apache2 -l` and `apache2 -v` print on Debian bookworm (Apache 2.4.71)."""

    def __init__(self, version: tuple[int, int, int] | None = (2, 4, 71)) -> None:
        self._version = version

    def static_modules(self) -> frozenset[str]:
        return frozenset(
            {"core.c", "mod_so.c", "mod_watchdog.c", "http_core.c", "mod_log_config.c",
             "mod_logio.c", "mod_version.c", "mod_unixd.c"}
        )  # fmt: skip

    def version(self) -> tuple[int, int, int] | None:
        return self._version


def test_ifmodule_and_ifversion_evaluated_as_httpd_does() -> None:
    config = parse("evaluated", facts=Facts())
    assert names(config) == [
        "by-source-name",
        "by-symbol",
        "not-prefork",
        "mpm-source-name",
        "compiled-in-source-name",
        "compiled-in-symbol",
        "absent-negated",
        "loaded-later",
        "version-at-least-2.4",
        "version-exact",
        "version-not-2.2",
        "version-regex",
        "macro-one",
        "macro-two",
        "after-macros",
    ]
    assert config.uncertain is None
    assert all(g.uncertain is None for g in config.groups)


def test_macro_use_expands_in_place_with_variables_at_use_time() -> None:
    config = parse("evaluated", facts=Facts())
    one, two = config.group("macro-one"), config.group("macro-two")
    assert (one.processes, one.threads) == (2, 7)
    assert (two.processes, two.threads) == (4, 9)
    assert one.id == 13 and two.id == 14


def test_macro_errors_name_the_line(tmp_path: Path) -> None:
    conf = tmp_path / "httpd.conf"
    conf.write_text("<Macro M $a>\nWSGIDaemonProcess $a\n</Macro>\nUse M\n")
    with pytest.raises(
        ApacheConfigError, match="httpd.conf:4: macro 'M'.*0 arguments instead of 1"
    ):
        parse_config(conf, environ={})
    conf.write_text("<Macro M>\nUse M\n</Macro>\nUse M\n")
    with pytest.raises(ApacheConfigError, match="recursive use of macro 'M'"):
        parse_config(conf, environ={})
    conf.write_text("Use Nope 1\n")
    with pytest.raises(ApacheConfigError, match="httpd.conf:1: macro 'Nope' is not defined"):
        parse_config(conf, environ={})


def test_undecidable_sections_mark_later_groups_uncertain() -> None:
    # Without the binary's facts <IfModule>/<IfVersion> cannot be decided; a
    # section whose body holds a group makes every later position unknown.
    config = parse("evaluated")
    # A module LoadModule loaded is known without them ...
    assert config.group("by-source-name").uncertain is None
    assert config.group("by-symbol").uncertain is None
    # ... one that is not may be compiled in: the section is read the likely
    # way (a negated one skipped), and from here on positions are unknown.
    assert "not-prefork" not in names(config)
    first = config.group("mpm-source-name")
    assert first.uncertain is not None and "<IfModule !mpm_prefork_module>" in first.uncertain
    assert "httpd -l" in first.uncertain
    assert config.uncertain == first.uncertain
    assert config.groups[-1].uncertain == first.uncertain


def test_undecidable_section_without_groups_leaves_positions_certain(tmp_path: Path) -> None:
    conf = tmp_path / "httpd.conf"
    conf.write_text(
        "<IfModule !foo_module>\n  LogFormat x\n</IfModule>\n"
        "<IfDirective SomeDirective>\n  Header set X y\n</IfDirective>\n"
        "WSGIDaemonProcess myapp\n"
    )
    assert parse_config(conf, environ={}).group("myapp").uncertain is None


def test_unknown_version_makes_ifversion_undecidable() -> None:
    config = parse("evaluated", facts=Facts(version=None))
    assert config.group("version-at-least-2.4").uncertain is not None
    assert config.group("loaded-later").uncertain is None


def test_command_line_directives_come_before_and_after_the_files(tmp_path: Path) -> None:
    conf = tmp_path / "httpd.conf"
    conf.write_text("WSGIDaemonProcess from-file\n")
    config = parse_config(
        conf,
        environ={},
        before=["WSGIDaemonProcess from-C", "Define LATE"],
        after=["<IfDefine LATE>", "WSGIDaemonProcess from-c", "</IfDefine>"],
    )
    assert [(g.id, g.name) for g in config.groups] == [
        (1, "from-C"),
        (2, "from-file"),
        (3, "from-c"),
    ]
    assert config.group("from-c").source == "<-c>:2"


def test_inputs_are_what_was_read_before_each_group() -> None:
    config = parse("layout")
    root = FIXTURES / "layout"
    first, last = config.groups[0], config.groups[-1]
    assert root / "httpd.conf" in first.inputs
    assert set(first.inputs) <= set(last.inputs) <= set(config.inputs)
    # Directories whose listing decided what was read count too: a file
    # added to them changes which groups come first.
    assert root / "conf.d" in config.inputs
