"""`restart --textfile`: the last run as Prometheus metrics, written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # wsgi_drain.cli loads this for every command; `check` never loads the restart's outcome.
    from wsgi_drain.outcome import Outcome


def write_textfile(path: Path | None, outcome: Outcome) -> None:
    """Replace the metrics file (dry runs write none); a failure becomes one of the run's warnings.

    The run's verdict stands: the restart happened whether or not its metrics
    could be written, and the warning names the file and the fix.
    """
    if path is None or outcome.dry_run:
        return
    from wsgi_drain.atomic import write_atomic
    from wsgi_drain.report_runs import restart_metrics

    try:
        write_atomic(path, restart_metrics(outcome))
    except OSError as err:
        outcome.warnings.append(
            f"cannot write --textfile {path}: {err.strerror or err} "
            "(does the directory exist, and may this user write it?)"
        )
