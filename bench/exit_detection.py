"""How soon a process's death is noticed: wsgi-drain's pidfd wait against a polling loop.

Real processes, killed at a recorded time, seen by a non-parent -- as
wsgi-drain sees Apache's daemons.  A helper process forks the victims and
reaps each one the moment it dies (as the Apache parent does), so a polling
loop can see the pid vanish; the benchmark never waits on them itself.

- pidfd: `wsgi_drain.watch.wait_exits` on a pidfd, the tool's own code path;
- polling: ``while psutil.pid_exists(pid): time.sleep(0.1)``, the "sleep loop"
  of a hand-written restart script.

Each kill comes from a timer thread at a random moment 50-150 ms after the
waiter started, so the polling loop is caught at a random phase of its sleep,
as a real death would catch it.  The two methods alternate trial by trial.
"""

from __future__ import annotations

import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import psutil

from bench import common
from bench.common import percentile
from wsgi_drain import procfs
from wsgi_drain.deadline import Deadline
from wsgi_drain.discovery import DaemonProcess
from wsgi_drain.interrupts import Interrupts
from wsgi_drain.signals import Handle
from wsgi_drain.watch import wait_exits

POLL_INTERVAL = 0.1
WAIT_TIMEOUT = 5.0
VICTIM_LIFE = 120  # seconds: a victim nobody kills still ends on its own

# The helper: fork N victims that pause until killed (SIGALRM ends them after
# `life` seconds whatever happens), print their pids, reap them as they die.
# Its own alarm bounds it too.
_HELPER = r"""
import os, signal, sys
n, life = int(sys.argv[1]), int(sys.argv[2])
signal.alarm(life + 10)
pids = []
for _ in range(n):
    pid = os.fork()
    if pid == 0:
        signal.alarm(life)
        while True:
            signal.pause()
    pids.append(pid)
sys.stdout.write(" ".join(map(str, pids)) + "\n")
sys.stdout.flush()
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
"""


class Victims:
    """`count` paused processes whose parent is a helper we started; a context manager.

    Each is held by a pidfd opened while the helper still owns it, so a kill
    can never reach a reused pid.  On exit every victim still alive is killed
    through its pidfd and the helper is reaped (bounded).
    """

    def __init__(self, count: int) -> None:
        self.count = count
        self.helper: subprocess.Popen[str] | None = None
        self.handles: list[Handle] = []

    def __enter__(self) -> Victims:
        self.helper = subprocess.Popen(
            [sys.executable, "-c", _HELPER, str(self.count), str(VICTIM_LIFE)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.helper.stdout is not None
        line = self.helper.stdout.readline()  # bounded: the helper's alarm ends it
        for word in line.split():
            pid = int(word)
            fd = os.pidfd_open(pid)
            if procfs.parent_of(pid) != self.helper.pid:
                os.close(fd)
                continue
            proc = DaemonProcess(pid, psutil.Process(pid).create_time(), "victim")
            self.handles.append(Handle(proc=proc, fd=fd))
        if len(self.handles) != self.count:
            self.__exit__()
            raise RuntimeError(f"helper started {len(self.handles)} of {self.count} victims")
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self.handles:
            handle.send(signal.SIGKILL)
            handle.close()
        if self.helper is not None:
            try:
                self.helper.wait(10)
            except subprocess.TimeoutExpired:
                self.helper.kill()
                self.helper.wait(5)
            if self.helper.stdout is not None:
                self.helper.stdout.close()


def _kill_later(handle: Handle, delay: float, killed: list[float]) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        killed.append(time.monotonic())
        handle.send(signal.SIGKILL)

    thread = threading.Thread(target=run, name="bench-killer", daemon=True)
    thread.start()
    return thread


def detect_pidfd(handle: Handle, delay: float, interrupts: Interrupts) -> float:
    """Seconds from the kill until wait_exits reported the exit."""
    seen: list[float] = []
    killed: list[float] = []
    killer = _kill_later(handle, delay, killed)
    left = wait_exits([handle], Deadline(WAIT_TIMEOUT), interrupts, lambda h, t: seen.append(t))
    killer.join(WAIT_TIMEOUT)
    if left or not seen or not killed:
        raise RuntimeError(f"pid {handle.pid}: exit not seen within {WAIT_TIMEOUT} s")
    return seen[0] - killed[0]


def detect_polling(handle: Handle, delay: float) -> float:
    """Seconds from the kill until a pid_exists loop (100 ms sleeps) saw the pid gone."""
    killed: list[float] = []
    killer = _kill_later(handle, delay, killed)
    end = time.monotonic() + WAIT_TIMEOUT
    while psutil.pid_exists(handle.pid) and time.monotonic() < end:
        time.sleep(POLL_INTERVAL)
    seen = time.monotonic()
    killer.join(WAIT_TIMEOUT)
    if psutil.pid_exists(handle.pid) or not killed:
        raise RuntimeError(f"pid {handle.pid}: still there after {WAIT_TIMEOUT} s")
    return seen - killed[0]


def _stats(values: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "median": statistics.median(values),
        "p90": percentile(values, 0.9),
        "min": min(values),
        "max": max(values),
    }


def run(trials: int = 40, seed: int = 4) -> dict[str, Any]:
    """`trials` kills per method, alternating; medians and the polling/pidfd ratio.

    Must run in the main thread (Interrupts installs signal handlers).
    """
    rng = random.Random(seed)
    pidfd: list[float] = []
    polling: list[float] = []
    with Victims(2 * trials) as victims, Interrupts() as interrupts:
        for i, handle in enumerate(victims.handles):
            delay = rng.uniform(0.05, 0.15)
            if i % 2 == 0:
                pidfd.append(detect_pidfd(handle, delay, interrupts))
            else:
                polling.append(detect_polling(handle, delay))
    result: dict[str, Any] = {
        "trials_per_method": trials,
        "poll_interval": POLL_INTERVAL,
        "pidfd": _stats(pidfd),
        "polling": _stats(polling),
    }
    result["ratio_median"] = result["polling"]["median"] / max(result["pidfd"]["median"], 1e-9)
    return result


def markdown(ed: dict[str, Any]) -> list[str]:
    """This part's Markdown lines: the exit-detection table (pidfd against polling)."""
    lines: list[str] = []
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
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """This part alone (bench.run's options that concern it); writes its own result file."""
    args = common.parser(__doc__).parse_args(argv)
    started = common.environment()
    common.say("exit detection ...")
    path = common.write_result(started, {"exit_detection": run()}, args.modwsgi, args.out)
    common.report(path, lambda result: common.tables(markdown(result["exit_detection"])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
