"""Restore, and the journal the failure policy keeps: apply policy.py's rule, then end the run.

The journal is written before the first divert (so a run killed outright
can be shown by `status` and repaired by `undrain`) and removed only when
nothing is left out of rotation.
"""

from __future__ import annotations

import os
import time

from wsgi_drain.deadline import Deadline
from wsgi_drain.errors import DrainError, Interrupted, RouterError, UnhealthyError
from wsgi_drain.health import probe_for
from wsgi_drain.outcome import Phase, RouterRecord
from wsgi_drain.restart.apache_restarted import reader
from wsgi_drain.restart.policy import Verdict, left_diverted_note, ours_diverted, restores
from wsgi_drain.restart.records import Routing, Run, Target
from wsgi_drain.restart.serving import NEW_CODE_PHASE
from wsgi_drain.routers import Router
from wsgi_drain.state import Journal

# How often the router is asked whether it sees the restored server UP.
LB_UP_POLL = 0.1


def begin_journal(
    run: Run, routing: Routing, *, kind: str = "restart", name: str | None = None
) -> Journal:
    """The run's journal, saved before anything is changed; routers taken over count as ours.

    `kind` and `name` (default: the group) are for the host's runs (reload, stop).
    """
    s = run.settings
    journal = Journal(
        group=name or s.group,
        kind=kind,
        pid=os.getpid(),
        started=time.time(),
        routers=[spec for spec, _r in routing.routers],
        before={spec: rec.before or "" for (spec, _r), rec in routing.paired()},
        diverted=[spec for (spec, _r), rec in routing.paired() if rec.adopted],
    )
    for (spec, _r), rec in routing.paired():
        if rec.adopted:
            # Taken over from the earlier run: it was in rotation before that one.
            journal.before[spec] = "ready"
            rec.diverted = True
    journal.save(s.state_dir)
    routing.journal = journal
    return journal


def settle(run: Run, target: Target, routing: Routing, verdict: Verdict) -> None:
    """Restore the routers this run diverted, or deliberately leave them; end the journal."""
    out, s = run.outcome, run.settings
    acted_on = {id(rec) for rec in ours_diverted(routing.records)}
    diverted = [(router, rec) for (_spec, router), rec in routing.paired() if id(rec) in acted_on]
    if verdict.signalled and verdict.healthy is None:
        # Interrupted or failed between the signal and the verdict: only put
        # traffic back on an app that is proven to serve.
        verdict.healthy = _healthy_now(run, target)
    if diverted and restores(verdict.signalled, verdict.healthy):
        with out.phase(Phase.RESTORE, run.progress) as ph:
            failures = []
            for router, rec in diverted:
                try:
                    put_back(run, router, rec)
                except DrainError as err:
                    rec.error = str(err)
                    failures.append(str(err))
            if not failures:
                _wait_lb_up(run, [(r, rec) for r, rec in diverted if rec.restored])
            ph.detail = ", ".join(
                f"{rec.name}: ready"
                + (f", UP after {rec.up_after:.1f} s" if rec.up_after is not None else "")
                for _r, rec in diverted
                if rec.restored
            )
            if failures:
                ph.status = "failed"
                out.left_diverted = True
                if out.error is None:
                    out.error = RouterError("restore", "; ".join(failures))
    elif diverted:
        out.left_diverted = True
        run.progress(
            "restore",
            "left diverted: "
            + ", ".join(rec.name for _r, rec in diverted)
            + f" (repair with `wsgi-drain undrain --group {s.group}`)",
        )
    journal = routing.journal
    if journal is not None:
        if out.left_diverted:
            journal.phase = "left-diverted"
            journal.note = left_diverted_note(verdict.signalled, verdict.healthy)
            journal.save(s.state_dir)
        elif journal.phase != NEW_CODE_PHASE:  # kept: `check` is CRITICAL while they serve
            journal.remove(s.state_dir)


def _healthy_now(run: Run, target: Target) -> bool:
    """For a run that stopped after signalling: may traffic go back?

    With a health URL, the app must answer it.  Without one, every old process
    must be gone and the group complete: a group whose processes are stuck,
    or not yet replaced, stays out of rotation.
    """
    if run.settings.health_url:
        return probe_for(run.settings).ok
    try:
        current = reader(run, target)()
    except DrainError:
        return False
    return len(current.pids) >= target.expected and not set(current.pids) & target.old_pids


def healthy_now(run: Run, target: Target) -> bool:
    """For one group of a run over several that stopped after signalling it (see _healthy_now)."""
    return _healthy_now(run, target)


def _wait_lb_up(run: Run, restored: list[tuple[Router, RouterRecord]]) -> None:
    """Wait (--lb-up-timeout) until each router that health-checks sees the server UP.

    READY is the operator's word; UP is the router's own checks passing, and
    only then does the server take its share again.  A fleet rollout must
    not move to the next host before that (the next would see one peer
    fewer).  Not UP in time is exit 6, with the router's last status.
    """
    s, out = run.settings, run.outcome
    limit = Deadline(s.lb_up_timeout)
    started = time.monotonic()
    for router, rec in restored:
        while True:
            try:
                state = router.state()
            except RouterError:
                break  # unreadable now: the restore succeeded; nothing more to learn
            if state.lb_up is not False:
                if state.lb_up:
                    rec.up_after = time.monotonic() - started
                break
            if limit.expired():
                if s.lb_up_timeout > 0 and out.error is None:
                    out.error = UnhealthyError(
                        f"{router.name} does not see this server UP "
                        f"{s.lb_up_timeout:g} s after it was put back (status "
                        f"{state.status}): its health checks fail; it is in rotation but "
                        "takes no traffic. See the load balancer's check, then `wsgi-drain "
                        f"check --group {s.group}`"
                    )
                break
            try:
                run.interrupts.sleep(min(LB_UP_POLL, max(limit.remaining(), 0.0)))
            except Interrupted as err:
                # Already restored: stop waiting, report the interruption.
                if out.error is None:
                    out.error = err
                return


def put_back(run: Run, router: Router, rec: RouterRecord) -> None:
    """Return a server this run diverted to rotation, unless someone else changed it since.

    Reads the state first: "drain" (ours) is put back; "ready" needs nothing
    (a divert whose answer was lost had not been applied); anything else was
    set by someone during the run and is left so.
    """
    try:
        admin: str | None = router.state().admin
    except RouterError:
        admin = None  # unreadable: try the restore; its own error says why
    if admin == "ready":
        rec.restored, rec.back_at = True, time.time()
        return
    if admin not in (None, "drain"):
        rec.error = f"found in {admin}, not the drain this run set: left so"
        run.warn(f"{router.name} was set to {admin} by someone during the run: left so")
        return
    router.restore()
    rec.restored, rec.back_at = True, time.time()
