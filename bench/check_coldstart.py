"""`wsgi-drain check` cold start against `python -c pass`, measured in the same run.

Cron runs the check every minute on every host, so its start-up cost is paid
constantly.  The baseline is the interpreter's own start-up; the figure that
matters is the difference (goal: under 150 ms) and the ratio.  Runs the check
against a real lab Apache (Debian's mod_wsgi) so every import and every rule
runs, alternating the two commands so machine noise hits both alike.

    .venv/bin/python -m bench.check_coldstart [--runs 30] [--out bench/results]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lab import ApacheLab


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, capture_output=True, check=False, timeout=60)
    return time.perf_counter() - start


def measure(runs: int) -> dict[str, object]:
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
        base_times, check_times = [], []
        for _ in range(runs):
            base_times.append(timed(baseline))
            check_times.append(timed(check))
    base, chk = statistics.median(base_times), statistics.median(check_times)
    return {
        "benchmark": "check_coldstart",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "runs": runs,
        "baseline_median_s": round(base, 4),
        "check_median_s": round(chk, 4),
        "check_p90_s": round(sorted(check_times)[int(0.9 * (runs - 1))], 4),
        "extra_ms": round((chk - base) * 1000, 1),
        "ratio": round(chk / base, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
