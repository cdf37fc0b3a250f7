"""The one failure policy, as a pure rule (DESIGN.md "Failure policy").

Traffic goes back to this host only when that cannot send users to a broken
app: nothing was signalled (the old code still serves, untouched), or the new
code is known healthy.  Signalled and not known healthy (it failed, or the
run stopped before the verdict and it could not be proven since) leaves the
backend diverted, keeps the journal so `status` shows it and `undrain`
repairs it, and says so.  A router the operator had taken out of rotation
before the run (not "ready", not left by an earlier run of ours) is never
touched, whatever the verdict.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from wsgi_drain.outcome import RouterRecord


@dataclass
class Verdict:
    """What the run knows about the new code.

    `signalled` becomes True with the first signal sent (from then on the old
    code may be gone); `healthy` is None until a phase knows (verify passed,
    a crash loop, a failed probe).
    """

    signalled: bool = False
    healthy: bool | None = None


def restores(signalled: bool, healthy: bool | None) -> bool:
    """May what this run diverted go back? Only if nothing was signalled, or it is healthy."""
    return not signalled or healthy is True


def ours_diverted(records: Iterable[RouterRecord]) -> list[RouterRecord]:
    """The routers the policy acts on: out of rotation by this run (or taken over from ours)."""
    return [rec for rec in records if rec.diverted and rec.ours]


def left_diverted_note(signalled: bool, healthy: bool | None) -> str:
    """The journal's word for a backend left out of rotation.

    Where the rule says restore (nothing signalled, or healthy), being left
    out means a restore command failed; otherwise the app was not proven.
    """
    if restores(signalled, healthy):
        return "restoring a router failed"
    return "the app was not proven healthy after the restart"
