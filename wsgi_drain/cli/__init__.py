"""Command line: parse, call the core, hand the result to report.py, exit with its status.

Every user mistake or environment problem arrives here as a DrainError and
leaves as one line on stderr plus the documented exit status, never as a
traceback.

The click group is `cli/group.py`.  This module imports no click: cron runs
`wsgi-drain check` every minute, and a plain check command line is parsed by
`cli/check_args.py` and run without it (issue 22); any other goes to click.
"""

from __future__ import annotations

import sys
from typing import Any

from wsgi_drain.status import ExitStatus


def main() -> None:
    """Entry point: a plain `check` without click, every other command line through click."""
    if sys.argv[1:2] == ["check"]:
        from wsgi_drain.cli import check_args

        values = check_args.parse(sys.argv[2:])
        if values is not None:
            check_args.run(values)
    from wsgi_drain.cli.group import main as click_main

    click_main()


def __getattr__(name: str) -> Any:
    """`cli` (the click group) is imported on first use: `from wsgi_drain.cli import cli`."""
    if name == "cli":
        from wsgi_drain.cli.group import cli

        return cli
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Keep ExitStatus importable from here for scripts that map codes.
__all__ = ["ExitStatus", "cli", "main"]
