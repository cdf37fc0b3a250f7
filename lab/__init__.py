"""A real Apache + mod_wsgi + HAProxy stack on loopback, for the demo, tests and benchmarks.

`ApacheLab` and `HAProxyLab` start the real servers under a temporary directory
(never /etc/apache2, never a system service) and stop only what they started;
`LoadLoop` counts every request a client sends through them.  Nothing here
prints: every result is returned as data.
"""

from __future__ import annotations

import os
from typing import NoReturn

from lab.apache import ApacheLab, ModWsgi, pypi_module_config
from lab.errors import LabError, LabUnavailable
from lab.haproxy import HAProxyLab, ServerStat
from lab.load import LoadLoop, LoadSummary, Outcome, Sample, slow_request
from lab.ports import free_port
from lab.stack import Stack, two_hosts, wsgi_drain_command

__all__ = [
    "ApacheLab",
    "HAProxyLab",
    "LabError",
    "LabUnavailable",
    "LoadLoop",
    "LoadSummary",
    "ModWsgi",
    "Outcome",
    "Sample",
    "ServerStat",
    "Stack",
    "free_port",
    "pypi_module_config",
    "skip_or_fail",
    "slow_request",
    "two_hosts",
    "wsgi_drain_command",
]


def skip_or_fail(reason: str) -> NoReturn:
    """Skip the calling test because a lab component is missing; fail it under CI.

    On CI (``CI=true``) the stack is supposed to be installed, so a missing
    piece is a broken job, not a reason to pass silently.
    """
    import pytest  # only tests call this; the lab itself must not need pytest

    if os.environ.get("CI") == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)
