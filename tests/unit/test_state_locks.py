"""Locks held by another live run (wsgi_drain/state.py), on real child processes.

A child process takes the group's or a router's lock the way a running
`wsgi-drain` does; the test process is the second caller.  What it is told
(exit 7, the holder's pid and what it is doing) and what the read-only
checks (/proc/locks) find are pinned here; the parsing of /proc/locks on
its own at the end.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.children import reap
from wsgi_drain import state
from wsgi_drain.errors import ConfigError, LockedError
from wsgi_drain.status import ExitStatus

HOLD = """
import sys, time
from pathlib import Path
from wsgi_drain import state
kind, where, name, group = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4]
if kind == "router":
    lock = state.router_lock(where, name, group)
else:
    lock = state.group_lock(where, "myapp", what=kind, shared=kind != "restart")
with lock:
    sys.stdout.write("held\\n"); sys.stdout.flush()
    time.sleep(60)
"""

SPEC = "haproxy:/run/haproxy/admin.sock:be_app/web1"


@pytest.fixture
def holders() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    reap(started)


def hold(
    holders: list[subprocess.Popen[str]],
    kind: str,
    where: Path,
    name: str = "",
    group: str = "other",
) -> int:
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD, kind, str(where), name, group],
        stdout=subprocess.PIPE,
        text=True,
    )
    holders.append(child)
    assert child.stdout is not None and child.stdout.readline() == "held\n"
    return child.pid


def test_group_lock_held_by_a_restart_names_its_pid_to_the_second_caller(
    tmp_path: Path, holders: list[subprocess.Popen[str]]
) -> None:
    pid = hold(holders, "restart", tmp_path)
    path = tmp_path / "myapp.lock"
    expected = (
        f"another wsgi-drain run holds the lock for group 'myapp' ({path}, held by pid {pid} "
        "(restart)); wait for it to finish"
    )
    with pytest.raises(LockedError) as err, state.group_lock(tmp_path, "myapp"):
        pass
    assert str(err.value) == expected and err.value.status == ExitStatus.LOCKED
    with pytest.raises(LockedError) as read_only:
        state.refuse_if_locked(tmp_path, "myapp", [SPEC])
    assert str(read_only.value) == expected
    assert state.lock_holder(tmp_path, "myapp") == pid


def test_group_lock_shared_by_hand_drains_excludes_only_a_restart(
    tmp_path: Path, holders: list[subprocess.Popen[str]]
) -> None:
    pid = hold(holders, "drain", tmp_path)
    with state.group_lock(tmp_path, "myapp", what="undrain", shared=True):
        pass  # a second hand-run drain or undrain goes on beside it
    with pytest.raises(LockedError) as err, state.group_lock(tmp_path, "myapp"):
        pass
    # The undrain above wrote its own note in the lock and is gone: the holder named
    # is the live one, from /proc/locks.
    assert f", held by pid {pid} (drain or undrain)); wait for it to finish" in str(err.value)


def test_router_lock_of_another_group_names_it_and_says_one_after_the_other(
    tmp_path: Path, holders: list[subprocess.Popen[str]]
) -> None:
    pid = hold(holders, "router", tmp_path, SPEC)
    path = next(tmp_path.glob("router-*.lock"))
    expected = (
        f"group 'myapp' cannot divert now: router {SPEC} is being diverted by another "
        f"wsgi-drain run (group 'other', pid {pid}); restart the groups behind one server one "
        f"after the other ({path})"
    )
    with pytest.raises(LockedError) as err, state.router_lock(tmp_path, SPEC, "myapp"):
        pass
    assert str(err.value) == expected
    with pytest.raises(LockedError) as read_only:
        state.refuse_if_locked(tmp_path, "myapp", ["nginx:/etc/nginx/up.conf:10.0.0.1:80", SPEC])
    assert str(read_only.value) == expected
    state.refuse_if_locked(tmp_path, "myapp", ["nginx:/etc/nginx/up.conf:10.0.0.1:80"])


def test_a_holders_note_is_read_only_up_to_its_first_200_bytes(
    tmp_path: Path, holders: list[subprocess.Popen[str]]
) -> None:
    # The note is "PID GROUP" and a group name is unbounded: the second caller reads
    # 200 bytes of it, both when it tries the lock and when it only reads (/proc/locks).
    pid = hold(holders, "router", tmp_path, SPEC, "g" * 300)
    shown = "g" * (200 - len(f"{pid} "))
    with pytest.raises(LockedError) as err, state.router_lock(tmp_path, SPEC, "myapp"):
        pass
    assert f"(group '{shown}', pid {pid})" in str(err.value)
    with pytest.raises(LockedError) as read_only:
        state.refuse_if_locked(tmp_path, "myapp", [SPEC])
    assert str(read_only.value) == str(err.value)


def test_no_holder_and_our_own_lock_are_no_refusal(tmp_path: Path) -> None:
    state.refuse_if_locked(tmp_path, "myapp", [SPEC])
    assert state.lock_holder(tmp_path, "myapp") is None
    with state.group_lock(tmp_path, "myapp"), state.router_lock(tmp_path, SPEC, "myapp"):
        # The lock this process holds is not "another run" (a restart reads them after locking).
        state.refuse_if_locked(tmp_path, "myapp", [SPEC])
        assert state.lock_holder(tmp_path, "myapp") == os.getpid()
        assert (tmp_path / "myapp.lock").read_text() == f"{os.getpid()} restart\n"


# -- the state directory ------------------------------------------------------------------------


def test_state_dir_that_is_a_symlink_or_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir(mode=0o700)
    link = tmp_path / "state"
    link.symlink_to(tmp_path / "real")
    with pytest.raises(ConfigError) as err:
        state.ensure_dir(link)
    assert str(err.value) == f"state directory {link} is not a directory"
    file = tmp_path / "file"
    file.write_text("")
    with pytest.raises(ConfigError) as err:
        state.ensure_dir(file)
    assert str(err.value).startswith(f"cannot create state directory {file}: File exists")


def test_state_dir_that_cannot_be_made_says_where_to_point_it(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    where = tmp_path / "file" / "state"
    with pytest.raises(ConfigError) as err:
        state.ensure_dir(where)
    assert str(err.value) == (
        f"cannot create state directory {where}: Not a directory; set WSGI_DRAIN_STATE_DIR "
        "or --state-dir to a writable directory"
    )


def needs_root() -> None:
    """Skip unless root (giving a directory to another uid needs it); fail on CI, which is root."""
    if os.geteuid() != 0:
        # CI runs as root: there these rules must be tested, never skipped.
        if os.environ.get("CI") == "true":
            pytest.fail("giving a directory to another uid needs root: run CI as root")
        pytest.skip("giving a directory to another uid needs root")


def test_state_dir_of_another_user_is_refused_without_chown_advice(tmp_path: Path) -> None:
    needs_root()
    where = tmp_path / "state"
    where.mkdir(mode=0o700)
    os.chown(where, 4321, 4321)
    with pytest.raises(ConfigError) as err:
        state.ensure_dir(where)
    assert str(err.value) == (
        f"state directory {where} is owned by uid 4321, not by this user (uid 0): wsgi-drain "
        "keeps its locks and journals only in a directory of its own user; use another "
        "--state-dir (or WSGI_DRAIN_STATE_DIR), or find out who made this one"
    )


# -- /proc/locks --------------------------------------------------------------------------------


def test_flock_holder_matches_device_and_inode_and_skips_waiters() -> None:
    device = os.makedev(0xFD, 0x01)
    locks = "\n".join(
        [
            "1: POSIX  ADVISORY  WRITE 111 fd:01:5678 0 EOF",  # not a flock
            "2: FLOCK  ADVISORY  WRITE 222 fd:02:5678 0 EOF",  # another device
            "3: FLOCK  ADVISORY  WRITE 333 fd:01:9999 0 EOF",  # another inode
            "4: -> FLOCK  ADVISORY  WRITE 444 fd:01:5678 0 EOF",  # waiting, not holding
            "5: FLOCK  ADVISORY",
            "5: DELEG  ACTIVE    READ  555 fd:01:5678 0 EOF",  # an NFS delegation: no flock
            "5: ACCESS MANDATORY READ  556 fd:01:5678 0 EOF",  # nor a mandatory-lock access
            "6: FLOCK  ADVISORY  WRITE 666 zz:01:5678 0 EOF",
            "7: FLOCK  ADVISORY  WRITE 777 fd:01:5678 0 EOF",
        ]
    )
    assert state.flock_holder(locks, device, 5678) == 777
    assert state.flock_holder(locks, device, 1234) is None


def test_flock_holder_skips_a_line_cut_before_the_device_and_reads_one_that_reaches_it() -> None:
    device = os.makedev(0xFD, 0x01)
    locks = "1: FLOCK  ADVISORY  WRITE 111\n2: FLOCK  ADVISORY  WRITE 222 fd:01:5678"
    assert state.flock_holder(locks, device, 5678) == 222


def test_flock_holder_reads_the_minor_number_as_hexadecimal() -> None:
    # /dev/sdb1 is 8:17, which /proc/locks prints as "08:11".
    locks = "1: FLOCK  ADVISORY  WRITE 111 08:11:5678 0 EOF"
    assert state.flock_holder(locks, os.makedev(8, 17), 5678) == 111
    assert state.flock_holder(locks, os.makedev(8, 11), 5678) is None


def test_lock_files_are_never_opened_through_a_symlink(tmp_path: Path) -> None:
    state.ensure_dir(tmp_path)
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    (tmp_path / "myapp.lock").symlink_to(victim)
    (tmp_path / "myapp.journal.lock").symlink_to(victim)
    router = state._router_lock_path(tmp_path, SPEC)
    router.symlink_to(victim)
    with pytest.raises(OSError), state.group_lock(tmp_path, "myapp"):
        pass
    with pytest.raises(OSError), state.router_lock(tmp_path, SPEC, "myapp"):
        pass
    with pytest.raises(OSError), state.journal_lock(tmp_path, "myapp"):
        pass
    assert victim.read_text() == "keep\n", "a lock note was written through the link"
    assert state._note(tmp_path / "myapp.lock") == ""


def test_lock_files_are_private(tmp_path: Path) -> None:
    with state.group_lock(tmp_path, "myapp") as path:
        assert path.stat().st_mode & 0o777 == 0o600
    with state.journal_lock(tmp_path, "myapp"):
        assert (tmp_path / "myapp.journal.lock").stat().st_mode & 0o777 == 0o600


def test_a_lock_error_other_than_held_is_raised_not_taken_for_a_holder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ENOLCK (the kernel out of lock records) is no "held by": it must not read as
    # exit 7 with a note.  The kernel gives it on no demand: simulated.
    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(state.fcntl, "flock", no_locks)
    with pytest.raises(OSError) as raised, state.group_lock(tmp_path, "myapp"):
        pass
    assert raised.value.errno == errno.ENOLCK


def test_all_journals_of_a_state_dir_not_made_yet_is_none(tmp_path: Path) -> None:
    assert state.all_journals(tmp_path / "never-made") == ([], [])
    (tmp_path / "a-file").write_text("")
    assert state.all_journals(tmp_path / "a-file") == ([], [])


def test_state_dir_is_made_with_its_missing_parents(tmp_path: Path) -> None:
    # $XDG_RUNTIME_DIR/wsgi-drain/x under a runtime dir just made, /run/wsgi-drain at boot.
    deep = tmp_path / "a" / "b" / "state"
    assert state.ensure_dir(deep) == deep and deep.is_dir()


def test_state_dir_of_a_user_above_uid_256_is_accepted_as_that_users_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Owner and user are compared by value: CPython shares the int objects only up
    # to 256, so an identity test would refuse uid 4321 its own directory.
    needs_root()
    where = tmp_path / "state"
    where.mkdir(mode=0o700)
    os.chown(where, 4321, 4321)
    # Being uid 4321 cannot be produced in-process as root: only geteuid is replaced.
    monkeypatch.setattr(os, "geteuid", lambda: int("4321"))
    assert state.ensure_dir(where) == where


def test_state_dir_of_root_gets_the_needs_root_advice_for_every_other_user(
    tmp_path: Path,
) -> None:
    # Any uid but root's, the daemon user's 1 included, is told it needs root.
    for me in (1, 1000):
        assert "belongs to root: this command needs root" in state._not_ours(tmp_path, 0, me)
    assert "is owned by uid 1000, not by this user (uid 0)" in state._not_ours(tmp_path, 1000, 0)
    assert "is owned by uid 1000, not by this user (uid 1001)" in state._not_ours(
        tmp_path, 1000, 1001
    )


def test_group_lock_names_the_live_holder_when_the_last_note_writer_is_gone(
    tmp_path: Path, holders: list[subprocess.Popen[str]]
) -> None:
    first = hold(holders, "drain", tmp_path)  # started first: the lower pid, still holding
    second = hold(holders, "undrain", tmp_path)  # wrote the note last, then ended
    holders[-1].kill()
    holders[-1].wait(timeout=10)
    assert first < second and state._note(tmp_path / "myapp.lock").startswith(f"{second} ")
    with pytest.raises(LockedError) as err, state.group_lock(tmp_path, "myapp"):
        pass
    assert f", held by pid {first} (drain or undrain))" in str(err.value)


CALLER = """
import sys
from pathlib import Path
from wsgi_drain import state
from wsgi_drain.errors import LockedError
try:
    state.refuse_if_locked(Path(sys.argv[1]), "myapp", [])
except LockedError as err:
    print(err)
else:
    print("not locked")
"""


def test_a_holder_older_than_the_caller_is_named_too(tmp_path: Path) -> None:
    # This process holds the lock and a later one (a higher pid) asks: only the
    # caller's own pid is "no holder", not every pid up to it.
    with state.group_lock(tmp_path, "myapp"):
        told = subprocess.run(
            [sys.executable, "-c", CALLER, str(tmp_path)],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
    assert f"held by pid {os.getpid()} (restart)" in told
