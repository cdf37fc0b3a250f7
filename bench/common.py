"""What every benchmark shares: the stack, the machine's description, small statistics."""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import math
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
IMG_DIR = REPO / "docs" / "img"


def _output(args: Sequence[str]) -> str:
    """First line of a command's output, '' when it is missing or fails (bounded: 10 s)."""
    try:
        done = subprocess.run(list(args), capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    text = (done.stdout or done.stderr).strip()
    return text


def _first_line(args: Sequence[str]) -> str:
    text = _output(args)
    return text.splitlines()[0] if text else ""


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment() -> dict[str, Any]:
    """Machine, versions and date, stored in every result file so numbers keep their context."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    debian_wsgi = _first_line(["dpkg-query", "-W", "-f", "${Version}", "libapache2-mod-wsgi-py3"])
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "nproc": os.cpu_count(),
            "cpu": cpu,
            "free_h": _output(["free", "-h"]),
            "kernel": platform.release(),
            "loadavg_at_start": list(os.getloadavg()),
            "processes_at_start": sum(1 for p in os.listdir("/proc") if p.isdigit()),
        },
        "versions": {
            "apache": _first_line(["/usr/sbin/apache2", "-v"]),
            "mod_wsgi_debian": debian_wsgi or None,
            "mod_wsgi_pypi": _package_version("mod_wsgi"),
            "haproxy": _first_line(["haproxy", "-v"]),
            "python": platform.python_version(),
            "wsgi_drain": _package_version("wsgi-drain"),
            "psutil": _package_version("psutil"),
            "matplotlib": _package_version("matplotlib"),
        },
    }


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (the same rule as the lab's LoadSummary); 0.0 when empty."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def spread(values: Sequence[float | None]) -> dict[str, float | None]:
    """Median, min and max of the repetitions' values (None values are left out)."""
    present = [v for v in values if v is not None]
    if not present:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {
        "median": statistics.median(present),
        "min": min(present),
        "max": max(present),
        "n": len(present),
    }


def write_result(
    started: dict[str, Any], sections: dict[str, Any], modwsgi: str, out_dir: Path
) -> Path:
    """One result file: `started` (`environment()` as the run began) and `sections`.

    `sections` maps each part's name to its result.  The file is named
    bench-MODWSGI-DATE.json under `out_dir` (created); returns its path.
    """
    result: dict[str, Any] = {"schema": "wsgi-drain-bench/1", **started, **sections}
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = result["date"].replace(":", "").replace("+0000", "Z")
    path = out_dir / f"bench-{modwsgi}-{stamp}.json"
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return path


def parser(doc: str | None) -> argparse.ArgumentParser:
    """The options every benchmark command takes: --modwsgi, --out, --img-dir."""
    made = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    made.add_argument("--modwsgi", choices=("debian", "pypi"), default="debian")
    made.add_argument("--out", type=Path, default=RESULTS_DIR, help="result JSON directory")
    made.add_argument("--img-dir", type=Path, default=IMG_DIR, help="timeline PNG directory")
    return made


def report(path: Path, tables: Callable[[dict[str, Any]], str]) -> None:
    """Print the tables of the result file at `path`, then where it is."""
    print(tables(json.loads(path.read_text(encoding="utf-8"))))
    print(f"results: {path}")


# -- numbers in the Markdown tables --------------------------------------------


def ms(value: float | None) -> str:
    """Seconds as whole milliseconds; "–" for no value."""
    return "–" if value is None else f"{value * 1000:.0f}"


def secs(value: float | None) -> str:
    """Seconds with two decimals; "–" for no value."""
    return "–" if value is None else f"{value:.2f}"


def num(value: float | None) -> str:
    """A count or ratio as short as it goes; "–" for no value."""
    return "–" if value is None else f"{value:g}"


def stat_range(stat: dict[str, Any], fmt: Callable[[float | None], str] = secs) -> str:
    """A `spread()` as "median (min–max)", or the median alone when they agree."""
    if not stat or stat.get("median") is None:
        return "–"
    if stat["min"] == stat["max"]:
        return fmt(stat["median"])
    return f"{fmt(stat['median'])} ({fmt(stat['min'])}–{fmt(stat['max'])})"


def tables(lines: Sequence[str]) -> str:
    """Markdown lines as the text printed and shown in docs/benchmarks.md."""
    return "\n".join(lines) + "\n"


def say(line: str) -> None:
    """A progress line, on stderr so that stdout holds only the tables."""
    print(line, file=sys.stderr, flush=True)
