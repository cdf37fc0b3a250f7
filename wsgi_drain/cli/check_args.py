"""`wsgi-drain check`'s plain command lines parsed without click (cron's cold start, issue 22).

Importing click costs about half of the check's whole start-up budget (60 ms
over bare Python), and cron pays it every minute on every host.  A command
line made only of `check`'s own options in their plain forms (`--name VALUE`,
`--name=VALUE`, `-g VALUE`, `-t VALUE`, the flags), each at most once (the
repeatable ones as often as given), every value well formed, is parsed here
into exactly the values click would pass (`OPTIONS` mirrors the click
command's declarations, and a unit test holds the two together, option by
option and case by case).  Anything else -- --help, an unknown or misspelt
option, a missing or malformed value, an empty variable, a value beginning
with "-", `--` -- returns None, and the command line goes to click, whose
messages, help and exit statuses stay the contract.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

from wsgi_drain.status import ExitStatus


class Spec:
    """One option of `check` as click declares it (a plain class: a dataclass costs start-up)."""

    __slots__ = (
        "default",
        "dir_okay",
        "envvar",
        "file_okay",
        "kind",
        "minimum",
        "multiple",
        "name",
        "opts",
        "readable",
        "required",
    )  # fmt: skip

    def __init__(
        self,
        name: str,  # the keyword click passes
        opts: tuple[str, ...],
        kind: str,  # "str", "path", "float", "int", "flag"
        envvar: str | None = None,
        *,
        default: Any = None,
        multiple: bool = False,
        required: bool = False,
        minimum: float | None = None,  # FloatRange/IntRange(min=...)
        file_okay: bool = True,  # click.Path's checks
        dir_okay: bool = True,
        readable: bool = True,
    ) -> None:
        self.name, self.opts, self.kind, self.envvar = name, opts, kind, envvar
        self.default, self.multiple, self.required, self.minimum = (
            default, multiple, required, minimum
        )  # fmt: skip
        self.file_okay, self.dir_okay, self.readable = file_okay, dir_okay, readable


OPTIONS = (
    Spec("group", ("--group", "-g"), "str", "WSGI_DRAIN_GROUP", required=True),
    Spec("config_file", ("--config",), "path", dir_okay=False),
    Spec("apache_config", ("--apache-config",), "path", "WSGI_DRAIN_APACHE_CONFIG", dir_okay=False),
    Spec(
        "apache_pidfile", ("--apache-pidfile",), "path", "WSGI_DRAIN_APACHE_PIDFILE", dir_okay=False
    ),
    Spec("haproxy", ("--haproxy",), "str", "WSGI_DRAIN_HAPROXY", default=(), multiple=True),
    Spec("routers", ("--router",), "str", default=(), multiple=True),
    Spec("health_url", ("--health-url",), "str", "WSGI_DRAIN_HEALTH_URL"),
    Spec(
        "health_timeout", ("--health-timeout",), "float", "WSGI_DRAIN_HEALTH_TIMEOUT", minimum=0.1
    ),
    Spec("lb_detect", ("--lb-detect",), "float", minimum=0),
    Spec("ack_traps", ("--ack-trap",), "str", default=(), multiple=True),
    Spec("health_host", ("--health-host",), "str", "WSGI_DRAIN_HEALTH_HOST"),
    Spec("health_ca", ("--health-ca",), "path", "WSGI_DRAIN_HEALTH_CA", dir_okay=False),
    Spec("health_insecure", ("--health-insecure",), "flag"),
    Spec(
        "state_dir",
        ("--state-dir",),
        "path",
        "WSGI_DRAIN_STATE_DIR",
        file_okay=False,
        readable=False,
    ),
    Spec("as_json", ("--json",), "flag", default=False),
    Spec("check_timeout", ("-t", "--timeout"), "float", default=30.0, minimum=1),
    Spec("health_warn", ("--health-warn",), "float", default=1.0, minimum=0),
    Spec("rss_warn", ("--rss-warn",), "int", minimum=1),
    Spec("age_warn", ("--age-warn",), "float", minimum=0),
    Spec("log_window", ("--log-window",), "float", default=600.0, minimum=0),
    Spec("textfile", ("--textfile",), "path", dir_okay=False),
)
_BY_OPT = {opt: spec for spec in OPTIONS for opt in spec.opts}


class _Unsure(Exception):
    """Not a plain command line: click decides."""


def parse(args: list[str], environ: Mapping[str, str] = os.environ) -> dict[str, Any] | None:
    """The values click would pass to `check` for `args`, or None to let click parse them."""
    try:
        return _parse(args, environ)
    except _Unsure:
        return None


def _parse(args: list[str], environ: Mapping[str, str]) -> dict[str, Any]:
    given: dict[str, list[str]] = {}
    flags: set[str] = set()
    words = iter(args)
    for word in words:
        opt, equals, inline = word.partition("=") if word.startswith("--") else (word, "", "")
        spec = _BY_OPT.get(opt)
        if spec is None:
            raise _Unsure
        if spec.kind == "flag":
            if equals or spec.name in flags:
                raise _Unsure
            flags.add(spec.name)
            continue
        value = inline if equals else next(words, None)
        if value is None or value == "" or value.startswith("-"):
            raise _Unsure
        if spec.name in given and not spec.multiple:
            raise _Unsure
        given.setdefault(spec.name, []).append(value)
    values: dict[str, Any] = {}
    for spec in OPTIONS:
        if spec.kind == "flag":
            values[spec.name] = True if spec.name in flags else spec.default
            continue
        raw = given.get(spec.name)
        if raw is None and spec.envvar is not None and spec.envvar in environ:
            from_env = environ[spec.envvar]
            if not from_env:
                raise _Unsure  # an empty variable: click's rule for it decides
            raw = from_env.split() if spec.multiple else [from_env]
            if not raw:
                raise _Unsure
        if raw is None:
            if spec.required:
                raise _Unsure
            values[spec.name] = spec.default
            continue
        converted = [_convert(spec, value) for value in raw]
        values[spec.name] = tuple(converted) if spec.multiple else converted[0]
    return values


def _convert(spec: Spec, value: str) -> Any:
    if spec.kind == "str":
        return value
    if spec.kind == "path":
        return _path(spec, value)
    # Plain digits, and for a float one "." between digits: "1", "0.5", never "1e3" or "nan".
    digits = value if spec.kind == "int" else value.replace(".", "", 1)
    if not (value.isascii() and digits.isdigit() and value[0] != "." and value[-1] != "."):
        raise _Unsure
    number = int(value) if spec.kind == "int" else float(value)
    if spec.minimum is not None and number < spec.minimum:
        raise _Unsure
    return number


def _path(spec: Spec, value: str) -> Path:
    """click.Path's checks (exists=False): a path that exists must be of the kind allowed."""
    try:
        info = os.stat(value)
    except OSError:
        return Path(value)
    if not spec.file_okay and stat.S_ISREG(info.st_mode):
        raise _Unsure
    if not spec.dir_okay and stat.S_ISDIR(info.st_mode):
        raise _Unsure
    if spec.readable and not os.access(value, os.R_OK):
        raise _Unsure
    return Path(value)


def run(values: dict[str, Any]) -> NoReturn:
    """Run the check with `values` as click's main would: Ctrl-C and a closed stdout alike."""
    from wsgi_drain.cli.check_run import run as run_check

    try:
        run_check(values)
    except KeyboardInterrupt:
        sys.stderr.write("\nAborted!\n")
        sys.exit(int(ExitStatus.INTERRUPTED))
    except OSError as err:
        if err.errno != errno.EPIPE:
            raise
        # The reader closed stdout (`| head -1`): exit 1 without a traceback, as click does.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)
