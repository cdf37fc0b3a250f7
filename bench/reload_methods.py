"""Apache's own reload side by side: `apachectl graceful` vs `wsgi-drain reload`, in one run.

    python -m bench.reload_methods [--reps 3]

Each trial gets a fresh stack (lab/groups.py: two Apaches with two daemon
groups each, behind HAProxy), load through HAProxy on both groups' paths,
and a `slow`-second request pinned to host `a` in flight for `slow_lead`
seconds when the method starts on `a`.  A trial measures: how long the
method took (`command_seconds`: until it returned; `wall_replaced`: until
every daemon of both groups was new, from the method's start), the requests
that failed, the request in flight's outcome, and whether the Apache parent
kept its pid.  Trials alternate the methods, so the machine's drift is
shared.  Ratios are against `apachectl graceful` of the same run.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/reload_methods.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from bench.common import num, secs, spread, stat_range
from lab import LoadLoop, ModWsgi, Outcome, slow_request
from lab import wsgi_drain_command as drain_cmd
from lab.groups import SECOND, TwoGroupsLab, two_group_hosts

METHODS = ("graceful", "reload")
LABELS = {
    "graceful": "apachectl graceful",
    "reload": "wsgi-drain reload (HAProxy)",
}
REPLACE_TIMEOUT = 60.0
COMMAND_TIMEOUT = 120.0


@dataclass(frozen=True)
class Timing:
    steady: float = 2.0
    slow: float = 4.0
    slow_lead: float = 0.5
    tail: float = 1.5


def _toml(stack: Any, path: Path) -> Path:
    a = stack.a
    path.write_text(
        f'apache_pidfile = "{a.pid_file}"\nstate_dir = "{stack.state_dir}"\n'
        f'haproxy = ["{stack.haproxy.admin_socket}:be_app/a"]\n'
        f'[groups.myapp]\nhealth_url = "{a.url}/health"\n'
        f'[groups.{SECOND}]\nhealth_url = "{a.url}/{SECOND}/health"\n'
    )
    path.chmod(0o600)
    return path


def trial(method: str, modwsgi: ModWsgi, timing: Timing) -> dict[str, Any]:
    """One trial of `method` on a fresh stack; every figure of it (never raises for a lab error)."""
    import subprocess

    errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="wsgi-drain-bench-reload-") as tmp:
        root = Path(tmp)
        with two_group_hosts(root, modwsgi) as stack:
            a = stack.a
            assert isinstance(a, TwoGroupsLab)
            conf = _toml(stack, root / "wsgi-drain.toml")
            parent, old = a.parent_pid, a.all_daemon_pids()
            want = len(old)
            loads = [
                LoadLoop(stack.haproxy.url + path, max_requests=100000, max_seconds=120, clients=2)
                for path in ("/", f"/{SECOND}/")
            ]
            for load in loads:
                load.start()
            report: dict[str, Any] | None = None
            exit_status: int | None = None
            try:
                time.sleep(timing.steady)
                slow = slow_request(stack.haproxy.url + "/slow", timing.slow)
                time.sleep(timing.slow_lead)
                started = time.monotonic()
                if method == "graceful":
                    a.apachectl_graceful()
                    exit_status = 0
                else:
                    done = subprocess.run(
                        [*drain_cmd(), "reload", "--config", str(conf), "--json", "--quiet"],
                        capture_output=True,
                        text=True,
                        timeout=COMMAND_TIMEOUT,
                        check=False,
                    )
                    exit_status = done.returncode
                    try:
                        report = json.loads(done.stdout)
                    except ValueError:
                        errors.append(f"no JSON report: {done.stderr.strip()[-300:]}")
                command_seconds = time.monotonic() - started
                wall = _wait_replaced(a, old, want, started)
                if wall is None:
                    errors.append(f"not every daemon replaced within {REPLACE_TIMEOUT:g} s")
                in_flight = slow.result(timeout=timing.slow + 60)
                time.sleep(timing.tail)
            finally:
                for load in loads:
                    load.stop()
            summaries = [load.summary() for load in loads]
            counts = {o.value: sum(s.counts[o.value] for s in summaries) for o in Outcome}
            total = sum(s.total for s in summaries)
            return {
                "method": method,
                "exit_status": exit_status,
                "command_seconds": command_seconds,
                "wall_replaced": wall,
                "total": total,
                "counts": counts,
                "failed": total - counts[Outcome.OK.value],
                "in_flight": {
                    "status": in_flight.status,
                    "outcome": in_flight.outcome.value,
                    "latency": in_flight.latency,
                },
                "parent_kept": a.parent_pid == parent,
                "old_pids": sorted(old),
                "new_pids": sorted(a.all_daemon_pids()),
                "report": report,
                "errors": errors,
            }


def _wait_replaced(a: TwoGroupsLab, old: set[int], want: int, started: float) -> float | None:
    """Seconds from `started` until every daemon of both groups is new (None: not in time)."""
    deadline = time.monotonic() + REPLACE_TIMEOUT
    while time.monotonic() < deadline:
        now = a.all_daemon_pids()
        if len(now) >= want and not now & old:
            return time.monotonic() - started
        time.sleep(0.02)
    return None


def run(
    modwsgi: ModWsgi = "debian",
    reps: int = 3,
    *,
    timing: Timing | None = None,
    log: Callable[[str], None] = common.say,
) -> dict[str, Any]:
    """Every method `reps` times, alternating; the trials and a summary per method."""
    timing = timing or Timing()
    trials: dict[str, list[dict[str, Any]]] = {m: [] for m in METHODS}
    for rep in range(reps):
        for method in METHODS:
            log(f"reload methods: {method}, repetition {rep + 1}/{reps} ...")
            trials[method].append(trial(method, modwsgi, timing))
    methods = {}
    for method, done in trials.items():
        methods[method] = {
            "label": LABELS[method],
            "trials": done,
            "summary": {
                "reps": len(done),
                "command_seconds": spread([t["command_seconds"] for t in done]),
                "wall_replaced": spread([t["wall_replaced"] for t in done]),
                "failed": spread([t["failed"] for t in done]),
                "in_flight_ok": sum(1 for t in done if t["in_flight"]["status"] == 200),
                "parent_kept": all(t["parent_kept"] for t in done),
            },
        }
    base = methods["graceful"]["summary"]["wall_replaced"]["median"]
    for data in methods.values():
        wall = data["summary"]["wall_replaced"]["median"]
        data["summary"]["wall_vs_graceful"] = wall / base if wall and base else None
    return {"timing": timing.__dict__, "methods": methods}


def markdown(section: dict[str, Any]) -> list[str]:
    lines = [
        "### Apache's own reload: `apachectl graceful` vs `wsgi-drain reload`",
        "",
        "| method | failed requests | the 4 s request | all daemons new after (s) | "
        "command (s) | vs graceful | parent kept |",
        "|---|---|---|---|---|---|---|",
    ]
    for data in section["methods"].values():
        s = data["summary"]
        lines.append(
            f"| {data['label']} | {stat_range(s['failed'], num)} | "
            f"{s['in_flight_ok']}/{s['reps']} got 200 | {stat_range(s['wall_replaced'])} | "
            f"{stat_range(s['command_seconds'])} | {secs(s['wall_vs_graceful'])}x | "
            f"{'yes' if s['parent_kept'] else 'no'} |"
        )
    return [*lines, ""]


def main(argv: Sequence[str] | None = None) -> int:
    parser = common.parser(__doc__)
    parser.add_argument("--reps", type=int, default=3, help="repetitions per method")
    args = parser.parse_args(argv)
    started = common.environment()
    section = run(args.modwsgi, args.reps)
    path = common.write_result(started, {"reload_methods": section}, args.modwsgi, args.out)
    common.report(path, lambda result: common.tables(markdown(result["reload_methods"])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
