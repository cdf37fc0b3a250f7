from pathlib import Path

import pytest

from wsgi_drain import config
from wsgi_drain.errors import ConfigError

TOML = """
state_dir = "/tmp/wd-state"
drain_timeout = 12

[groups.myapp]
apache_pidfile = "/run/apache2/apache2.pid"
haproxy = ["/run/haproxy/admin.sock:be_app/web1"]
health_url = "http://127.0.0.1:8080/health"
timeout = 60
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "wsgi-drain.toml"
    path.write_text(text)
    return path


def test_file_supplies_what_the_command_line_does_not(tmp_path: Path) -> None:
    data = config.read_file(write(tmp_path, TOML))
    s = config.resolve("myapp", {"health_url": None, "haproxy": ()}, data, "f")
    assert s.apache_pidfile == Path("/run/apache2/apache2.pid")
    assert s.haproxy == ("/run/haproxy/admin.sock:be_app/web1",)
    assert s.health_url == "http://127.0.0.1:8080/health"
    assert s.timeout == 60.0
    assert s.drain_timeout == 12.0
    assert s.state_dir == Path("/tmp/wd-state")
    assert s.mode == "drain"


def test_command_line_wins(tmp_path: Path) -> None:
    data = config.read_file(write(tmp_path, TOML))
    s = config.resolve("myapp", {"haproxy": ("/x.sock:b/s",), "timeout": 5.0}, data, "f")
    assert s.haproxy == ("/x.sock:b/s",)
    assert s.timeout == 5.0


def test_other_group_gets_only_the_defaults(tmp_path: Path) -> None:
    data = config.read_file(write(tmp_path, TOML))
    s = config.resolve("other", {}, data, "f")
    assert s.haproxy == ()
    assert s.drain_timeout == 12.0


def test_unknown_key_is_an_error_naming_it(tmp_path: Path) -> None:
    data = config.read_file(write(tmp_path, "[groups.myapp]\nhealth_ulr = 'x'\n"))
    with pytest.raises(ConfigError, match="unknown setting.*health_ulr"):
        config.resolve("myapp", {}, data, "f")


def test_bad_toml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[groups\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        config.read_file(path)


def test_missing_explicit_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        config.config_path(tmp_path / "nope.toml")
