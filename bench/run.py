"""The whole benchmark in one command: restart methods, exit detection, discovery, reload.

    python -m bench.run [--modwsgi debian|pypi] [--reps 3]

Writes one JSON file per run to bench/results/ (machine, versions and date
inside), one timeline PNG per restart method to docs/img/, and prints the
Markdown tables that docs/benchmarks.md shows.  Run as root on a machine with
apache2, libapache2-mod-wsgi-py3 (or the PyPI mod_wsgi) and haproxy.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/run.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common, discovery_scale, exit_detection, reload_methods, restart_methods
from bench.common import IMG_DIR, RESULTS_DIR
from lab import ModWsgi


def run(
    *,
    modwsgi: ModWsgi = "debian",
    reps: int = 3,
    methods: Sequence[str] = restart_methods.METHODS,
    timing: restart_methods.Timing | None = None,
    exit_trials: int = 40,
    extra_processes: int = 5000,
    discovery_repeat: int = 40,
    out_dir: Path = RESULTS_DIR,
    img_dir: Path | None = IMG_DIR,
    parts: Sequence[str] = ("restart", "exit", "discovery"),
    log: bool = True,
) -> Path:
    """Run the chosen parts and write the result file; returns its path."""

    def say(line: str) -> None:
        if log:
            common.say(line)

    started = common.environment()
    sections: dict[str, Any] = {}
    if "restart" in parts:
        sections["restart_methods"] = restart_methods.run(
            modwsgi, reps, methods, timing=timing, img_dir=img_dir, log=say
        )
    if "exit" in parts:
        say("exit detection ...")
        sections["exit_detection"] = exit_detection.run(exit_trials)
    if "reload" in parts:
        sections["reload_methods"] = reload_methods.run(modwsgi, reps, log=say)
    if "discovery" in parts:
        say(f"discovery with {extra_processes} extra processes ...")
        sections["discovery_scale"] = discovery_scale.run(
            extra_processes, discovery_repeat, modwsgi
        )
    return common.write_result(started, sections, modwsgi, out_dir)


def markdown(result: dict[str, Any]) -> str:
    """The tables of one result file: median (min–max) over the repetitions."""
    lines: list[str] = []
    for key, part in _PARTS:
        if result.get(key):
            lines += part.markdown(result[key])
    return common.tables(lines)


# Each part's section of a result file, in the order of the tables.
_PARTS = (
    ("restart_methods", restart_methods),
    ("exit_detection", exit_detection),
    ("discovery_scale", discovery_scale),
    ("reload_methods", reload_methods),
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = common.parser(__doc__)
    parser.add_argument("--reps", type=int, default=3, help="repetitions per method")
    parser.add_argument(
        "--methods", nargs="+", choices=restart_methods.METHODS, default=restart_methods.METHODS
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=("restart", "exit", "discovery", "reload"),
        default=["restart", "exit", "discovery", "reload"],
    )
    parser.add_argument("--extra-processes", type=int, default=5000)
    parser.add_argument(
        "--markdown", type=Path, metavar="RESULT_JSON", help="only print the tables of a result"
    )
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text(encoding="utf-8"))))
        return 0
    path = run(
        modwsgi=args.modwsgi,
        reps=args.reps,
        methods=args.methods,
        extra_processes=args.extra_processes,
        out_dir=args.out,
        img_dir=args.img_dir,
        parts=args.only,
    )
    common.report(path, markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
