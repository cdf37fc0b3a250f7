"""Restart methods side by side, on the real stack, under load, with a long request in flight.

Each trial gets a fresh stack (HAProxy in front of Apache hosts `a` and `b`,
mod_wsgi daemon mode, processes=3), so one method's leftovers (a daemon still
shutting down, HAProxy's health-check state) cannot pollute the next.  A trial:

1. warm every daemon up (mod_wsgi loads the app on a process's first request);
2. start the load loop through HAProxy and a pid watcher on `a` (every 20 ms);
3. after `steady` seconds, the command runs while a `slow`-second request
   pinned to `a` has been in flight for `slow_lead` seconds;
4. wait until every old daemon of `a` is gone and as many new ones serve,
   and for the command and the slow request to end; `tail` more seconds of load.

Times are time.monotonic() in this process; the pid watcher's "exit" is the
first poll that no longer sees the pid (so at most one interval late).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import common
from bench.common import IMG_DIR, REPO, ms, num, percentile, secs, spread, stat_range
from lab import ApacheLab, LoadLoop, ModWsgi, Outcome, Sample, Stack, slow_request
from lab import two_hosts as stack
from lab import wsgi_drain_command as drain_cmd
from lab.hooks import write_haproxy_hook
from lab.nginx import NginxLab
from wsgi_drain import procfs

METHODS = ("sigusr1", "graceful", "drain", "rolling", "nginx", "health-file", "command")
LABELS = {
    "sigusr1": "SIGUSR1 to the daemons",
    "graceful": "apachectl graceful",
    "drain": "wsgi-drain restart (HAProxy)",
    "rolling": "wsgi-drain restart --mode rolling",
    "nginx": "wsgi-drain restart (nginx router)",
    "health-file": "wsgi-drain restart (health-file, httpchk-only LB)",
    "command": "wsgi-drain restart (command router)",
}
# Rows that divert at a router, then restart every process at once.
DIVERTING = ("drain", "nginx", "health-file", "command")
# The health-file row: the LB (HAProxy with `option httpchk` only) takes a
# host out once /lb-health fails: 2 checks 200 ms apart, so 1.5 s is ample.
LB_DETECT = 1.5
HEALTH_FILE_SNIPPET = REPO / "apache-conf" / "health-file.conf"
# Methods whose load goes through nginx instead of HAProxy: its reloads close
# idle keep-alive client connections, so the load loop retries a GET once when
# a reused connection closes before any byte (counted as "retried", RFC 9112
# 9.3.1), and the figures report that count apart from failures.
NGINX_METHODS = ("nginx",)
WATCH_INTERVAL = 0.02
THROUGHPUT_WINDOW = 0.25
# Every wait below is bounded: a method that never replaces its processes ends
# the trial as "not replaced" instead of hanging the benchmark.
REPLACE_TIMEOUT = 60.0
COMMAND_TIMEOUT = 90.0


@dataclass(frozen=True)
class Timing:
    """How long each phase of a trial lasts (the test uses a shorter one)."""

    steady: float = 3.0
    slow: float = 4.0
    slow_lead: float = 0.5
    tail: float = 1.5
    # Apache's parent reaps and respawns daemons on a 1 s maintenance tick.  A
    # fresh stack run on a fixed schedule hits that tick at the same phase in
    # every trial, which biased respawn times by method (seen: 0.6 s after a
    # raw SIGUSR1, 0.1 s after a drain, every time).  A random extra 0-1 s of
    # steady state puts each command at a random phase of the tick.
    jitter: float = 1.0


# -- the pid watcher ---------------------------------------------------------


class PidWatcher:
    """Polls the daemons of one Apache lab every `interval` from a thread of our own.

    Records when each daemon pid was first seen and when it was first missing.
    Reads /proc directly (children, state, title) rather than lab.daemon_pids(),
    which builds psutil objects: at 50 polls a second on a 2-core machine the
    cheaper read keeps the watcher from competing with the servers it watches.
    Bounded by `max_seconds` even when stop() is never called.
    """

    def __init__(self, lab: ApacheLab, interval: float = WATCH_INTERVAL, max_seconds: float = 180):
        self.parent = lab.parent_pid
        self.title = lab.title
        self.interval = interval
        self.max_seconds = max_seconds
        self.first_seen: dict[int, float] = {}
        self.gone_at: dict[int, float] = {}
        self.polls = 0
        self._current: frozenset[int] = frozenset()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-pid-watch", daemon=True)

    def pids(self) -> list[int]:
        found = []
        for pid in procfs.children(self.parent):
            if procfs.state_of(pid) in (None, "Z"):
                continue
            if procfs.title(pid) == self.title:
                found.append(pid)
        return found

    def start(self) -> None:
        self._poll()
        self._thread.start()

    def _poll(self) -> None:
        pids = frozenset(self.pids())
        now = time.monotonic()
        with self._lock:
            for pid in pids - self._current:
                self.first_seen.setdefault(pid, now)
            for pid in self._current - pids:
                self.gone_at.setdefault(pid, now)
            self._current = pids
            self.polls += 1

    def _run(self) -> None:
        end = time.monotonic() + self.max_seconds
        while not self._stop.wait(self.interval) and time.monotonic() < end:
            self._poll()

    def current(self) -> frozenset[int]:
        with self._lock:
            return self._current

    def replaced(self, old: set[int], count: int) -> float | None:
        """When every old pid was gone and `count` new ones were up (None: not yet)."""
        with self._lock:
            if self._current & old or len(self._current - old) < count:
                return None
            gone = [self.gone_at[p] for p in old if p in self.gone_at]
            new = sorted(self.first_seen[p] for p in self._current - old)
            if len(gone) < len(old):
                return None
            return max(*gone, new[count - 1])

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)


# -- running one method ------------------------------------------------------


@dataclass
class CommandResult:
    start: float
    end: float
    returncode: int | None = None
    report: dict[str, Any] | None = None
    stderr: str = ""


def _sigusr1(lab: ApacheLab) -> None:
    # What an operator does by hand (`kill -USR1 <daemon pids>`): mod_wsgi's
    # graceful restart, with nothing telling the router.  Signalled through a
    # pidfd, and only pids our own lab started.
    for pid in lab.daemon_pids():
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            if procfs.parent_of(pid) == lab.parent_pid:
                signal.pidfd_send_signal(fd, signal.SIGUSR1)
        except ProcessLookupError:
            pass
        finally:
            os.close(fd)


@dataclass
class Extras:
    """What a router row needs beyond the stack: nginx, the health file, the hook program."""

    nginx: NginxLab | None = None
    marker: Path | None = None
    hook: Path | None = None


def _wsgi_drain(
    s: Stack, method: str, extras: Extras | None = None
) -> subprocess.CompletedProcess[str]:
    args = [
        *drain_cmd(),
        "restart",
        "--group",
        "myapp",
        "--apache-pidfile",
        str(s.a.pid_file),
        "--health-url",
        f"{s.a.url}/health",
        "--state-dir",
        str(s.state_dir),
        "--json",
        "--quiet",
    ]
    if method == "drain":
        args += ["--haproxy", f"{s.haproxy.admin_socket}:be_app/a"]
    elif method == "nginx":
        assert extras is not None and extras.nginx is not None
        nginx = extras.nginx
        args += [
            "--router",
            f"nginx:pid={nginx.pid_file}:{nginx.upstream_file}:{nginx.server_address('a')}",
        ]
    elif method == "health-file":
        assert extras is not None and extras.marker is not None
        args += ["--router", f"health-file:{extras.marker}", "--lb-detect", str(LB_DETECT)]
    elif method == "command":
        assert extras is not None and extras.hook is not None
        args += ["--router", f"command:{extras.hook} {s.haproxy.admin_socket} be_app/a"]
    else:
        # Rolling is the mode for a host without a router: one process at a
        # time, the other two serve.  No --haproxy, so HAProxy keeps sending
        # `a` its share and only mod_wsgi's own graceful path protects it.
        args += ["--mode", "rolling"]
    return subprocess.run(
        args, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
    )


def run_method(s: Stack, method: str, extras: Extras | None = None) -> CommandResult:
    """Run one restart method against host `a`; returns when its command returns."""
    start = time.monotonic()
    if method == "graceful":
        s.a.apachectl_graceful()
        return CommandResult(start, time.monotonic(), 0)
    if method == "sigusr1":
        _sigusr1(s.a)
        return CommandResult(start, time.monotonic(), 0)
    if method in ("drain", "rolling", "nginx", "health-file", "command"):
        done = _wsgi_drain(s, method, extras)
        end = time.monotonic()
        try:
            report = json.loads(done.stdout)
        except json.JSONDecodeError:
            report = None
        return CommandResult(start, end, done.returncode, report, done.stderr[-2000:])
    raise ValueError(f"unknown restart method {method!r}; choose from {METHODS}")


# -- one trial ---------------------------------------------------------------


@dataclass
class Trial:
    """Everything one trial saw, raw; `figures()` turns it into the reported numbers."""

    method: str
    rep: int
    processes: int
    load_start: float
    command: CommandResult
    samples: list[Sample]
    slow: Sample | None
    old_pids: list[int]
    new_pids: list[int]
    replaced_at: float | None
    first_seen: dict[int, float]
    gone_at: dict[int, float]
    watcher_polls: int
    errors: list[str] = field(default_factory=list)


def _warm(s: Stack, processes: int) -> None:
    # mod_wsgi loads the app on each process's first request; warm every
    # daemon of both hosts so the steady state is steady.  Bounded in count.
    for lab in (s.a, s.b):
        load = LoadLoop(lab.url + "/", max_requests=20 * processes, max_seconds=5, pause=0.0)
        load.start()
        load.wait(10)


def _health_file_config(marker: Path) -> str:
    """apache-conf/health-file.conf for `marker`, with mod_rewrite loaded."""
    rules = HEALTH_FILE_SNIPPET.read_text().replace(
        "/run/wsgi-drain-health/myapp.down", str(marker)
    )
    return f'LoadModule rewrite_module "/usr/lib/apache2/modules/mod_rewrite.so"\n{rules}'


def run_trial(root: Path, modwsgi: ModWsgi, method: str, rep: int, timing: Timing) -> Trial:
    processes = 3
    with contextlib.ExitStack() as more:
        extras = Extras()
        options: dict[str, Any] = {}
        if method == "health-file":
            # Apache's workers stat the file: a directory they can traverse.
            where = Path(tempfile.mkdtemp(prefix="wsgi-drain-health-", dir="/tmp"))
            where.chmod(0o755)
            more.callback(shutil.rmtree, where, ignore_errors=True)
            extras.marker = where / "a.down"
            options = {
                "extra_config": {
                    "a": _health_file_config(extras.marker),
                    "b": _health_file_config(where / "b.down"),
                },
                "check_path": "/lb-health",
            }
        s = more.enter_context(stack(root, modwsgi, processes=processes, **options))
        _warm(s, processes)
        front = s.haproxy.url
        nginx = None
        if method in NGINX_METHODS:
            nginx = NginxLab(
                root / "nginx", [("a", "127.0.0.1", s.a.port), ("b", "127.0.0.1", s.b.port)]
            )
            more.callback(nginx.stop)
            nginx.start()
            front = nginx.url
            extras.nginx = nginx
        if method == "command":
            extras.hook = write_haproxy_hook(root / "lb-hook")
        old = sorted(s.a.daemon_pids())
        watcher = PidWatcher(s.a)
        budget = timing.steady + timing.slow + REPLACE_TIMEOUT + COMMAND_TIMEOUT + timing.tail
        load = LoadLoop(
            front + "/",
            max_requests=200_000,
            max_seconds=budget,
            retry_reused_close=nginx is not None,
        )
        errors: list[str] = []
        slow: Future[Sample] | None = None
        watcher.start()
        load_start = time.monotonic()
        load.start()
        try:
            offset = random.Random(f"{method}-{rep}").uniform(0.0, timing.jitter)
            time.sleep(timing.steady + offset - timing.slow_lead)
            slow = slow_request(front + "/slow", timing.slow)
            time.sleep(timing.slow_lead)
            command = run_method(s, method, extras)
            if command.returncode not in (0, None):
                errors.append(f"exit {command.returncode}: {command.stderr.strip()}")
            replaced_at = _wait_replaced(watcher, set(old), processes, REPLACE_TIMEOUT)
            if replaced_at is None:
                errors.append(f"old processes not all replaced within {REPLACE_TIMEOUT} s")
            slow_sample = _result(slow, timing.slow + 35.0, errors)
            time.sleep(timing.tail)
        finally:
            load.stop()
            watcher.stop()
        return Trial(
            method=method,
            rep=rep,
            processes=processes,
            load_start=load_start,
            command=command,
            samples=load.results(),
            slow=slow_sample,
            old_pids=old,
            new_pids=sorted(watcher.current() - set(old)),
            replaced_at=replaced_at,
            first_seen=dict(watcher.first_seen),
            gone_at=dict(watcher.gone_at),
            watcher_polls=watcher.polls,
            errors=errors,
        )


def _wait_replaced(watcher: PidWatcher, old: set[int], count: int, timeout: float) -> float | None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        at = watcher.replaced(old, count)
        if at is not None:
            return at
        time.sleep(WATCH_INTERVAL)
    return None


def _result(future: Future[Sample], timeout: float, errors: list[str]) -> Sample | None:
    try:
        return future.result(timeout=timeout)
    except Exception as err:  # a lost future is a finding, not a crash of the benchmark
        errors.append(f"slow request: {err!r}")
        return None


# -- figures -----------------------------------------------------------------


def _ends(samples: Sequence[Sample]) -> list[float]:
    return [s.start + s.latency for s in samples]


def lowest_throughput(samples: Sequence[Sample], start: float, end: float) -> float | None:
    """Fewest OK answers completed in any 250 ms window inside [start, end], per second.

    Windows slide in 10 ms steps.  None when [start, end] is shorter than a window.
    """
    if end - start < THROUGHPUT_WINDOW:
        end = start + THROUGHPUT_WINDOW  # a restart shorter than a window: judge one window
    done = sorted(s.start + s.latency for s in samples if s.outcome is Outcome.OK)
    lowest: int | None = None
    t = start
    steps = 0
    while t + THROUGHPUT_WINDOW <= end + 1e-9 and steps < 100_000:
        count = sum(1 for d in done if t <= d < t + THROUGHPUT_WINDOW)
        lowest = count if lowest is None else min(lowest, count)
        t += 0.01
        steps += 1
    return None if lowest is None else lowest / THROUGHPUT_WINDOW


def _latency(samples: Sequence[Sample]) -> dict[str, float | int | None]:
    values = [s.latency for s in samples]
    if not values:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    return {
        "n": len(values),
        "p50": percentile(values, 0.5),
        "p99": percentile(values, 0.99),
        "max": max(values),
    }


def _pairs(trial: Trial) -> list[tuple[int, float, int, float]]:
    """(old pid, exit, new pid, appeared) pairs: the k-th exit with the k-th appearance.

    The Apache parent spawns a replacement only after it reaped a daemon, so
    in time order the k-th new process replaces the k-th one that left.
    """
    exits = sorted((trial.gone_at[p], p) for p in trial.old_pids if p in trial.gone_at)
    new = sorted((t, p) for p, t in trial.first_seen.items() if p not in trial.old_pids)
    return [(op, ot, np_, nt) for (ot, op), (nt, np_) in zip(exits, new, strict=False)]


def figures(trial: Trial) -> dict[str, Any]:
    """The reported numbers of one trial; times in seconds, relative to command start."""
    t0 = trial.command.start
    done_at = max(trial.replaced_at or trial.command.end, trial.command.end)
    counts = {o.value: 0 for o in Outcome}
    for s in trial.samples:
        counts[s.outcome.value] += 1
    steady = [s for s in trial.samples if trial.load_start + 0.2 <= s.start < t0]
    window = [s for s in trial.samples if t0 <= s.start <= done_at]
    window_failures = {o.value: 0 for o in Outcome}
    for s in window:
        window_failures[s.outcome.value] += 1
    slow = trial.slow
    slow_end = None if slow is None else slow.start + slow.latency
    pairs = _pairs(trial)
    return {
        "method": trial.method,
        "rep": trial.rep,
        "total": len(trial.samples),
        "counts": counts,
        "failed": len(trial.samples) - counts[Outcome.OK.value] - counts[Outcome.RETRIED.value],
        "failed_in_window": len(window)
        - window_failures[Outcome.OK.value]
        - window_failures[Outcome.RETRIED.value],
        # Closed by a front-end reload on a reused keep-alive connection, then
        # answered on one retry (nginx methods only).
        "reload_closed_retried": counts[Outcome.RETRIED.value],
        "in_flight": None
        if slow is None
        else {
            "outcome": slow.outcome.value,
            "status": slow.status,
            "pid": slow.pid,
            "latency": slow.latency,
            "remaining_at_command": None if slow_end is None else slow_end - t0,
        },
        "steady": _latency(steady),
        "window": _latency(window),
        "window_seconds": done_at - t0,
        "steady_throughput": len([s for s in steady if s.outcome is Outcome.OK])
        / max(t0 - trial.load_start - 0.2, 1e-9),
        "lowest_throughput_250ms": lowest_throughput(trial.samples, t0, done_at),
        "wall_replaced": None if trial.replaced_at is None else trial.replaced_at - t0,
        "command_seconds": trial.command.end - t0,
        "command_exit": trial.command.returncode,
        "respawn_gaps": [nt - ot for _op, ot, _np, nt in pairs],
        "old_pids": trial.old_pids,
        "new_pids": trial.new_pids,
        "events": {
            "exits": {str(p): trial.gone_at[p] - t0 for p in trial.old_pids if p in trial.gone_at},
            "appeared": {
                str(p): t - t0 for p, t in trial.first_seen.items() if p not in trial.old_pids
            },
        },
        "watcher_polls": trial.watcher_polls,
        "report": _report_digest(trial.command.report),
        "errors": trial.errors,
    }


def _report_digest(report: dict[str, Any] | None) -> dict[str, Any] | None:
    """The parts of wsgi-drain's JSON report that explain where its time went."""
    if report is None:
        return None
    return {
        "verdict": report.get("verdict"),
        "mode": report.get("mode"),
        "duration": report.get("duration"),
        "phases": {p["name"]: p["duration"] for p in report.get("phases", [])},
        "processes": [
            {k: p.get(k) for k in ("old_pid", "new_pid", "ending", "exited_after")}
            for p in report.get("processes", [])
        ],
        "warnings": report.get("warnings", []),
    }


def add_overheads(per_method: dict[str, list[dict[str, Any]]], processes: int = 3) -> float | None:
    """Fill in wsgi-drain's overhead beyond the unavoidable; returns the respawn reference.

    The respawn reference is the median, over every process of this run's
    raw-SIGUSR1 trials, of the time from a daemon's exit to its replacement's
    appearance: Apache's own part, which no tool can shorten.
    drain (and every router row: nginx, command): unavoidable = R + r, R the
    in-flight request's remaining time at the command's start, r the respawn:
    the router drains while R runs out, then every process restarts at once.
    health-file: max(R, D) + r, D the --lb-detect wait (the load balancer
    notices the failing health URL only after its checks).
    rolling: unavoidable = max(R, (N - 1) r) + r: one process at a time, so
    the N respawns run in series, but the idle processes can go first while the
    busy one finishes its request.
    `reaction` is the part the tool adds on its own: from the in-flight
    request's end until the last old process has exited (None for rolling,
    whose order of restarts makes it meaningless).
    """
    gaps = [g for f in per_method.get("sigusr1", []) for g in f["respawn_gaps"]]
    respawn = statistics.median(gaps) if gaps else None
    for method, trials in per_method.items():
        for f in trials:
            f["overhead"] = f["unavoidable"] = f["reaction"] = None
            if method not in DIVERTING and method != "rolling":
                continue
            inflight = f["in_flight"]
            remaining = inflight["remaining_at_command"] if inflight else None
            exits = list(f["events"]["exits"].values())
            if method in DIVERTING and remaining is not None and exits:
                f["reaction"] = max(exits) - remaining
            if remaining is None or f["wall_replaced"] is None or respawn is None:
                continue
            remaining = max(remaining, 0.0)
            if method == "health-file":
                # The LB must notice the failing health URL first: LB_DETECT.
                f["unavoidable"] = max(remaining, LB_DETECT) + respawn
            elif method in DIVERTING:
                f["unavoidable"] = remaining + respawn
            else:
                f["unavoidable"] = max(remaining, (processes - 1) * respawn) + respawn
            f["overhead"] = f["wall_replaced"] - f["unavoidable"]
    return respawn


def summarize(trials: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and spread over the repetitions of one method."""

    def pick(*path: str) -> list[float | None]:
        values: list[float | None] = []
        for t in trials:
            value: Any = t
            for key in path:
                value = None if value is None else value.get(key)
            values.append(value)
        return values

    outcomes = [o.value for o in Outcome]
    return {
        "reps": len(trials),
        "total": spread(pick("total")),
        "failed": spread(pick("failed")),
        "failed_by_class": {
            o: spread(pick("counts", o)) for o in outcomes if o not in ("ok", "retried")
        },
        "reload_closed_retried": spread(pick("reload_closed_retried")),
        "in_flight_ok": sum(
            1 for t in trials if t["in_flight"] and t["in_flight"]["outcome"] == "ok"
        ),
        "steady_p50": spread(pick("steady", "p50")),
        "steady_p99": spread(pick("steady", "p99")),
        "steady_max": spread(pick("steady", "max")),
        "window_p50": spread(pick("window", "p50")),
        "window_p99": spread(pick("window", "p99")),
        "window_max": spread(pick("window", "max")),
        "steady_throughput": spread(pick("steady_throughput")),
        "lowest_throughput_250ms": spread(pick("lowest_throughput_250ms")),
        "wall_replaced": spread(pick("wall_replaced")),
        "command_seconds": spread(pick("command_seconds")),
        "respawn_gap": spread([g for t in trials for g in t["respawn_gaps"]]),
        "reaction": spread(pick("reaction")),
        "overhead": spread(pick("overhead")),
        "unavoidable": spread(pick("unavoidable")),
    }


# -- the whole comparison ----------------------------------------------------


def run(
    modwsgi: ModWsgi,
    reps: int,
    methods: Sequence[str] = METHODS,
    timing: Timing | None = None,
    img_dir: Path | None = IMG_DIR,
    workdir: Path | None = None,
    log: Callable[[str], None] = lambda line: None,
) -> dict[str, Any]:
    """Every method `reps` times (interleaved: rep 1 of each, then rep 2, ...).

    Interleaving spreads slow drifts of the machine over every method alike.
    The first repetition's trials are drawn as timelines into `img_dir`.
    """
    from bench import timeline  # matplotlib is imported only when drawing

    timing = timing or Timing()
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {METHODS}")
    # Raw SIGUSR1 first in each round: its respawn time is the reference.
    ordered = sorted(methods, key=METHODS.index)
    per_method: dict[str, list[dict[str, Any]]] = {m: [] for m in ordered}
    images: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="wsgi-drain-bench-", dir=workdir) as tmp:
        for rep in range(reps):
            for method in ordered:
                log(f"[{modwsgi}] rep {rep + 1}/{reps}: {method} ...")
                trial = run_trial(Path(tmp) / f"{method}-{rep}", modwsgi, method, rep, timing)
                f = figures(trial)
                per_method[method].append(f)
                log(
                    f"    failed={f['failed']}/{f['total']} {f['counts']} "
                    f"in-flight={f['in_flight'] and f['in_flight']['outcome']} "
                    f"wall={f['wall_replaced']} cmd={f['command_seconds']:.3f}"
                    + (f" errors={f['errors']}" if f["errors"] else "")
                )
                if rep == 0 and img_dir is not None:
                    path = img_dir / f"restart-{method}-{modwsgi}.png"
                    timeline.draw(trial, path, f"{LABELS[method]} ({modwsgi} mod_wsgi)")
                    images[method] = str(path)
    respawn = add_overheads(per_method)
    return {
        "modwsgi": modwsgi,
        "reps": reps,
        "timing": timing.__dict__,
        "respawn_reference": respawn,
        "methods": {
            m: {"label": LABELS[m], "summary": summarize(t), "trials": t}
            for m, t in per_method.items()
        },
        "images": images,
    }


def markdown(rm: dict[str, Any]) -> list[str]:
    """This part's Markdown lines: the methods' table, the respawn reference, drain's reaction."""
    lines: list[str] = []
    lines += [
        f"Restart methods, {rm['modwsgi']} mod_wsgi, {rm['reps']} repetitions; median (min–max).",
        "",
        "| method | failed / total | failed by class | 4 s request | "
        "p50 / p99 / max ms, steady | p50 / p99 / max ms, restart | "
        "lowest req/s in 250 ms (steady) | all replaced, s | overhead, s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for data in rm["methods"].values():
        s = data["summary"]
        classes = ", ".join(
            f"{name} {stat_range(stat, num)}"
            for name, stat in s["failed_by_class"].items()
            if stat["max"]
        )
        lines.append(
            f"| {data['label']} "
            f"| {stat_range(s['failed'], num)} / {stat_range(s['total'], num)} "
            f"| {classes or 'none'} "
            f"| {s['in_flight_ok']}/{s['reps']} ok "
            f"| {ms(s['steady_p50']['median'])} / {ms(s['steady_p99']['median'])} / "
            f"{ms(s['steady_max']['median'])} "
            f"| {ms(s['window_p50']['median'])} / {ms(s['window_p99']['median'])} / "
            f"{ms(s['window_max']['median'])} "
            f"| {stat_range(s['lowest_throughput_250ms'], num)} "
            f"({s['steady_throughput']['median']:.0f}) "
            f"| {stat_range(s['wall_replaced'])} "
            f"| {stat_range(s['overhead'])} |"
        )
    respawn = rm.get("respawn_reference")
    lines += [
        "",
        f"Respawn reference (median exit → replacement, raw SIGUSR1 trials): {secs(respawn)} s.",
    ]
    drain = rm["methods"].get("drain")
    if drain:
        lines.append(
            "wsgi-drain drain, in-flight request's end → last old process exited: "
            f"{stat_range(drain['summary']['reaction'])} s."
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """This part alone (bench.run's options that concern it); writes its own result file."""
    parser = common.parser(__doc__)
    parser.add_argument("--reps", type=int, default=3, help="repetitions per method")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=METHODS)
    args = parser.parse_args(argv)
    started = common.environment()
    section = run(args.modwsgi, args.reps, args.methods, img_dir=args.img_dir, log=common.say)
    path = common.write_result(started, {"restart_methods": section}, args.modwsgi, args.out)
    common.report(path, lambda result: common.tables(markdown(result["restart_methods"])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
