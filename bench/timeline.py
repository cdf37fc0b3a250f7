"""One restart drawn as a timeline (PNG, matplotlib's Agg backend: no display needed).

Top: answers per 100 ms, OK stacked under failures (coloured by class).
Bottom: each request's latency at its start time (log scale), failures as crosses.
Both: the command's start and end, each old daemon's exit (red dashed) and
each new daemon's appearance (green dotted), and the long request in flight.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import matplotlib

matplotlib.use("Agg")  # before pyplot: never try to open a display

import matplotlib.pyplot as plt

from lab import Outcome, Sample

BIN = 0.1
FAILURE_COLOURS = {
    Outcome.HTTP_ERROR: "tab:orange",
    Outcome.REFUSED: "tab:purple",
    Outcome.RESET: "tab:red",
    Outcome.CLOSED: "crimson",
    Outcome.TIMEOUT: "black",
    Outcome.OTHER: "tab:brown",
}


class Span(Protocol):
    """When the restart command ran (monotonic seconds)."""

    @property
    def start(self) -> float: ...
    @property
    def end(self) -> float: ...


class Drawn(Protocol):
    """What a timeline shows of one trial; bench.restart_methods.Trial has it all."""

    @property
    def command(self) -> Span: ...
    @property
    def load_start(self) -> float: ...
    @property
    def samples(self) -> Sequence[Sample]: ...
    @property
    def slow(self) -> Sample | None: ...
    @property
    def old_pids(self) -> Sequence[int]: ...
    @property
    def first_seen(self) -> Mapping[int, float]: ...
    @property
    def gone_at(self) -> Mapping[int, float]: ...


def draw(trial: Drawn, path: Path, title: str) -> Path:
    """Write the timeline of `trial` to `path` (directories created); returns `path`."""
    t0 = trial.command.start
    start = trial.load_start - t0
    end = max(s.start + s.latency for s in trial.samples) - t0 if trial.samples else 1.0
    nbins = max(1, int((end - start) / BIN) + 1)
    edges = [start + i * BIN for i in range(nbins + 1)]

    def binned(outcome: Outcome) -> list[int]:
        counts = [0] * nbins
        for s in trial.samples:
            if s.outcome is outcome:
                i = int((s.start + s.latency - t0 - start) / BIN)
                counts[min(max(i, 0), nbins - 1)] += 1
        return counts

    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(13, 6.5), sharex=True, gridspec_kw={"height_ratios": [1, 1.3]}
    )
    lefts = edges[:-1]
    base = binned(Outcome.OK)
    top.bar(lefts, base, width=BIN, align="edge", color="tab:blue", alpha=0.6, label="200 OK")
    for outcome, colour in FAILURE_COLOURS.items():
        counts = binned(outcome)
        if any(counts):
            top.bar(
                lefts,
                counts,
                width=BIN,
                align="edge",
                bottom=base,
                color=colour,
                label=f"{outcome.value} ({sum(counts)})",
            )
            base = [b + c for b, c in zip(base, counts, strict=True)]
    top.set_ylabel(f"answers per {int(BIN * 1000)} ms")
    top.set_ylim(0, max(max(base) + 3, 10))

    ok = [s for s in trial.samples if s.outcome is Outcome.OK]
    bad = [s for s in trial.samples if s.outcome is not Outcome.OK]
    bottom.scatter(
        [s.start - t0 for s in ok],
        [max(s.latency, 1e-4) * 1000 for s in ok],
        s=6,
        color="tab:blue",
        alpha=0.5,
        label="request (OK)",
    )
    if bad:
        bottom.scatter(
            [s.start - t0 for s in bad],
            [max(s.latency, 1e-4) * 1000 for s in bad],
            s=40,
            marker="x",
            color="crimson",
            label=f"failed request ({len(bad)})",
        )
    bottom.set_yscale("log")
    bottom.set_ylabel("latency (ms, log)")
    bottom.set_xlabel("seconds from the command's start")

    for ax in (top, bottom):
        ax.axvline(0, color="black", lw=1.5)
        if trial.command.end - t0 > 0.05:
            ax.axvline(trial.command.end - t0, color="black", lw=1.0, ls="--")
        for pid in trial.old_pids:
            if pid in trial.gone_at:
                ax.axvline(trial.gone_at[pid] - t0, color="tab:red", lw=1.0, ls="--")
        for pid, seen in trial.first_seen.items():
            if pid not in trial.old_pids:
                ax.axvline(seen - t0, color="tab:green", lw=1.0, ls=":")
        if trial.slow is not None:
            ax.axvspan(
                trial.slow.start - t0,
                trial.slow.start + trial.slow.latency - t0,
                color="orange",
                alpha=0.12,
            )
        ax.set_xlim(start, end)
        ax.grid(True, axis="y", alpha=0.3)

    # Legend entries for the marks, drawn once.
    slow_outcome = trial.slow.outcome.value if trial.slow is not None else "lost"
    bottom.plot([], [], color="black", lw=1.5, label="command starts")
    bottom.plot([], [], color="black", lw=1.0, ls="--", label="command returns")
    bottom.plot([], [], color="tab:red", lw=1.0, ls="--", label="old daemon exits")
    bottom.plot([], [], color="tab:green", lw=1.0, ls=":", label="new daemon appears")
    bottom.fill_between(
        [], [], color="orange", alpha=0.3, label=f"long request in flight ({slow_outcome})"
    )
    # Outside the axes: inside, a legend can hide the very requests that stalled.
    top.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    bottom.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
