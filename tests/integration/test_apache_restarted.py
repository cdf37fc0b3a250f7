"""Apache restarted underneath a run (`apachectl graceful` during the watch).

Before: the run stopped at once with exit 3, "the group is not running in
this instance", while Apache was bringing the group back.  Now the run names
the restart and verifies the group as it stands.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from lab import LoadLoop, Outcome, Stack, slow_request
from tests.integration.conftest import restart_args, wsgi_drain_command

pytestmark = pytest.mark.integration


def test_apache_restarted_during_the_watch_is_named_and_the_group_verified(
    stack: Stack,
) -> None:
    old = set(stack.a.daemon_pids())
    load = LoadLoop(stack.haproxy.url + "/", max_requests=3000, max_seconds=40)
    load.start()
    try:
        time.sleep(0.5)
        # In flight on `a` when the signal goes out (a short drain timeout), so
        # the watch lasts while the request finishes: the window for the
        # operator's `apachectl graceful`.
        slow = slow_request(stack.haproxy.url + "/slow?s=2.5", 2.5)
        time.sleep(0.3)
        command = [*wsgi_drain_command(), *restart_args(stack, "--drain-timeout", "0.3")]
        with subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        ) as proc:
            assert proc.stderr is not None and proc.stdout is not None
            progress = []
            for line in proc.stderr:
                progress.append(line)
                if " signal " in line:
                    break
            stack.a.apachectl_graceful()
            rest, out = proc.stderr.read(), proc.stdout.read()
            status = proc.wait(timeout=120)
        time.sleep(0.5)
    finally:
        load.stop()
    stderr = "".join(progress) + rest
    assert status == 0, stderr
    first = out.splitlines()[0]
    assert first.startswith("wsgi-drain: OK"), out
    assert "Apache was restarted" in first, out
    assert "not running" not in stderr
    assert slow.result(timeout=30).status == 200
    summary = load.summary()
    failed = {k: v for k, v in summary.counts.items() if k != Outcome.OK and v}
    assert summary.total > 20 and not failed, summary
    new = set(stack.a.daemon_pids())
    assert len(new) == 3 and not new & old
    assert stack.haproxy.server_states()["a"].status.startswith("UP")
