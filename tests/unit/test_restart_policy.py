"""The one failure policy: when traffic may go back to this host, and to which routers.

The rule is pure (wsgi_drain/restart/policy.py); the integration suites
(test_restart_policy.py, test_deploy_failures.py) drive it through real runs.
"""

from __future__ import annotations

import pytest

from wsgi_drain.outcome import RouterRecord
from wsgi_drain.restart import policy


def test_nothing_signalled_restores_whatever_the_health() -> None:
    # Before any signal the old code still serves: undo the divert.
    for healthy in (None, False, True):
        assert policy.restores(signalled=False, healthy=healthy)


def test_signalled_and_healthy_restores() -> None:
    assert policy.restores(signalled=True, healthy=True)


def test_signalled_and_unhealthy_leaves_the_backend_diverted() -> None:
    assert not policy.restores(signalled=True, healthy=False)


def test_signalled_and_not_known_healthy_leaves_the_backend_diverted() -> None:
    # Interrupted between the signal and the verdict, and not proven since.
    assert not policy.restores(signalled=True, healthy=None)


def test_left_diverted_journal_says_why() -> None:
    assert policy.left_diverted_note(signalled=True, healthy=False) == (
        "the app was not proven healthy after the restart"
    )
    assert policy.left_diverted_note(signalled=True, healthy=True) == "restoring a router failed"


@pytest.mark.parametrize("before", ["maint", "drain"])
def test_a_router_the_operator_took_out_is_never_touched(before: str) -> None:
    operators = RouterRecord(name="haproxy:lb/web1", before=before)
    ours = RouterRecord(name="haproxy:lb2/web1", before="ready", diverted=True)
    assert policy.ours_diverted([operators, ours]) == [ours]
    # Even marked diverted by mistake, a router not ours is not acted on.
    operators.diverted = True
    assert policy.ours_diverted([operators, ours]) == [ours]


def test_a_router_left_by_an_earlier_run_of_ours_is_taken_over() -> None:
    adopted = RouterRecord(name="haproxy:lb/web1", before="drain", adopted=True, diverted=True)
    assert policy.ours_diverted([adopted]) == [adopted]


def test_a_router_this_run_did_not_divert_is_not_put_back() -> None:
    # In rotation and never diverted (the run stopped before the divert).
    assert policy.ours_diverted([RouterRecord(name="nginx:up", before="ready")]) == []


def test_the_verdict_starts_unsignalled_and_unknown() -> None:
    verdict = policy.Verdict()
    assert (verdict.signalled, verdict.healthy) == (False, None)
    assert policy.restores(verdict.signalled, verdict.healthy)
