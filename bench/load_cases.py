"""Restart methods under the loads where they differ: saturation, long requests, lazy apps.

    python -m bench.load_cases [--cases NAME ...] [--modwsgi debian pypi] [--reps 1]

Each case is a load and a group configuration; each row of a case is a
restart method (raw SIGUSR1 to the daemons, `apachectl graceful`, wsgi-drain
in drain mode through HAProxy, wsgi-drain in rolling mode), measured on a
fresh stack per trial, in the same run, with the same load:

- saturated-rolling: every daemon thread busy (20 clients on 3 x 5 threads,
  each request 0.2 s), straight at Apache: no router.
- long-request: a request longer than the drain window + shutdown-timeout
  (12 s against graceful-timeout 6 + shutdown-timeout 3) through HAProxy, and
  once more as an internal call straight to Apache, under the reference load.
- saturated-drain: every thread of both hosts busy (40 clients, 0.2 s each,
  balanced by HAProxy), with a 4 s request pinned to the restarted host.
- lazy: the app loads on each process's first request and takes 3 s to import
  (mod_wsgi's default, no preloading), under the reference load.

The reference case (~70 req/s, a 4 s request in flight) is bench/restart_methods.py.
Figures per trial (bench.restart_methods.figures, plus): latency in the 5 s
after every process was replaced, requests over 1 s in that tail, when the
host first answered from a new process (new code) and last from an old one.
Writes bench/results/load-cases-<date>.json and prints the Markdown tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/load_cases.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import restart_methods as rm
from bench.common import IMG_DIR, RESULTS_DIR, environment, ms, secs, spread
from lab import LoadLoop, ModWsgi, Sample, Stack, slow_request, two_hosts

TAIL = 5.0  # the "after" window: the 5 s once every process is replaced
SLOW_ANSWER = 1.0  # a request over this long in the tail paid for something


@dataclass(frozen=True)
class Row:
    key: str
    method: str  # a bench.restart_methods method
    label: str
    # Where the long request goes: "haproxy" (pinned to host a) or "apache"
    # (straight to host a: an internal call the router never sees).
    long_through: str = "haproxy"


@dataclass(frozen=True)
class Case:
    name: str
    title: str
    rows: tuple[Row, ...]
    daemon_options: dict[str, int] = field(default_factory=dict)
    clients: int = 4
    pause: float = 0.055
    path: str = "/"
    load_through: str = "haproxy"  # or "apache": straight at host a
    long: float | None = 4.0
    import_delay: float = 0.0
    steady: float = 2.0


def _rows(*methods: str) -> tuple[Row, ...]:
    return tuple(Row(m, m, rm.LABELS[m]) for m in methods)


TIMEOUTS = {"graceful-timeout": 15, "shutdown-timeout": 5}
CASES: dict[str, Case] = {
    c.name: c
    for c in (
        Case(
            "saturated-rolling",
            "Saturated group, no router (load straight at Apache)",
            _rows("sigusr1", "graceful", "rolling"),
            TIMEOUTS,
            clients=20,
            pause=0.0,
            path="/busy?s=0.2",
            load_through="apache",
            long=None,
        ),
        Case(
            "long-request",
            "A 12 s request, drain window 6 s + shutdown-timeout 3 s",
            (
                *_rows("sigusr1", "graceful", "drain", "rolling"),
                Row(
                    "drain-internal",
                    "drain",
                    "wsgi-drain restart (HAProxy), the request straight to Apache",
                    long_through="apache",
                ),
            ),
            {"graceful-timeout": 6, "shutdown-timeout": 3},
            long=12.0,
        ),
        Case(
            "saturated-drain",
            "Saturated hosts behind HAProxy, a 4 s request in flight",
            _rows("sigusr1", "graceful", "drain", "rolling"),
            TIMEOUTS,
            clients=40,
            pause=0.0,
            path="/busy?s=0.2",
        ),
        Case(
            "lazy",
            "App loaded on first request (no preloading), 3 s import",
            _rows("sigusr1", "graceful", "drain", "rolling"),
            TIMEOUTS,
            import_delay=3.0,
        ),
    )
}


def _warm(s: Stack) -> None:
    """Every daemon of both hosts loads the app (concurrent slow requests), then waits."""
    for lab in (s.a, s.b):
        pids = lab.daemon_pids()
        pending = [slow_request(lab.url + "/busy", 0.3) for _ in range(3 * lab.threads)]
        for request in pending:
            request.result(timeout=60)
        lab.wait_loaded(pids)


def run_trial(root: Path, modwsgi: ModWsgi, case: Case, row: Row, rep: int) -> rm.Trial:
    processes = 3
    with two_hosts(root, modwsgi, processes=processes, daemon_options=case.daemon_options) as s:
        _warm(s)
        s.a.set_import_delay(case.import_delay)
        s.a.set_version("2")  # what a replacement serves: "new code"
        front = s.a.url if case.load_through == "apache" else s.haproxy.url
        old = sorted(s.a.daemon_pids())
        watcher = rm.PidWatcher(s.a)
        budget = case.steady + (case.long or 0) + rm.REPLACE_TIMEOUT + rm.COMMAND_TIMEOUT + TAIL
        load = LoadLoop(
            front + case.path,
            max_requests=400_000,
            max_seconds=budget,
            clients=case.clients,
            pause=case.pause,
        )
        errors: list[str] = []
        long_request: Future[Sample] | None = None
        long_sample = None
        replaced_at = None
        watcher.start()
        load_start = time.monotonic()
        load.start()
        try:
            offset = random.Random(f"{case.name}-{row.key}-{rep}").uniform(0.0, 1.0)
            time.sleep(case.steady + offset)
            if case.long is not None:
                base = s.a.url if row.long_through == "apache" else s.haproxy.url
                long_request = slow_request(base + "/slow", case.long)
                time.sleep(0.5)
            command = rm.run_method(s, row.method)
            if command.returncode not in (0, None):
                errors.append(f"exit {command.returncode}: {command.stderr.strip()[-300:]}")
            replaced_at = rm._wait_replaced(watcher, set(old), processes, rm.REPLACE_TIMEOUT)
            if replaced_at is None:
                errors.append(f"old processes not all replaced within {rm.REPLACE_TIMEOUT} s")
            if long_request is not None:
                long_sample = rm._result(long_request, case.long + 35.0, errors)  # type: ignore[operator]
            end_of_tail = max(replaced_at or 0.0, command.end) + TAIL
            time.sleep(max(end_of_tail - time.monotonic(), 0.0))
        finally:
            load.stop()
            watcher.stop()
        return rm.Trial(
            method=row.key,
            rep=rep,
            processes=processes,
            load_start=load_start,
            command=command,
            samples=load.results(),
            slow=long_sample,
            old_pids=old,
            new_pids=sorted(watcher.current() - set(old)),
            replaced_at=replaced_at,
            first_seen=dict(watcher.first_seen),
            gone_at=dict(watcher.gone_at),
            watcher_polls=watcher.polls,
            errors=errors,
        )


def figures(trial: rm.Trial) -> dict[str, Any]:
    """bench.restart_methods.figures, plus the tail after the restart and the new code's arrival."""
    f = rm.figures(trial)
    t0 = trial.command.start
    done_at = max(trial.replaced_at or trial.command.end, trial.command.end)
    tail = [s for s in trial.samples if done_at < s.start <= done_at + TAIL]
    f["tail"] = rm._latency(tail)
    f["tail_over_1s"] = sum(1 for s in tail if s.latency > SLOW_ANSWER)
    new, old = set(trial.new_pids), set(trial.old_pids)
    new_ends = [s.start + s.latency for s in trial.samples if s.pid in new]
    old_ends = [s.start + s.latency for s in trial.samples if s.pid in old]
    f["new_code_at"] = min(new_ends) - t0 if new_ends else None
    f["old_code_until"] = max(old_ends) - t0 if old_ends else None
    return f


def summarize(trials: list[dict[str, Any]]) -> dict[str, Any]:
    out = rm.summarize(trials)
    for key in ("new_code_at", "old_code_until", "tail_over_1s"):
        out[key] = spread([t[key] for t in trials])
    for stat in ("p50", "p99", "max"):
        out[f"tail_{stat}"] = spread([t["tail"][stat] for t in trials])
    out["long_fates"] = [
        None if t["in_flight"] is None else t["in_flight"]["status"] or t["in_flight"]["outcome"]
        for t in trials
    ]
    return out


def add_overheads(case: Case, per_row: dict[str, list[dict[str, Any]]]) -> float | None:
    """wsgi-drain's overhead beyond the unavoidable, per case (restart_methods' definitions).

    With no request in flight the unavoidable part of drain mode is one
    respawn, of rolling mode N respawns in series.  The respawn reference is
    this case's raw-SIGUSR1 rows, as in the reference case.
    """
    by_method: dict[str, list[dict[str, Any]]] = {}
    for row in case.rows:
        for f in per_row.get(row.key, []):
            if case.long is None and f["in_flight"] is None:
                f["in_flight"] = {"remaining_at_command": 0.0}
            by_method.setdefault(row.method, []).append(f)
    respawn = rm.add_overheads(by_method)
    for trials in per_row.values():
        for f in trials:
            if f["in_flight"] == {"remaining_at_command": 0.0}:
                f["in_flight"] = None
    return respawn


def run_case(
    case: Case,
    modwsgi: ModWsgi,
    reps: int,
    workdir: Path,
    img_dir: Path | None,
    log: Callable[[str], None],
    rows: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Every row of `case` (or those of its rows named in `rows`) `reps` times."""
    from bench import timeline  # matplotlib is imported only when drawing

    if rows is not None:
        case = dataclasses.replace(case, rows=tuple(r for r in case.rows if r.key in rows))
    per_row: dict[str, list[dict[str, Any]]] = {r.key: [] for r in case.rows}
    images: dict[str, str] = {}
    for rep in range(reps):
        for row in case.rows:
            log(f"[{modwsgi}] {case.name} rep {rep + 1}/{reps}: {row.key} ...")
            trial = run_trial(workdir / f"{case.name}-{row.key}-{rep}", modwsgi, case, row, rep)
            f = figures(trial)
            per_row[row.key].append(f)
            log(
                f"    failed={f['failed']}/{f['total']} "
                f"long={f['in_flight'] and f['in_flight']['status']} "
                f"replaced={f['wall_replaced']} tail_max={f['tail']['max']}"
                + (f" errors={f['errors']}" if f["errors"] else "")
            )
            if rep == 0 and img_dir is not None and modwsgi == "debian":
                path = img_dir / f"case-{case.name}-{row.key}.png"
                timeline.draw(trial, path, f"{case.title}: {row.label}")
                images[row.key] = str(path)
    respawn = add_overheads(case, per_row)
    return {
        "title": case.title,
        "respawn_reference": respawn,
        "rows": {
            r.key: {
                "label": r.label,
                "summary": summarize(per_row[r.key]),
                "trials": per_row[r.key],
            }
            for r in case.rows
        },
        "images": images,
    }


def run(
    cases: Sequence[str],
    modwsgis: Sequence[ModWsgi],
    reps: int,
    img_dir: Path | None = IMG_DIR,
    out_dir: Path = RESULTS_DIR,
    log: Callable[[str], None] = lambda line: None,
    rows: Sequence[str] | None = None,
) -> Path:
    """Every chosen case on every chosen build; writes and returns the result file.

    `rows` keeps only the rows (methods) of those keys, in every case: the
    suite's smoke run uses it.
    """
    result: dict[str, Any] = {"schema": "wsgi-drain-bench-cases/1", **environment(), "reps": reps}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="wsgi-drain-cases-") as tmp:
        for modwsgi in modwsgis:
            result.setdefault("builds", {})[modwsgi] = {
                name: run_case(CASES[name], modwsgi, reps, Path(tmp) / modwsgi, img_dir, log, rows)
                for name in cases
            }
    result["seconds"] = time.monotonic() - started
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = result["date"].replace(":", "").replace("+0000", "Z")
    path = out_dir / f"load-cases-{stamp}.json"
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return path


# -- the Markdown tables -----------------------------------------------------


def _med(summary: dict[str, Any], key: str) -> float | None:
    value = summary.get(key)
    return value.get("median") if isinstance(value, dict) else value


def markdown(result: dict[str, Any]) -> str:
    lines: list[str] = []
    for modwsgi, cases in result["builds"].items():
        for name, case in cases.items():
            lines += [
                f"#### {case['title']} ({modwsgi} mod_wsgi; `{name}`)",
                "",
                "| method | failed (by class) | long request | window p50 / p99 / max ms "
                "| after: p99 / max ms, >1 s | all replaced s | new code at s "
                "| old code until s | overhead s |",
                "|---|---|---|---|---|---|---|---|---|",
            ]
            for row in case["rows"].values():
                sm = row["summary"]
                classes = ", ".join(
                    f"{k} {_med(sm['failed_by_class'], k) or 0:g}"
                    for k in sm["failed_by_class"]
                    if _med(sm["failed_by_class"], k)
                )
                fates = ", ".join("–" if f is None else str(f) for f in sm["long_fates"])
                lines.append(
                    f"| {row['label']} | {_med(sm, 'failed') or 0:g}"
                    + (f" ({classes})" if classes else "")
                    + f" | {fates} | {ms(_med(sm, 'window_p50'))} / {ms(_med(sm, 'window_p99'))}"
                    f" / {ms(_med(sm, 'window_max'))} | {ms(_med(sm, 'tail_p99'))} / "
                    f"{ms(_med(sm, 'tail_max'))}, {_med(sm, 'tail_over_1s') or 0:g} | "
                    f"{secs(_med(sm, 'wall_replaced'))} | {secs(_med(sm, 'new_code_at'))} | "
                    f"{secs(_med(sm, 'old_code_until'))} | {secs(_med(sm, 'overhead'))} |"
                )
            lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    parser.add_argument(
        "--modwsgi", nargs="+", choices=["debian", "pypi"], default=["debian", "pypi"]
    )
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--no-images", action="store_true")
    parser.add_argument("--markdown", type=Path, help="print the tables of an earlier result file")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text())))
        return 0
    path = run(
        args.cases,
        args.modwsgi,
        args.reps,
        img_dir=None if args.no_images else IMG_DIR,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    result = json.loads(path.read_text())
    print(markdown(result))
    print(f"\nresult: {path} ({result['seconds']:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
