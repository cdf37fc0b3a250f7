"""Two groups of one host restarted as one run vs two runs one after the other, side by side.

    python -m bench.several_groups [--modwsgi debian|pypi] [--reps 3]

Each trial gets a fresh stack: two Apaches (a, b) behind HAProxy, each
serving two daemon groups (myapp at /, admin at /admin/, processes=3).  The
load loop runs through HAProxy on both groups' paths, and a 4 s request
pinned to host a is in flight when the command starts.  The two methods
alternate trial by trial, so machine noise hits both alike:

- "one run":  `wsgi-drain restart --group myapp --group admin`
- "two runs": `wsgi-drain restart --group myapp`, then `--group admin`

Measured: the commands' wall time, failed requests, the 4 s request's answer,
and how often and how long host a was out of rotation (HAProxy's state
sampled every 50 ms).  Writes bench/results/several-groups-DATE.json and
prints the Markdown table.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/several_groups.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from bench.common import RESULTS_DIR, num, secs, spread, stat_range
from lab import LoadLoop, ModWsgi, Stack, slow_request, two_hosts, wsgi_drain_command
from lab.fleet import Fleet, StateSampler

METHODS = {
    "one run": [["--group", "myapp", "--group", "admin"]],
    "two runs": [["--group", "myapp"], ["--group", "admin"]],
}
COMMAND_TIMEOUT = 120.0


def _args(stack: Stack, groups: list[str]) -> list[str]:
    health = {"myapp": "/health", "admin": "/admin/health"}
    named = [g for g in groups if g != "--group"]
    urls = (
        ["--health-url", f"{stack.a.url}{health[named[0]]}"]
        if len(named) == 1
        else [w for g in named for w in ("--health-url", f"{g}={stack.a.url}{health[g]}")]
    )
    return [
        *wsgi_drain_command(), "restart", *groups, *urls,
        "--apache-pidfile", str(stack.a.pid_file),
        "--haproxy", f"{stack.haproxy.admin_socket}:be_app/a",
        "--state-dir", str(stack.state_dir),
    ]  # fmt: skip


def _spans(sampler: StateSampler) -> tuple[int, float]:
    """How many times host a left rotation, and for how long in all (seconds)."""
    spans, out_since, total = 0, None, 0.0
    for t, states in sampler.samples:
        out = states["a"] != "ready"
        if out and out_since is None:
            spans, out_since = spans + 1, t
        elif not out and out_since is not None:
            total, out_since = total + (t - out_since), None
    if out_since is not None and sampler.samples:
        total += sampler.samples[-1][0] - out_since
    return spans, total


def trial(root: Path, modwsgi: ModWsgi, method: str) -> dict[str, Any]:
    """One fresh stack, one method under load with a 4 s request in flight."""
    with two_hosts(root, modwsgi, extra_groups=("admin",)) as stack:
        old = {g: set(stack.a.group_pids(g)) for g in ("myapp", "admin")}
        loads = [
            LoadLoop(stack.haproxy.url + path, max_requests=20000, max_seconds=120)
            for path in ("/", "/admin/")
        ]
        for load in loads:
            load.start()
        fleet = Fleet({"a": stack.a, "b": stack.b}, stack.haproxy, root)
        codes = []
        with StateSampler(fleet) as sampler:
            try:
                time.sleep(1.0)
                slow = slow_request(stack.haproxy.url + "/slow", 4)
                time.sleep(0.5)
                started = time.monotonic()
                for groups in METHODS[method]:
                    done = subprocess.run(
                        _args(stack, groups), capture_output=True, timeout=COMMAND_TIMEOUT
                    )
                    codes.append(done.returncode)
                elapsed = time.monotonic() - started
                time.sleep(0.5)
            finally:
                for load in loads:
                    load.stop()
        summaries = [load.summary() for load in loads]
        replaced = all(
            len(stack.a.group_pids(g)) == 3 and not set(stack.a.group_pids(g)) & old[g] for g in old
        )
        spans, out_for = _spans(sampler)
        answer = slow.result(timeout=60)
        return {
            "method": method,
            "exit_statuses": codes,
            "time": elapsed,
            "requests": sum(s.total for s in summaries),
            "failed": sum(s.failures for s in summaries),
            "slow_status": answer.status,
            "replaced": replaced,
            "out_spans": spans,
            "out_seconds": out_for,
        }


def run(modwsgi: ModWsgi = "debian", reps: int = 3, out_dir: Path = RESULTS_DIR) -> Path:
    """Alternate the methods `reps` times each; write and return the result file."""
    started = common.environment()
    trials = []
    for rep in range(reps):
        for method in METHODS:
            common.say(f"{method}, trial {rep + 1}/{reps} ...")
            with tempfile.TemporaryDirectory(prefix="wsgi-drain-bench-") as tmp:
                trials.append(trial(Path(tmp), modwsgi, method))
    summary = {
        method: {
            key: spread([t[key] for t in trials if t["method"] == method])
            for key in ("time", "failed", "out_spans", "out_seconds")
        }
        for method in METHODS
    }
    result = {"schema": "wsgi-drain-bench/1", **started, "modwsgi": modwsgi,
              "several_groups": {"trials": trials, "summary": summary}}  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = result["date"].replace(":", "").replace("+0000", "Z")
    path = out_dir / f"several-groups-{stamp}.json"
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return path


def tables(result: dict[str, Any]) -> str:
    data = result["several_groups"]
    lines = [
        "| two groups restarted as | time (s) | failed requests | the 4 s request "
        "| times out of rotation | out of rotation (s) |",
        "|---|---|---|---|---|---|",
    ]
    for method, stat in data["summary"].items():
        mine = [t for t in data["trials"] if t["method"] == method]
        slow = ", ".join(sorted({str(t["slow_status"]) for t in mine}))
        lines.append(
            f"| {method} | {stat_range(stat['time'])} | {stat_range(stat['failed'], num)} "
            f"| {slow} | {stat_range(stat['out_spans'], num)} "
            f"| {stat_range(stat['out_seconds'], secs)} |"
        )
    one, two = (data["summary"][m]["time"]["median"] for m in METHODS)
    if one and two:
        lines.append(f"\none run / two runs, median time: {one / two:.2f}")
    return common.tables(lines)


def main() -> None:
    args = common.parser(__doc__)
    args.add_argument("--reps", type=int, default=3)
    opts = args.parse_args()
    path = run(opts.modwsgi, opts.reps, opts.out)
    common.report(path, tables)


if __name__ == "__main__":
    main()
