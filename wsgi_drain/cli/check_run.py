"""`wsgi-drain check`'s run once its options are parsed, by click or by `check_args` (no click).

Cron runs the check every minute on every host (issue 22): a plain command
line is parsed by `cli/check_args.py` and comes here without importing click;
anything else goes through the click command in `cli/check.py`, which calls
`run` with the same values.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

from wsgi_drain import privilege, report, report_check
from wsgi_drain._compat import print_bug
from wsgi_drain.cli.resolve import settings
from wsgi_drain.errors import DrainError


def run(kwargs: dict[str, Any]) -> NoReturn:
    """Run the check with the command's option values (by name) and exit with its status."""
    from wsgi_drain.check import CheckResult, Thresholds, run_check
    from wsgi_drain.status import NagiosStatus

    as_json = kwargs.pop("as_json")
    textfile = kwargs.pop("textfile")
    limit = kwargs.pop("check_timeout")
    rss_warn = kwargs.pop("rss_warn")
    thresholds = Thresholds(
        health_warn=kwargs.pop("health_warn"),
        rss_warn=rss_warn * 2**20 if rss_warn else None,
        age_warn=kwargs.pop("age_warn"),
        log_window=kwargs.pop("log_window"),
    )
    group = kwargs["group"]
    try:
        with _alarm(limit):
            result = run_check(settings(kwargs, {}, {"textfile": textfile}), thresholds)
    except Exception as err:  # a DrainError, a timeout, or a bug: monitoring must see UNKNOWN
        if isinstance(err, privilege.SudoRefused):
            textfile = None  # the refused file is not written, not even with UNKNOWN
        if not isinstance(err, (DrainError, _CheckTimeout)):
            print_bug(err)
        result = CheckResult(group)
        result.add(NagiosStatus.UNKNOWN, str(err))
    problem = _write_textfile(textfile, result)
    if problem:
        # An UNKNOWN finding of its own: the worst-of rule keeps a CRITICAL found
        # above (an UNKNOWN never hides a CRITICAL, README "check").
        result.add(NagiosStatus.UNKNOWN, problem)
    if as_json:
        report.print_json(report_check.check_dict(result, thresholds))
    else:
        report_check.print_check(result, thresholds)
    sys.exit(int(result.status))


class _CheckTimeout(Exception):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"check timed out after {seconds:g} s (-t/--timeout)")


@contextlib.contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    """Raise _CheckTimeout if the block runs past `seconds` (a SIGALRM backstop)."""

    def expired(signum: int, frame: object) -> None:
        raise _CheckTimeout(seconds)

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _write_textfile(path: Path | None, result: Any) -> str | None:
    """Rewrite the metrics file; a failure is returned (the check's UNKNOWN), never raised."""
    if path is None:
        return None
    from wsgi_drain.state import write_atomic

    try:
        write_atomic(path, report_check.prometheus_text(result))
    except OSError as err:
        return (
            f"cannot write --textfile {path}: {err.strerror or err} "
            "(does the directory exist, and may this user write it?)"
        )
    return None
