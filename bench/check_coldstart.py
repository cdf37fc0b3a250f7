"""`wsgi-drain check` cold start against `python -c pass`, measured in the same run.

Cron runs the check every minute on every host, many groups each, so its
start-up cost is paid constantly.  The baseline is the interpreter's own
start-up (the same interpreter, its site-packages, its .pth files); the figure
that matters is the difference (goal, issue 22: at most 60 ms) and the ratio.
It runs the check against a real lab Apache (Debian's mod_wsgi) with a health
URL, so every import and every rule of a healthy run runs, alternating the two
commands (A B A B ...) so that the machine's drift hits both alike, and quotes
medians: of each command's wall and CPU time (user + sys, the kernel's own
accounting of the finished child, `os.wait4`), and of the ratio pair by pair.

The package's modules are byte-compiled first, as `pip install` does: a
checkout run with PYTHONDONTWRITEBYTECODE would otherwise compile every
module from source on every run, which no installed copy does.

    .venv/bin/python -m bench.check_coldstart [--runs 30] [--out bench/results]
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import wsgi_drain
from lab import ApacheLab

GOAL_MS = 60.0


def timed(argv: list[str]) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of the child, its exit status) for one run of `argv`."""
    start = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _pid, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_utime + usage.ru_stime, child.returncode


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median": round(statistics.median(ordered), 4),
        "min": round(ordered[0], 4),
        "max": round(ordered[-1], 4),
        "p90": round(ordered[int(0.9 * (len(ordered) - 1))], 4),
    }


def measure(runs: int) -> dict[str, object]:
    compileall.compile_dir(Path(wsgi_drain.__file__).parent, quiet=1)
    command = str(Path(sys.executable).parent / "wsgi-drain")
    with (
        tempfile.TemporaryDirectory(prefix="wsgi-drain-bench-") as tmp,
        ApacheLab(
            Path(tmp) / "a", daemon_options={"graceful-timeout": 15, "shutdown-timeout": 5}
        ) as lab,
    ):
        check = [
            command, "check", "--group", "myapp", "--apache-pidfile", str(lab.pid_file),
            "--health-url", f"{lab.url}/health", "--state-dir", str(Path(tmp) / "state"),
        ]  # fmt: skip
        baseline = [sys.executable, "-c", "pass"]
        timed(check)  # warm the page cache for both
        timed(baseline)
        base_wall, base_cpu, check_wall, check_cpu, codes = [], [], [], [], []
        for _ in range(runs):
            wall, cpu, _code = timed(baseline)
            base_wall.append(wall)
            base_cpu.append(cpu)
            wall, cpu, code = timed(check)
            check_wall.append(wall)
            check_cpu.append(cpu)
            codes.append(code)
    extra_wall = [c - b for b, c in zip(base_wall, check_wall)]
    extra_cpu = [c - b for b, c in zip(base_cpu, check_cpu)]
    return {
        "benchmark": "check_coldstart",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "loadavg_at_start": list(os.getloadavg()),
        "runs": runs,
        "check_exit_statuses": sorted(set(codes)),
        "baseline_wall_s": _summary(base_wall),
        "check_wall_s": _summary(check_wall),
        "baseline_cpu_s": _summary(base_cpu),
        "check_cpu_s": _summary(check_cpu),
        "extra_wall_ms_median": round(statistics.median(extra_wall) * 1000, 1),
        "extra_cpu_ms_median": round(statistics.median(extra_cpu) * 1000, 1),
        "ratio_wall_median": round(
            statistics.median(c / b for b, c in zip(base_wall, check_wall)), 2
        ),
        "ratio_cpu_median": round(
            statistics.median(c / b for b, c in zip(base_cpu, check_cpu) if b > 0), 2
        ),
        "goal_extra_ms": GOAL_MS,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    result = measure(args.runs)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"check_coldstart-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
