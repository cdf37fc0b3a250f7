"""Discovery on a crowded host: the lab's group found among thousands of other processes.

Times, with no extra processes and then with `extra` idle ones (``sleep``
children of this process, started in batches):

- ``find_apache(pidfile=...)``: the instance from its pid file (the CLI's
  --apache-pidfile path);
- ``group_processes``: the group's members, proven by their socket;
- ``running_parents``: the host-wide scan `find_apache()` does when it is
  given neither a pid file nor a configuration.

Every extra process is ours, ends on its own after SLEEP_SECONDS, and is
killed and reaped by pid (Popen objects: a child we have not reaped cannot
have its pid reused) in a finally.
"""

from __future__ import annotations

import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import common
from bench.common import percentile
from lab import ApacheLab, ModWsgi
from wsgi_drain.discovery import find_apache, group_processes, running_parents

SLEEP_SECONDS = 300
BATCH = 250
SPAWN_TIMEOUT = 180.0  # spawning stops here, whatever count it reached


def _time(fn: Callable[[], object], repeat: int) -> dict[str, float]:
    fn()  # the first call fills caches (imports, the configuration parse) for both runs alike
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {
        "n": repeat,
        "median": statistics.median(times),
        "p90": percentile(times, 0.9),
        "min": min(times),
        "max": max(times),
    }


def _measure(lab: ApacheLab, repeat: int) -> dict[str, Any]:
    instance = find_apache(pidfile=lab.pid_file)
    group = instance.config.group(lab.group)
    found = group_processes(instance, group)
    return {
        "members_found": len(found.pids),
        "method": found.method,
        "host_processes": sum(1 for _ in Path("/proc").glob("[0-9]*")),
        "find_apache_pidfile": _time(lambda: find_apache(pidfile=lab.pid_file), repeat),
        "group_processes": _time(lambda: group_processes(instance, group), repeat),
        "running_parents_scan": _time(running_parents, max(3, repeat // 4)),
    }


def spawn(count: int, timeout: float = SPAWN_TIMEOUT) -> list[subprocess.Popen[bytes]]:
    """Up to `count` idle ``sleep`` children, in batches, within `timeout` seconds.

    Returns what was started even when it fails part way; the caller reaps.
    """
    started: list[subprocess.Popen[bytes]] = []
    end = time.monotonic() + timeout
    try:
        while len(started) < count and time.monotonic() < end:
            for _ in range(min(BATCH, count - len(started))):
                started.append(
                    subprocess.Popen(
                        ["sleep", str(SLEEP_SECONDS)],
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
            time.sleep(0.05)  # let the batch exec before the next fork burst
    except OSError:
        pass  # out of pids or memory: measure with what we have
    return started


def reap(children: Sequence[subprocess.Popen[bytes]]) -> int:
    """Kill and reap every child (by its pid, which stays ours until reaped); count of stuck."""
    for child in children:
        if child.poll() is None:
            child.kill()
    stuck = 0
    for child in children:
        try:
            child.wait(5)
        except subprocess.TimeoutExpired:
            stuck += 1
    return stuck


def run(extra: int = 5000, repeat: int = 40, modwsgi: ModWsgi = "debian") -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="wsgi-drain-bench-disc-") as tmp:
        lab = ApacheLab(Path(tmp) / "a", modwsgi=modwsgi)
        with lab:
            quiet = _measure(lab, repeat)
            children: list[subprocess.Popen[bytes]] = []
            try:
                started_at = time.monotonic()
                children = spawn(extra)
                spawn_seconds = time.monotonic() - started_at
                crowded = _measure(lab, repeat)
            finally:
                stuck = reap(children)
    ratios = {
        key: crowded[key]["median"] / max(quiet[key]["median"], 1e-9)
        for key in ("find_apache_pidfile", "group_processes", "running_parents_scan")
    }
    return {
        "extra_requested": extra,
        "extra_started": len(children),
        "spawn_seconds": spawn_seconds,
        "reaped_stuck": stuck,
        "quiet": quiet,
        "crowded": crowded,
        "ratio_median": ratios,
    }


def markdown(ds: dict[str, Any]) -> list[str]:
    """This part's Markdown lines: the discovery table, quiet host against crowded."""
    lines: list[str] = []
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
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """This part alone (bench.run's options that concern it); writes its own result file."""
    parser = common.parser(__doc__)
    parser.add_argument("--extra-processes", type=int, default=5000)
    args = parser.parse_args(argv)
    started = common.environment()
    common.say(f"discovery with {args.extra_processes} extra processes ...")
    section = run(args.extra_processes, modwsgi=args.modwsgi)
    path = common.write_result(started, {"discovery_scale": section}, args.modwsgi, args.out)
    common.report(path, lambda result: common.tables(markdown(result["discovery_scale"])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
