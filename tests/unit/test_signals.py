import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from wsgi_drain.discovery import DaemonProcess
from wsgi_drain.errors import UsageError
from wsgi_drain.signals import Handle, check_support, parse_signal


@pytest.mark.parametrize("name", ["SIGUSR1", "USR1", "usr1", str(int(signal.SIGUSR1))])
def test_usr1_in_every_spelling(name: str) -> None:
    assert parse_signal(name) is signal.SIGUSR1


def test_term_is_allowed() -> None:
    assert parse_signal("TERM") is signal.SIGTERM


def test_usr2_is_refused_with_the_reason() -> None:
    with pytest.raises(UsageError, match="SIGUSR2 is not a restart signal.*500.*SIGUSR1"):
        parse_signal("SIGUSR2")


def test_unknown_signal_lists_the_allowed_ones() -> None:
    with pytest.raises(UsageError, match="SIGUSR1, SIGTERM"):
        parse_signal("SIGWINCH")


def test_handle_signals_through_the_pidfd_and_sees_exit() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        handle = Handle(DaemonProcess(child.pid, 0.0, "sleeper"), os.pidfd_open(child.pid))
        assert handle.send(signal.SIGTERM)
        assert child.wait(timeout=10) == -signal.SIGTERM
        # Reaped and gone: the pidfd still names the dead process, never a new one.
        assert handle.send(signal.SIGTERM) is False
        assert handle.signalled == ["SIGTERM"]
        handle.close()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_handle_close_releases_the_pidfd_once() -> None:
    fd = os.pidfd_open(os.getpid())
    handle = Handle(DaemonProcess(os.getpid(), 0.0, "self"), fd)
    handle.close()
    assert handle.fd == -1
    with pytest.raises(OSError):
        os.fstat(fd)  # closed for real
    handle.close()  # a second close is harmless (never closes a reused fd number)
    assert handle.fd == -1


# A run started with its stdin closed (`<&-`): the first pidfd it opens is fd 0.
NO_STDIN = """\
import os
from wsgi_drain.discovery import DaemonProcess
from wsgi_drain.signals import Handle
os.close(0)
fd = os.pidfd_open(os.getpid())
assert fd == 0, fd
Handle(DaemonProcess(os.getpid(), 0.0, "self"), fd).close()
try:
    os.fstat(0)
except OSError:
    print("closed")
else:
    print("still open")
"""


def test_handle_close_releases_a_pidfd_that_is_fd_0_in_a_run_without_stdin() -> None:
    root = Path(__file__).resolve().parents[2]  # `-c` imports wsgi_drain from the cwd
    done = subprocess.run(
        [sys.executable, "-c", NO_STDIN],
        cwd=root,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "closed\n", "")


def test_check_support_passes_on_this_kernel() -> None:
    check_support()  # Linux 5.3+ with pidfds: the suite's machines
