"""Signalling only through a pidfd (wsgi_drain/signals.py): the refusals, never a fallback.

A kernel or Python without pidfds cannot be had on demand, so those two
errors are produced by replacing `os.pidfd_open` (the one mock here: an error
the OS will not give on request).  Each refusal must be UnsupportedError with
its reason, raised before anything is signalled, never a bare-pid fallback.
"""

from __future__ import annotations

import errno
import os
import sys

import psutil
import pytest

from wsgi_drain import signals
from wsgi_drain.discovery import DaemonProcess
from wsgi_drain.errors import UnsupportedError, UsageError


def no_pidfd(pid: int, flags: int = 0) -> int:
    raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))


def test_a_number_that_is_no_signal_is_a_usage_error_not_a_traceback() -> None:
    with pytest.raises(UsageError) as err:
        signals.parse_signal("99")
    assert str(err.value) == (
        "'99' is not a restart signal wsgi-drain sends; use one of "
        + ", ".join(signals.RESTART_SIGNALS)
    )


def test_a_signal_number_is_read_as_its_name() -> None:
    assert signals.parse_signal(" 10 ") == signals.RESTART_SIGNALS["SIGUSR1"]


def test_check_support_refuses_a_python_without_pidfd_open(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(os, "pidfd_open")
    with pytest.raises(UnsupportedError) as err:
        signals.check_support()
    assert "(this Python has no os.pidfd_open); wsgi-drain needs Linux 5.3 or later" in str(
        err.value
    )


def test_check_support_refuses_a_kernel_without_pidfd_open(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "pidfd_open", no_pidfd)
    with pytest.raises(UnsupportedError) as err:
        signals.check_support()
    assert "(pidfd_open: Function not implemented)" in str(err.value)


def test_open_handle_never_falls_back_to_a_bare_pid(monkeypatch: pytest.MonkeyPatch) -> None:
    me = DaemonProcess(os.getpid(), psutil.Process().create_time(), sys.executable)
    monkeypatch.setattr(os, "pidfd_open", no_pidfd)
    with pytest.raises(UnsupportedError) as err:
        signals.open_handle(None, None, me)  # type: ignore[arg-type]
    assert "signalling a bare pid can reach an unrelated process" in str(err.value)
    assert "(pidfd_open: Function not implemented)" in str(err.value)
