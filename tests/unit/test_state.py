import os
import stat
from pathlib import Path

import pytest

from wsgi_drain.errors import ConfigError, LockedError
from wsgi_drain.state import Journal, all_journals, group_lock
from wsgi_drain.status import ExitStatus


def test_second_holder_gets_locked_error_at_once(tmp_path: Path) -> None:
    with group_lock(tmp_path / "st", "myapp") as path:
        assert path.read_text().strip() == str(os.getpid())
        with pytest.raises(LockedError) as info, group_lock(tmp_path / "st", "myapp"):
            pass
        assert info.value.status == ExitStatus.LOCKED
        assert "held by pid" in str(info.value)
    # Released: can be taken again.
    with group_lock(tmp_path / "st", "myapp"):
        pass


def test_state_dir_and_files_are_private(tmp_path: Path) -> None:
    state = tmp_path / "st"
    Journal(group="myapp", pid=1, started=0.0).save(state)
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE(Journal.path_for(state, "myapp").stat().st_mode) == 0o600


def test_group_name_cannot_escape_the_state_dir(tmp_path: Path) -> None:
    state = tmp_path / "st"
    Journal(group="../../etc/x", pid=1, started=0.0).save(state)
    assert [p.name for p in state.iterdir()] == [".._.._etc_x.journal.json"]


def test_world_writable_state_dir_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "st"
    state.mkdir()
    state.chmod(0o777)
    with pytest.raises(ConfigError, match="chmod 700"), group_lock(state, "myapp"):
        pass


def test_journal_round_trip(tmp_path: Path) -> None:
    j = Journal(group="myapp", pid=42, started=1.0, routers=["haproxy:/s:b/w"])
    j.diverted.append("haproxy:/s:b/w")
    j.save(tmp_path)
    back = Journal.load(tmp_path, "myapp")
    assert back == j
    assert all_journals(tmp_path) == [j]
    j.remove(tmp_path)
    assert Journal.load(tmp_path, "myapp") is None
