import json
import os
import stat
from pathlib import Path

import pytest

from wsgi_drain import state
from wsgi_drain.errors import ConfigError, JournalError, LockedError
from wsgi_drain.state import Journal, all_journals, group_lock, router_lock
from wsgi_drain.status import ExitStatus


def test_second_holder_gets_locked_error_at_once(tmp_path: Path) -> None:
    with group_lock(tmp_path / "st", "myapp") as path:
        assert path.read_text().split() == [str(os.getpid()), "restart"]
        with pytest.raises(LockedError) as info, group_lock(tmp_path / "st", "myapp"):
            pass
        assert info.value.status == ExitStatus.LOCKED
        assert f"held by pid {os.getpid()} (restart)" in str(info.value)
    # Released: can be taken again.
    with group_lock(tmp_path / "st", "myapp"):
        pass


def test_state_dir_and_files_are_private(tmp_path: Path) -> None:
    state = tmp_path / "st"
    Journal(group="myapp", pid=1, started=0.0).save(state)
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE(Journal.path_for(state, "myapp").stat().st_mode) == 0o600
    assert [p.name for p in state.iterdir()] == ["myapp.journal.json"]  # no temporary left


def test_group_name_cannot_escape_the_state_dir(tmp_path: Path) -> None:
    state = tmp_path / "st"
    Journal(group="../../etc/x", pid=1, started=0.0).save(state)
    assert [p.name for p in state.iterdir()] == ["..%2F..%2Fetc%2Fx.journal.json"]
    assert Journal.load(state, "../../etc/x") is not None


def test_group_names_that_differ_never_share_a_lock_or_journal(tmp_path: Path) -> None:
    # Review finding: `my app` and `my_app` shared one lock and one journal.
    state = tmp_path / "st"
    for name in ("my app", "my_app", "my%20app"):
        Journal(group=name, pid=1, started=0.0).save(state)
    assert len(list(state.glob("*.journal.json"))) == 3
    assert {j.group for j in all_journals(state)[0]} == {"my app", "my_app", "my%20app"}
    with group_lock(state, "my app"), group_lock(state, "my_app"):
        pass


def test_world_writable_state_dir_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "st"
    state.mkdir()
    state.chmod(0o777)
    with pytest.raises(ConfigError, match="chmod 700"), group_lock(state, "myapp"):
        pass


def test_journal_round_trip(tmp_path: Path) -> None:
    j = Journal(group="myapp", pid=42, started=1.0, routers=["haproxy:/s:b/w"])
    j.before["haproxy:/s:b/w"] = "ready"
    j.diverted.append("haproxy:/s:b/w")
    j.save(tmp_path)
    back = Journal.load(tmp_path, "myapp")
    assert back == j
    assert all_journals(tmp_path) == ([j], [])
    assert j.still_diverted == ["haproxy:/s:b/w"]
    j.remove(tmp_path)
    assert Journal.load(tmp_path, "myapp") is None


def test_only_servers_that_were_ready_are_still_diverted(tmp_path: Path) -> None:
    j = Journal(group="g", pid=1, started=0.0, routers=["a", "b"], diverted=["a", "b"])
    j.before = {"a": "ready", "b": "maint"}
    assert j.still_diverted == ["a"]


def test_hand_drain_and_restart_journals_live_apart(tmp_path: Path) -> None:
    Journal(group="myapp", pid=1, started=0.0).save(tmp_path)
    Journal(group="myapp", pid=2, started=0.0, kind="drain").save(tmp_path)
    restart = Journal.load(tmp_path, "myapp")
    drain = Journal.load(tmp_path, "myapp", "drain")
    assert restart is not None and restart.pid == 1
    assert drain is not None and drain.pid == 2
    assert sorted(j.kind for j in all_journals(tmp_path)[0]) == ["drain", "restart"]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('{"group": "myapp", "pid": 4', "is not valid JSON"),  # truncated
        ("[]", "holds list, not an object"),
        ("{}", "lacks a valid 'group'"),
        ('{"group": "myapp", "pid": true, "started": 1}', "lacks a valid 'pid'"),
        ('{"group": "myapp", "pid": 1, "started": 1, "routers": "x"}', "'routers'"),
        ('{"group": "myapp", "pid": 1, "started": 1, "diverted": [1]}', "not a string"),
        ('{"group": "myapp", "pid": 1, "started": 1, "before": {"x": 1}}', "not a string"),
        ('{"group": "other", "pid": 1, "started": 1}', "belongs to group 'other'"),
        ('{"group": "alpha", "pid": 1, "started": 1}', "belongs to group 'alpha'"),  # sorts before
    ],
)
def test_corrupt_journal_is_reported_with_the_repair(tmp_path: Path, text: str, why: str) -> None:
    Journal.path_for(tmp_path, "myapp").write_text(text)
    with pytest.raises(JournalError) as info:
        Journal.load(tmp_path, "myapp")
    message = str(info.value)
    assert why in message
    assert "wsgi-drain undrain --group myapp" in message
    assert info.value.status == ExitStatus.ROUTER


def test_all_journals_lists_broken_ones_apart(tmp_path: Path) -> None:
    Journal(group="good", pid=1, started=0.0).save(tmp_path)
    Journal.path_for(tmp_path, "bad").write_text("[]")
    good, broken = all_journals(tmp_path)
    assert [j.group for j in good] == ["good"]
    assert len(broken) == 1 and "holds list" in str(broken[0])


def test_journal_symlink_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.json"
    target.write_text(json.dumps({"group": "myapp", "pid": 1, "started": 1}))
    Journal.path_for(tmp_path, "myapp").symlink_to(target)
    with pytest.raises(JournalError, match="cannot be read"):
        Journal.load(tmp_path, "myapp")


def test_router_lock_keeps_a_second_group_off_the_same_server(tmp_path: Path) -> None:
    # Review finding: two groups behind one HAProxy server undid each other's drain.
    spec = "haproxy:/run/haproxy.sock:be_app/web1"
    with router_lock(tmp_path, spec, "alpha"):
        with pytest.raises(LockedError) as info, router_lock(tmp_path, spec, "beta"):
            pass
        assert "group 'alpha'" in str(info.value) and spec in str(info.value)
        assert info.value.status == ExitStatus.LOCKED
        with router_lock(tmp_path, "haproxy:/run/haproxy.sock:be_app/web2", "beta"):
            pass


def test_state_dir_of_root_tells_a_non_root_user_it_needs_root_never_to_chown_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o700)
    if state_dir.stat().st_uid != 0:
        # CI runs as root: there this rule must be tested, never skipped.
        if os.environ.get("CI") == "true":
            pytest.fail("needs a root-owned directory: run CI as root", pytrace=False)
        pytest.skip("needs a root-owned directory")
    # Being another user cannot be produced in-process as root: only geteuid is replaced.
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(ConfigError) as refused:
        state.ensure_dir(state_dir)
    message = str(refused.value)
    assert "needs root" in message and "--state-dir" in message
    assert "chown" not in message


def test_state_dir_writable_by_others_says_chmod(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    state_dir.chmod(0o777)
    with pytest.raises(ConfigError, match=f"chmod 700 {state_dir}$"):
        state.ensure_dir(state_dir)


def test_journal_save_fsyncs_the_state_dir_after_each_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The rename must survive a crash of the host, which a test cannot produce: the
    # directory fsyncs are counted, and still made.
    from wsgi_drain import atomic

    synced: list[Path] = []
    real = atomic.fsync_dir

    def counted(path: Path) -> None:
        synced.append(path)
        real(path)

    monkeypatch.setattr(atomic, "fsync_dir", counted)
    Journal(group="alpha", pid=1, started=1.0, groups=["alpha", "beta"]).save(tmp_path)
    assert synced == [tmp_path, tmp_path]
    assert Journal.load(tmp_path, "beta") is not None


def test_journal_read_is_bounded_at_one_mebibyte(tmp_path: Path) -> None:
    # A journal is a few hundred bytes; the bound keeps a planted huge file from being read whole.
    big = Journal(group="myapp", pid=1, started=1.0, note="x" * 900_000)
    big.save(tmp_path)
    assert Journal.load(tmp_path, "myapp") == big
    Journal(group="myapp", pid=1, started=1.0, note="x" * 1_500_000).save(tmp_path)
    with pytest.raises(JournalError, match="is not valid JSON"):
        Journal.load(tmp_path, "myapp")


@pytest.mark.parametrize(
    ("mode", "refused"), [(0o711, False), (0o755, False), (0o720, True), (0o702, True)]
)
def test_state_dir_refused_only_when_group_or_others_may_write(
    tmp_path: Path, mode: int, refused: bool
) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    state_dir.chmod(mode)
    if refused:
        with pytest.raises(ConfigError, match=f"writable by others \\(mode {mode:o}\\)"):
            state.ensure_dir(state_dir)
    else:
        assert state.ensure_dir(state_dir) == state_dir
