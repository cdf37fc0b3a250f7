"""A broken deploy on one server: failed requests with and without `--rollback`, side by side.

    python -m bench.broken_deploy [--modwsgi debian|pypi] [--reps 2] [--window 15]

One Apache (preloaded app, processes=3 threads=5), the reference load
straight at it (~70 req/s, no router), the new code raising at import, then
`wsgi-drain restart --mode rolling --health-url ...`, once without and once
with `--rollback` restoring the previous code, alternated on a fresh server
per trial so machine noise hits both alike.  Per trial: the failed requests
in the `window` seconds from the command's start (without a rollback they
go on until someone acts: the window is where the count stops), the
failures per second in the window's last 3 s (still failing or not), the
exit status, and the time from the command's start until the old code
serves again (the last failed request; null when failures go on to the end
of the window).  Writes bench/results/broken-deploy-<date>.json and prints
the Markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/broken_deploy.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS_DIR, environment
from lab import ApacheLab, LoadLoop, ModWsgi, Outcome, wsgi_drain_command

SCHEMA = "wsgi-drain-bench-broken-deploy/1"
VARIANTS = ("without --rollback", "with --rollback")
# The window's tail over which "still failing" is measured.
TAIL = 3.0


def trial(root: Path, modwsgi: ModWsgi, rollback: bool, window: float) -> dict[str, Any]:
    """One broken deploy on a fresh server, measured from the command's start."""
    with ApacheLab(root, modwsgi=modwsgi, preload=True) as lab:
        lab.wait_loaded(lab.daemon_pids())
        lab.set_broken(True)
        args = [
            *wsgi_drain_command(), "restart", "--group", "myapp", "--apache-pidfile",
            str(lab.pid_file), "--mode", "rolling", "--health-url", f"{lab.url}/health",
            "--state-dir", str(root / "state"), "--json", "--quiet",
        ]  # fmt: skip
        if rollback:
            args += ["--rollback", f"/bin/rm -f {lab.app_dir / 'broken'}"]
        load = LoadLoop(lab.url + "/", max_requests=100_000, max_seconds=window + 30)
        load.start()
        try:
            time.sleep(0.5)
            started = time.monotonic()
            done = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)
            ran = time.monotonic() - started
            time.sleep(max(0.0, started + window - time.monotonic()))
        finally:
            load.stop()
        samples = [s for s in load.results() if started <= s.start < started + window]
    failed = [s for s in samples if s.outcome != Outcome.OK]
    tail = [s for s in failed if s.start >= started + window - TAIL]
    last = max((s.start + s.latency for s in failed), default=None)
    still = bool(tail)
    return {
        "rollback": rollback,
        "exit_status": done.returncode,
        "run_seconds": round(ran, 3),
        "requests": len(samples),
        "failed": len(failed),
        "failing_per_s_at_end": round(len(tail) / TAIL, 2),
        "old_code_serves_after": None if still or last is None else round(last - started, 3),
        "no_failure": last is None,
    }


def run(modwsgi: ModWsgi, reps: int, window: float, log: bool = True) -> dict[str, Any]:
    trials: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="wsgi-drain-bench-broken-") as tmp:
        for rep in range(reps):
            for rollback in (False, True):
                result = trial(Path(tmp) / f"r{rep}-{int(rollback)}", modwsgi, rollback, window)
                if log:
                    print(f"  {VARIANTS[rollback]}: {result}", file=sys.stderr)
                trials.append(result)
    return {
        "schema": SCHEMA,
        "environment": environment(),
        "modwsgi": modwsgi,
        "window": window,
        "trials": trials,
    }


def markdown(result: dict[str, Any]) -> str:
    """The side-by-side table: one row per variant, every trial's figures."""
    rows = [
        f"Broken deploy on one server (rolling mode, ~70 req/s straight at Apache, "
        f"mod_wsgi {result['modwsgi']}); figures in the {result['window']:g} s from the "
        "command's start, one per trial",
        "",
        "| | exit | failed requests | failing/s at the end | old code serves again after |",
        "|---|---|---|---|---|",
    ]
    for rollback in (False, True):
        mine = [t for t in result["trials"] if t["rollback"] is rollback]
        after = ", ".join(
            "never (still failing)"
            if t["old_code_serves_after"] is None and not t["no_failure"]
            else ("0 s" if t["no_failure"] else f"{t['old_code_serves_after']:.2f} s")
            for t in mine
        )
        rows.append(
            f"| {VARIANTS[rollback]} | {', '.join(str(t['exit_status']) for t in mine)} | "
            f"{', '.join(str(t['failed']) for t in mine)} | "
            f"{', '.join(str(t['failing_per_s_at_end']) for t in mine)} | {after} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--modwsgi", choices=["debian", "pypi"], default="debian")
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--window", type=float, default=15.0)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    opts = parser.parse_args(argv)
    result = run(opts.modwsgi, opts.reps, opts.window)
    opts.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%dT%H%M%SZ", time.gmtime())
    path = opts.out / f"broken-deploy-{stamp}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))
    print(f"\nwritten: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
