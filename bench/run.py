"""The whole benchmark in one command: restart methods, exit detection, discovery at scale.

    python -m bench.run [--modwsgi debian|pypi] [--reps 3]

Writes one JSON file per run to bench/results/ (machine, versions and date
inside), one timeline PNG per restart method to docs/img/, and prints the
Markdown tables that docs/benchmarks.md shows.  Run as root on a machine with
apache2, libapache2-mod-wsgi-py3 (or the PyPI mod_wsgi) and haproxy.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/run.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import discovery_scale, exit_detection, restart_methods
from bench.common import IMG_DIR, RESULTS_DIR, environment
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
            print(line, file=sys.stderr, flush=True)

    result: dict[str, Any] = {"schema": "wsgi-drain-bench/1", **environment()}
    if "restart" in parts:
        result["restart_methods"] = restart_methods.run(
            modwsgi, reps, methods, timing=timing, img_dir=img_dir, log=say
        )
    if "exit" in parts:
        say("exit detection ...")
        result["exit_detection"] = exit_detection.run(exit_trials)
    if "discovery" in parts:
        say(f"discovery with {extra_processes} extra processes ...")
        result["discovery_scale"] = discovery_scale.run(extra_processes, discovery_repeat, modwsgi)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = result["date"].replace(":", "").replace("+0000", "Z")
    path = out_dir / f"bench-{modwsgi}-{stamp}.json"
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return path


# -- the Markdown tables -----------------------------------------------------


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value * 1000:.0f}"


def _s(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:g}"


def _range(stat: dict[str, Any], fmt: Callable[[float | None], str] = _s) -> str:
    if not stat or stat.get("median") is None:
        return "–"
    if stat["min"] == stat["max"]:
        return fmt(stat["median"])
    return f"{fmt(stat['median'])} ({fmt(stat['min'])}–{fmt(stat['max'])})"


def markdown(result: dict[str, Any]) -> str:
    """The tables of one result file: median (min–max) over the repetitions."""
    lines: list[str] = []
    rm = result.get("restart_methods")
    if rm:
        lines += [
            f"Restart methods, {rm['modwsgi']} mod_wsgi, {rm['reps']} repetitions; "
            "median (min–max).",
            "",
            "| method | failed / total | failed by class | 4 s request | "
            "p50 / p99 / max ms, steady | p50 / p99 / max ms, restart | "
            "lowest req/s in 250 ms (steady) | all replaced, s | overhead, s |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for data in rm["methods"].values():
            s = data["summary"]
            classes = ", ".join(
                f"{name} {_range(stat, _num)}"
                for name, stat in s["failed_by_class"].items()
                if stat["max"]
            )
            lines.append(
                f"| {data['label']} "
                f"| {_range(s['failed'], _num)} / {_range(s['total'], _num)} "
                f"| {classes or 'none'} "
                f"| {s['in_flight_ok']}/{s['reps']} ok "
                f"| {_ms(s['steady_p50']['median'])} / {_ms(s['steady_p99']['median'])} / "
                f"{_ms(s['steady_max']['median'])} "
                f"| {_ms(s['window_p50']['median'])} / {_ms(s['window_p99']['median'])} / "
                f"{_ms(s['window_max']['median'])} "
                f"| {_range(s['lowest_throughput_250ms'], _num)} "
                f"({s['steady_throughput']['median']:.0f}) "
                f"| {_range(s['wall_replaced'])} "
                f"| {_range(s['overhead'])} |"
            )
        respawn = rm.get("respawn_reference")
        lines += [
            "",
            f"Respawn reference (median exit → replacement, raw SIGUSR1 trials): {_s(respawn)} s.",
        ]
        drain = rm["methods"].get("drain")
        if drain:
            lines.append(
                "wsgi-drain drain, in-flight request's end → last old process exited: "
                f"{_range(drain['summary']['reaction'])} s."
            )
    ed = result.get("exit_detection")
    if ed:
        lines += [
            "",
            "| exit detection | median ms | p90 ms | max ms | n |",
            "|---|---|---|---|---|",
            f"| pidfd (`wait_exits`) | {ed['pidfd']['median'] * 1000:.2f} "
            f"| {ed['pidfd']['p90'] * 1000:.2f} | {ed['pidfd']['max'] * 1000:.2f} "
            f"| {ed['pidfd']['n']} |",
            f"| `pid_exists` every {ed['poll_interval'] * 1000:.0f} ms "
            f"| {ed['polling']['median'] * 1000:.2f} | {ed['polling']['p90'] * 1000:.2f} "
            f"| {ed['polling']['max'] * 1000:.2f} | {ed['polling']['n']} |",
            "",
            f"Polling / pidfd, medians: {ed['ratio_median']:.0f}×.",
        ]
    ds = result.get("discovery_scale")
    if ds:
        quiet, crowded = ds["quiet"], ds["crowded"]
        lines += [
            "",
            f"| discovery (median ms) | {quiet['host_processes']} processes "
            f"| {crowded['host_processes']} processes | ratio |",
            "|---|---|---|---|",
        ]
        for key, label in (
            ("find_apache_pidfile", "`find_apache(pidfile=…)`"),
            ("group_processes", "`group_processes` (socket proof)"),
            ("running_parents_scan", "`find_apache()` host scan (`running_parents`)"),
        ):
            lines.append(
                f"| {label} | {quiet[key]['median'] * 1000:.2f} "
                f"| {crowded[key]['median'] * 1000:.2f} | {ds['ratio_median'][key]:.2f}× |"
            )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--modwsgi", choices=("debian", "pypi"), default="debian")
    parser.add_argument("--reps", type=int, default=3, help="repetitions per method")
    parser.add_argument(
        "--methods", nargs="+", choices=restart_methods.METHODS, default=restart_methods.METHODS
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=("restart", "exit", "discovery"),
        default=["restart", "exit", "discovery"],
    )
    parser.add_argument("--extra-processes", type=int, default=5000)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="result JSON directory")
    parser.add_argument("--img-dir", type=Path, default=IMG_DIR, help="timeline PNG directory")
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
    print(markdown(json.loads(path.read_text(encoding="utf-8"))))
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
