"""`wsgi-drain status --history`: the last runs of each group, read from the state directory."""

from __future__ import annotations

from pathlib import Path

from wsgi_drain import history, report
from wsgi_drain.report_runs import history_dict, print_history


def show_history(state_dir: Path, group: str | None, as_json: bool) -> None:
    """Print the recorded runs (of `group` only, when given); exit 0 even when there are none."""
    runs = history.all_groups(state_dir)
    if group is not None:
        runs = {group: runs.get(group, [])}
    if as_json:
        report.print_json(history_dict(runs))
    else:
        print_history(runs, state_dir)
