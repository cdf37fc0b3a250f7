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


def stays_out(records: Iterable[RouterRecord], group: str) -> str:
    """The tail of a failure's message after the signal: what became of the traffic.

    Only where this run diverted something is the backend said to stay out
    (and `undrain` advised); with nothing diverted (rolling mode, no router)
    the policy tells what serves what instead (serving.py), never `undrain`.
    """
    if not ours_diverted(records):
        return ""
    return (
        f"{_STAYS_OUT} so users do not reach it. Fix the app (its words are "
        f"in the report), then run `wsgi-drain undrain --group {group}`"
    )


_STAYS_OUT = "; the backend stays diverted"


def cause_only(message: str) -> str:
    """A failure's message without stays_out's tail (for a run that went on to roll back)."""
    return message.split(_STAYS_OUT, 1)[0]


def tells_new_code(signalled: bool, healthy: bool | None, diverted: bool, new_code: int) -> bool:
    """Must the run say that users reach new code that failed? (nothing diverted shields them)"""
    return signalled and healthy is False and not diverted and new_code > 0


def host_verdict(verdicts: Iterable[Verdict]) -> Verdict:
    """One verdict for a host whose groups were restarted in one run (restart/several.py).

    The host was diverted once for all of them, so it goes back only if every
    group may: any group signalled and not known healthy keeps the whole host
    out, even when the others are healthy.  Each group's `healthy` must be
    known (True/False) once it was signalled; None counts as not healthy.
    """
    each = list(verdicts)
    signalled = any(v.signalled for v in each)
    if not signalled:
        return Verdict()
    return Verdict(signalled=True, healthy=all(restores(v.signalled, v.healthy) for v in each))
