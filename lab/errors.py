"""Errors of the labs: a component missing, or a stack that failed to start."""

from __future__ import annotations


class LabError(Exception):
    """A lab could not start or stop; the message carries the log lines that say why."""


class LabUnavailable(LabError):
    """A component the lab needs (apache2, haproxy, the PyPI mod_wsgi) is not installed.

    The message says how to install it.  Tests turn it into a skip, or a
    failure under CI (see `lab.skip_or_fail`).
    """
