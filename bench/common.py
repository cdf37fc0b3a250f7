"""What every benchmark shares: the stack, the machine's description, small statistics."""

from __future__ import annotations

import datetime
import importlib.metadata
import math
import os
import platform
import statistics
import subprocess
from collections.abc import Sequence
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
