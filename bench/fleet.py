"""A fleet rollout through Ansible against the same restarts run by hand, in the same run.

    python -m bench.fleet [--reps 2] [--modwsgi debian]

Four Apache + mod_wsgi hosts on loopback behind one HAProxy (lab.fleet), the
reference load (~70 req/s) through HAProxy all along.  Each repetition:

1. the four single-host restarts, one after the other, each `wsgi-drain
   restart` with exactly the arguments the role passes (the baseline);
2. the play: `ansible-playbook ansible/rolling-restart.yml` on the four hosts.

Orchestration overhead per host = (play wall time - sum of the four single
restarts) / 4, medians over the repetitions.  A 50 ms sampler records each
server's state in HAProxy; the first play's is drawn as a timeline.  Writes
bench/results/fleet-<date>.json and prints the Markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/fleet.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import IMG_DIR, REPO, RESULTS_DIR, environment
from lab import LoadLoop, ModWsgi, Outcome, slow_request
from lab.fleet import Fleet, StateSampler, fleet, host_args, run_playbook
from lab.stack import wsgi_drain_command

PLAYBOOK = REPO / "ansible" / "rolling-restart.yml"
TIMEOUTS = {"graceful-timeout": 15, "shutdown-timeout": 5}
# What the role adds to each host's arguments (roles/wsgi_drain/tasks/restart.yml).
ROLE_ARGS = ["--json", "--quiet", "--min-peers", "3", "--if-few-peers", "refuse",
             "--lb-up-timeout", "30"]  # fmt: skip
COLOURS = {"ready": "tab:green", "drain": "tab:orange", "down": "tab:red", "maint": "tab:gray"}


def _warm(f: Fleet) -> None:
    """Every daemon of every host loads the app (lazy loading), so each run starts alike."""
    for lab in f.hosts.values():
        pids = lab.daemon_pids()
        for request in [slow_request(lab.url + "/slow", 0.3) for _ in range(3 * lab.threads)]:
            request.result(timeout=60)
        lab.wait_loaded(pids)


def _singles(f: Fleet) -> list[float]:
    """Each host restarted by wsgi-drain directly, in turn; the wall time of each."""
    times = []
    for name in f.hosts:
        start = time.monotonic()
        done = subprocess.run(
            [*wsgi_drain_command(), "restart", "--group", "myapp", *ROLE_ARGS, *host_args(f, name)],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        times.append(time.monotonic() - start)
        if done.returncode != 0:
            raise RuntimeError(f"{name}: exit {done.returncode}: {done.stderr[-500:]}")
    return times


def _failed(samples: list[Any], start: float, end: float) -> int:
    return sum(1 for s in samples if start <= s.start <= end and s.outcome is not Outcome.OK)


def run(reps: int, modwsgi: ModWsgi, img_dir: Path | None, out_dir: Path) -> Path:
    result: dict[str, Any] = {"schema": "wsgi-drain-bench-fleet/1", **environment(), "reps": reps}
    trials: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="wsgi-drain-fleet-") as tmp:
        root = Path(tmp)
        with fleet(root / "fleet", 4, modwsgi, daemon_options=TIMEOUTS) as f:
            _warm(f)
            load = LoadLoop(f.haproxy.url + "/", max_requests=500_000, max_seconds=60 * 30)
            load.start()
            try:
                for rep in range(reps):
                    s0 = time.monotonic()
                    singles = _singles(f)
                    s1 = time.monotonic()
                    time.sleep(1.0)
                    with StateSampler(f) as sampler:
                        p0 = time.monotonic()
                        play = run_playbook(f, root, PLAYBOOK, wsgi_drain_command()[0], timeout=900)
                        p1 = time.monotonic()
                    if play.returncode != 0:
                        raise RuntimeError(f"the play failed: {play.stdout[-2000:]}")
                    trials.append(
                        {
                            "rep": rep,
                            "singles": singles,
                            "singles_sum": sum(singles),
                            "play": p1 - p0,
                            "overhead_per_host": (p1 - p0 - sum(singles)) / len(f.hosts),
                            "failed_singles": _failed(load.results(), s0, s1),
                            "failed_play": _failed(load.results(), p0, p1),
                            "most_out": sampler.most_out,
                            "states": [
                                (t - p0, st) for t, st in sampler.samples
                            ],  # the play's timeline
                        }
                    )
                    time.sleep(1.0)
            finally:
                load.stop()
    images = {}
    if img_dir is not None and trials:
        images["timeline"] = str(draw(trials[0], img_dir / "fleet-rollout.png"))
    result["trials"] = trials
    result["summary"] = {
        key: statistics.median(t[key] for t in trials)
        for key in ("singles_sum", "play", "overhead_per_host")
    }
    result["summary"]["failed"] = sum(t["failed_singles"] + t["failed_play"] for t in trials)
    result["summary"]["most_out"] = max(t["most_out"] for t in trials)
    result["images"] = images
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = result["date"].replace(":", "").replace("+0000", "Z")
    path = out_dir / f"fleet-{stamp}.json"
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return path


def draw(trial: dict[str, Any], path: Path) -> Path:
    """One row per server: its state in HAProxy over the play, every 50 ms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    states = trial["states"]
    names = sorted(states[0][1]) if states else []
    fig, ax = plt.subplots(figsize=(12, 2.6))
    for row, name in enumerate(reversed(names)):
        for (t, st), (t_next, _) in zip(states, states[1:]):
            ax.barh(row, t_next - t, left=t, color=COLOURS.get(st[name], "black"), height=0.6)
    ax.set_yticks(range(len(names)), list(reversed(names)))
    ax.set_xlabel("seconds since ansible-playbook started")
    ax.set_title(
        f"Fleet rollout, serial 1: {trial['play']:.1f} s for 4 hosts "
        f"(restarts alone {trial['singles_sum']:.1f} s); failed requests: {trial['failed_play']}; "
        f"most servers out at once: {trial['most_out']}"
    )
    handles = [Patch(color=c) for c in COLOURS.values()]
    ax.legend(handles, list(COLOURS), loc="upper right", ncol=4, fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def markdown(result: dict[str, Any]) -> str:
    s = result["summary"]
    lines = [
        "| | median of " + str(result["reps"]) + " |",
        "|---|---|",
        f"| four single-host restarts, one after the other | {s['singles_sum']:.2f} s |",
        f"| the play (`ansible-playbook`, serial 1) | {s['play']:.2f} s |",
        f"| orchestration overhead per host | {s['overhead_per_host']:.2f} s |",
        f"| failed requests (all runs) | {s['failed']} |",
        f"| most servers out of rotation at once | {s['most_out']} |",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--modwsgi", choices=["debian", "pypi"], default="debian")
    parser.add_argument("--no-images", action="store_true")
    args = parser.parse_args(argv)
    path = run(args.reps, args.modwsgi, None if args.no_images else IMG_DIR, RESULTS_DIR)
    print(markdown(json.loads(path.read_text())))
    print(f"\nresult: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
