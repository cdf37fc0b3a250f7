"""Signal: every old process at once (drain mode), each through a pidfd.

Each process is checked to still belong to the group as it is opened
(signals.open_handle); the journal names the signalled pids before the first
signal goes, so a run killed outright leaves a record `undrain` can act on.
"""

from __future__ import annotations

import time

from wsgi_drain.outcome import Phase
from wsgi_drain.restart.leftovers import record
from wsgi_drain.restart.records import Job
from wsgi_drain.signals import Handle, open_handle


def signal_all(job: Job) -> list[Handle]:
    """Send the job's signal to each old process still of the group; their handles."""
    run, target, routing, sig = job.run, job.target, job.routing, job.sig
    out = run.outcome
    assert routing.journal is not None
    handles: list[Handle] = []
    with out.phase(Phase.SIGNAL, run.progress) as ph:
        run.interrupts.check()
        for proc in target.procs.processes:
            handle = open_handle(target.instance, target.procs.socket, proc)
            rec = out.record(proc.pid)
            if handle is None:
                rec.ending = "gone"
                continue
            handles.append(handle)
        routing.journal.phase = "signal"
        routing.journal.signalled = [h.pid for h in handles]
        routing.journal.save(run.settings.state_dir)
        record(run, job.watched, handles)  # before the signal: their descendants, proven
        job.watched.signalled_at = time.monotonic()
        for handle in handles:
            job.verdict.signalled = True
            if handle.send(sig):
                out.record(handle.pid).signals.append(sig.name)
        ph.detail = f"{sig.name} -> {' '.join(str(h.pid) for h in handles)}"
    return handles
