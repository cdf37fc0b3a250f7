"""identity.prove: which socket is a group's, from what the running processes show.

Each test builds a real configuration file and an Observation as /proc would
give it, and checks the verdict.  The wrong_group cases are the review's: a
group inserted or removed before ours after Apache started, positions decided
by sections that cannot be evaluated, processes that disagree with the files.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from wsgi_drain.apacheconf import ApacheConfig, parse_config
from wsgi_drain.errors import GroupNotRunningError, IdentityError
from wsgi_drain.identity import (
    Change,
    Child,
    GroupSocket,
    Observation,
    _loaded_at,
    config_changes,
    prove,
)

ROOM = len("/usr/sbin/apache2")


def config(tmp_path: Path, text: str) -> ApacheConfig:
    path = tmp_path / "httpd.conf"
    path.write_text(text)
    return parse_config(path, environ={})


TWO_GROUPS = """\
WSGIDaemonProcess alpha processes=2 display-name=%{GROUP}
WSGIDaemonProcess myapp processes=3 display-name=%{GROUP}
"""
UNTITLED = """\
WSGIDaemonProcess alpha processes=2
WSGIDaemonProcess myapp processes=3
"""


def sockets(*ids: int) -> dict[int, GroupSocket]:
    return {i: GroupSocket(path=f"/run/wsgi.100.0.{i}.sock", inode=1000 + i, id=i) for i in ids}


def child(pid: int, gid: int, title: str, *, uid: int | None = 33, **kw: object) -> Child:
    return Child(pid, 1.0, title, uid, frozenset({gid}), **kw)  # type: ignore[arg-type]


def observation(
    children: list[Child], ids: tuple[int, ...] = (1, 2), loaded_at: float | None = None
) -> Observation:
    return Observation(
        parent_pid=100,
        title_room=ROOM,
        sockets=sockets(*ids),
        children=tuple(children),
        loaded_at=time.time() if loaded_at is None else loaded_at,
        as_root=False,
    )


TITLED = [
    child(11, 1, "(wsgi:alpha)"),
    child(12, 1, "(wsgi:alpha)"),
    child(21, 2, "(wsgi:myapp)"),
    child(22, 2, "(wsgi:myapp)"),
]
PLAIN = [child(11, 1, "/usr/sbin/apache2"), child(21, 2, "/usr/sbin/apache2")]


def test_unchanged_configuration_and_titles_prove_the_socket(tmp_path: Path) -> None:
    cfg = config(tmp_path, TWO_GROUPS)
    identity = prove(cfg, cfg.group("myapp"), observation(TITLED), [])
    assert identity.socket.id == 2
    assert identity.config_current
    assert "configuration unchanged" in identity.proof and "(wsgi:myapp)" in identity.proof
    assert identity.warnings == ()


def test_unchanged_configuration_alone_proves_it_without_titles(tmp_path: Path) -> None:
    cfg = config(tmp_path, UNTITLED)
    identity = prove(cfg, cfg.group("myapp"), observation(PLAIN), [])
    assert identity.socket.id == 2 and identity.config_current


def test_wrong_group_inserted_before_ours_is_refused_without_titles(tmp_path: Path) -> None:
    # Apache loaded alpha (1) and myapp (2); then a vhost was added first on
    # disk, so the files now say myapp is 3 -- and `alpha`'s socket id 2 ...
    cfg = config(tmp_path, "WSGIDaemonProcess newcomer\n" + UNTITLED)
    changes = [Change(tmp_path / "httpd.conf", time.time())]
    with pytest.raises(IdentityError) as info:
        prove(cfg, cfg.group("myapp"), observation(PLAIN), changes)
    message = str(info.value)
    assert "nothing is signalled" in message
    assert "httpd.conf (changed" in message
    assert "display-name=%{GROUP}" in message and "apachectl graceful" in message


def test_wrong_group_inserted_before_ours_is_found_by_its_title(tmp_path: Path) -> None:
    # Same edit, but the daemons carry (wsgi:NAME): the socket whose processes
    # show (wsgi:myapp) is myapp's, whatever position the files give it.
    cfg = config(tmp_path, "WSGIDaemonProcess newcomer display-name=%{GROUP}\n" + TWO_GROUPS)
    assert cfg.group("myapp").id == 3
    changes = [Change(tmp_path / "httpd.conf", time.time())]
    identity = prove(cfg, cfg.group("myapp"), observation(TITLED), changes)
    assert identity.socket.id == 2
    assert not identity.config_current
    assert "not what Apache runs" in identity.warnings[0]
    assert "reload Apache" in identity.warnings[0]


def test_wrong_group_removed_before_ours_is_found_by_its_title(tmp_path: Path) -> None:
    # alpha was removed from the file after start: the files say myapp is 1,
    # which is alpha's socket (the case reproduced on real Apache).
    cfg = config(tmp_path, "WSGIDaemonProcess myapp processes=3 display-name=%{GROUP}\n")
    changes = [Change(tmp_path / "httpd.conf", time.time())]
    identity = prove(cfg, cfg.group("myapp"), observation(TITLED), changes)
    assert identity.socket.id == 2


def test_wrong_group_by_titles_even_when_files_look_unchanged(tmp_path: Path) -> None:
    # Whatever made the files disagree (an evaluator bug, a touched mtime),
    # processes titled (wsgi:alpha) on the socket the files call myapp's refuse.
    cfg = config(tmp_path, "WSGIDaemonProcess myapp processes=3\nWSGIDaemonProcess alpha\n")
    with pytest.raises(IdentityError, match="titled '\\(wsgi:alpha\\)'.*sets no display-name"):
        prove(cfg, cfg.group("myapp"), observation(TITLED), [])


def test_wrong_group_by_a_title_sorting_before_ours_when_files_look_unchanged(
    tmp_path: Path,
) -> None:
    # The socket the files call myapp's shows (wsgi:alpha), which sorts before
    # (wsgi:myapp): any other title refuses the position, before or after it.
    cfg = config(tmp_path, TWO_GROUPS)
    obs = observation([child(21, 2, "(wsgi:alpha)")])
    with pytest.raises(IdentityError, match=r"titled '\(wsgi:alpha\)', not '\(wsgi:myapp\)'"):
        prove(cfg, cfg.group("myapp"), obs, [])


def test_wrong_group_when_position_cannot_be_evaluated(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        "<IfDirective SomeDirective>\nWSGIDaemonProcess maybe\n</IfDirective>\n" + UNTITLED,
    )
    group = cfg.group("myapp")
    assert group.uncertain is not None and "IfDirective" in group.uncertain
    with pytest.raises(IdentityError, match="position depends on <IfDirective SomeDirective>"):
        prove(cfg, group, observation(PLAIN, ids=(1, 2, 3)), [])


def test_changes_after_our_group_do_not_matter(tmp_path: Path) -> None:
    main = tmp_path / "httpd.conf"
    later = tmp_path / "later.conf"
    later.write_text("WSGIDaemonProcess zulu\n")
    main.write_text(UNTITLED + "Include later.conf\n")
    cfg = parse_config(main, environ={})
    assert later not in cfg.group("myapp").inputs and later in cfg.inputs
    identity = prove(
        cfg, cfg.group("myapp"), observation(PLAIN, ids=(1, 2, 3)), [Change(later, time.time())]
    )
    assert identity.socket.id == 2


def test_group_count_mismatch_refuses(tmp_path: Path) -> None:
    cfg = config(tmp_path, UNTITLED)
    with pytest.raises(IdentityError, match="runs 3 daemon group socket.*defines 2"):
        prove(cfg, cfg.group("myapp"), observation(PLAIN, ids=(1, 2, 3)), [])


def test_more_processes_than_configured_refuses(tmp_path: Path) -> None:
    cfg = config(tmp_path, UNTITLED)
    many = [child(20 + i, 2, "/usr/sbin/apache2") for i in range(4)]
    with pytest.raises(IdentityError, match="socket 2 has 4 processes.*processes=3"):
        prove(cfg, cfg.group("myapp"), observation(many), [])


def test_daemons_of_another_user_refuse(tmp_path: Path) -> None:
    cfg = config(tmp_path, UNTITLED.replace("processes=3", f"processes=3 user=#{os.getuid()}"))
    obs = observation([child(21, 2, "/usr/sbin/apache2", uid=4242)])
    obs = Observation(obs.parent_pid, obs.title_room, obs.sockets, obs.children, obs.loaded_at)
    with pytest.raises(IdentityError, match="run as uid 4242"):
        prove(cfg, cfg.group("myapp"), obs, [])


def test_a_cut_title_proves_nothing_by_itself(tmp_path: Path) -> None:
    # Apache started as `apache2` (7 characters): every title reads "(wsgi:a".
    cfg = config(tmp_path, TWO_GROUPS)
    cut = [child(11, 1, "(wsgi:a"), child(21, 2, "(wsgi:m")]
    obs = Observation(100, 7, sockets(1, 2), tuple(cut), time.time())
    changes = [Change(tmp_path / "httpd.conf", time.time())]
    with pytest.raises(IdentityError, match="changed after Apache loaded it"):
        prove(cfg, cfg.group("myapp"), obs, changes)
    assert prove(cfg, cfg.group("myapp"), obs, []).socket.id == 2


def test_unknown_load_time_refuses_without_titles(tmp_path: Path) -> None:
    cfg = config(tmp_path, UNTITLED)
    obs = Observation(100, ROOM, sockets(1, 2), tuple(PLAIN), None)
    with pytest.raises(IdentityError, match="cannot be told"):
        prove(cfg, cfg.group("myapp"), obs, [])


def test_no_group_socket_at_all_is_not_running(tmp_path: Path) -> None:
    cfg = config(tmp_path, UNTITLED)
    with pytest.raises(GroupNotRunningError, match="runs no mod_wsgi daemon group"):
        prove(cfg, cfg.group("myapp"), observation([], ids=()), [])


def test_only_exclusive_holders_are_members() -> None:
    # mod_wsgi leaves a daemon its own group's listener only; anything holding
    # several (a module's helper forked after the sockets were made), one of
    # Apache's listeners (an MPM worker), or another binary (a piped logger)
    # is not a daemon, whatever it holds.
    assert child(1, 2, "x").is_member_of(2)
    assert not Child(1, 1.0, "x", 0, frozenset({1, 2})).is_member_of(2)
    assert not child(1, 2, "x", holds_listener=True).is_member_of(2)
    assert not child(1, 2, "x", same_exe=False).is_member_of(2)
    assert child(1, 2, "x", same_exe=None).is_member_of(2)


def test_config_changes_sees_edits_renames_and_removals(tmp_path: Path) -> None:
    kept, edited, gone = tmp_path / "kept", tmp_path / "edited", tmp_path / "gone"
    for path in (kept, edited, gone):
        path.write_text("x")
    past = time.time() - 3600
    os.utime(kept, (past, past))
    since = max(os.stat(kept).st_ctime, os.stat(gone).st_ctime) + 0.001
    time.sleep(0.01)
    edited.write_text("y")
    # An old mtime does not hide an edit: ctime moves whatever mtime says.
    os.utime(edited, (past, past))
    gone.unlink()
    found = {c.path: c for c in config_changes([kept, edited, gone], since)}
    assert set(found) == {edited, gone}
    assert found[gone].when is None and "removed" in found[gone].describe()


def test_title_proof_refuses_a_title_two_sockets_share(tmp_path: Path) -> None:
    # Two sockets whose processes all show (wsgi:myapp): the title tells
    # nothing about which is myapp's.  With the files unchanged, the position
    # decides (socket 2), never the first titled socket found (1)...
    cfg = config(tmp_path, TWO_GROUPS)
    shared = [child(11, 1, "(wsgi:myapp)"), child(21, 2, "(wsgi:myapp)")]
    identity = prove(cfg, cfg.group("myapp"), observation(shared), [])
    assert identity.socket.id == 2
    assert "configuration unchanged" in identity.proof
    # ... and with the files changed nothing proves it: refused.
    changes = [Change(tmp_path / "httpd.conf", time.time())]
    with pytest.raises(IdentityError, match="nothing is signalled"):
        prove(cfg, cfg.group("myapp"), observation(shared), changes)


def test_title_proof_needs_every_titled_process_to_agree(tmp_path: Path) -> None:
    # One process of socket 2 shows another group's title: no title proof.
    cfg = config(tmp_path, TWO_GROUPS)
    mixed = [child(11, 1, "(wsgi:alpha)"), child(21, 2, "(wsgi:myapp)"), child(22, 2, "(wsgi:x)")]
    changes = [Change(tmp_path / "httpd.conf", time.time())]
    with pytest.raises(IdentityError, match="titled '\\(wsgi:myapp\\)', '\\(wsgi:x\\)'"):
        prove(cfg, cfg.group("myapp"), observation(mixed), changes)


def test_config_age_an_edit_in_the_tick_apache_loaded_it_is_a_change(tmp_path: Path) -> None:
    # File times have a clock tick's resolution: an edit in the same tick as
    # the load shows the very same time, and must count as after it.
    edited = tmp_path / "httpd.conf"
    edited.write_text("x")
    info = os.stat(edited)
    tick = max(info.st_mtime, info.st_ctime)
    found = config_changes([edited], since=tick)
    assert [c.path for c in found] == [edited]
    assert found[0].when == tick
    # One tick later than the edit it is not a change.
    assert config_changes([edited], since=tick + 0.001) == []


def test_config_age_a_symlink_repointed_counts_by_its_own_change_time(tmp_path: Path) -> None:
    old, link = tmp_path / "old.conf", tmp_path / "site.conf"
    old.write_text("x")
    since = os.stat(old).st_ctime + 0.001
    time.sleep(0.01)
    link.symlink_to(old)  # the target itself is older than `since`
    assert max(os.stat(old).st_mtime, os.stat(old).st_ctime) < since
    assert [c.path for c in config_changes([link], since)] == [link]


def test_config_age_loaded_at_is_the_earliest_socket_file(tmp_path: Path) -> None:
    first, second = tmp_path / "wsgi.1.0.1.sock", tmp_path / "wsgi.1.0.2.sock"
    first.write_text("")
    time.sleep(0.01)
    second.write_text("")
    socks = [GroupSocket(str(p), i, i, "3") for i, p in enumerate((second, first), 1)]
    assert _loaded_at(socks, parent_create_time=1.0) == os.stat(first).st_ctime


def test_config_age_without_socket_files_only_a_first_generation_is_known(
    tmp_path: Path,
) -> None:
    gone = str(tmp_path / "missing.sock")
    # Generation 0 cannot have loaded its configuration before the parent started.
    assert _loaded_at([GroupSocket(gone, 1, 1, "0")], parent_create_time=42.0) == 42.0
    # A later generation (a graceful restart) loaded it at an unknown time.
    assert _loaded_at([GroupSocket(gone, 1, 1, "2")], parent_create_time=42.0) is None
    mixed = [GroupSocket(gone, 1, 1, "0"), GroupSocket(gone, 2, 2, "2")]
    assert _loaded_at(mixed, parent_create_time=42.0) is None


def test_config_age_change_shows_the_millisecond(tmp_path: Path) -> None:
    # An edit in the second Apache loaded the configuration must be told apart.
    when = 1_700_000_000.123
    text = Change(tmp_path / "httpd.conf", when).describe()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))
    assert text == f"{tmp_path / 'httpd.conf'} (changed {stamp}.123)"


def test_config_age_refusal_lists_three_changes_and_counts_the_rest(tmp_path: Path) -> None:
    cfg = config(tmp_path, UNTITLED)
    path = tmp_path / "httpd.conf"
    changes = [Change(path, time.time() + i) for i in range(5)]
    with pytest.raises(IdentityError, match=r"httpd.conf \(changed .* and 2 more"):
        prove(cfg, cfg.group("myapp"), observation(PLAIN), changes)


def test_title_proof_a_child_still_showing_the_parents_title_is_not_yet_titled(
    tmp_path: Path,
) -> None:
    # Just forked, before mod_wsgi renamed it: a member, but no title evidence
    # either way, so the other members' (wsgi:myapp) still prove socket 2.
    cfg = config(tmp_path, TWO_GROUPS)
    fresh = child(23, 2, "/usr/sbin/apache2")
    obs = Observation(
        100, ROOM, sockets(1, 2), (*TITLED, fresh), time.time(), False, "/usr/sbin/apache2"
    )
    assert fresh in obs.members(2) and fresh not in obs.titled(2)
    changes = [Change(tmp_path / "httpd.conf", time.time())]
    assert prove(cfg, cfg.group("myapp"), obs, changes).socket.id == 2
    # Without knowing the parent's title, that child contradicts the title.
    plain = Observation(100, ROOM, sockets(1, 2), (*TITLED, fresh), time.time(), False)
    with pytest.raises(IdentityError):
        prove(cfg, cfg.group("myapp"), plain, changes)


# -- the edges the fourth mutation run left ---------------------------------------------------


def as_root(obs: Observation) -> Observation:
    """The same observation of an Apache whose parent runs as root (daemons switch user)."""
    return Observation(obs.parent_pid, obs.title_room, obs.sockets, obs.children, obs.loaded_at)


def test_daemons_running_as_the_groups_user_are_not_another_users(tmp_path: Path) -> None:
    # A uid above 256 (CPython shares no object for it): compared by value.
    cfg = config(tmp_path, UNTITLED.replace("processes=3", "processes=3 user=#1000"))
    uid = int("1000")
    obs = as_root(observation([child(21, 2, "/usr/sbin/apache2", uid=uid)]))
    assert prove(cfg, cfg.group("myapp"), obs, []).socket.id == 2


def test_a_daemon_whose_uid_cannot_be_read_is_not_another_users(tmp_path: Path) -> None:
    cfg = config(tmp_path, UNTITLED.replace("processes=3", "processes=3 user=#1000"))
    obs = as_root(observation([child(21, 2, "/usr/sbin/apache2", uid=None)]))
    assert prove(cfg, cfg.group("myapp"), obs, []).socket.id == 2


def test_a_user_name_unknown_here_checks_no_uid(tmp_path: Path) -> None:
    # "x5" is a name (only "#5" is a uid); unknown to this host: nothing to compare.
    cfg = config(tmp_path, UNTITLED.replace("processes=3", "processes=3 user=x5"))
    obs = as_root(observation([child(21, 2, "/usr/sbin/apache2", uid=33)]))
    assert prove(cfg, cfg.group("myapp"), obs, []).socket.id == 2


def test_fewer_group_sockets_than_configured_groups_refuses(tmp_path: Path) -> None:
    cfg = config(tmp_path, UNTITLED)
    with pytest.raises(IdentityError, match="runs 1 daemon group socket.*defines 2"):
        prove(cfg, cfg.group("myapp"), observation(PLAIN, ids=(2,)), [])


def test_as_many_processes_as_configured_is_not_too_many(tmp_path: Path) -> None:
    cfg = config(tmp_path, UNTITLED)
    full = [child(20 + i, 2, "/usr/sbin/apache2") for i in range(3)]
    assert prove(cfg, cfg.group("myapp"), observation(full), []).socket.id == 2


def test_proof_by_position_names_the_title_only_when_there_is_one(tmp_path: Path) -> None:
    cfg = config(tmp_path, UNTITLED)
    plain = prove(cfg, cfg.group("myapp"), observation(PLAIN), [])
    assert plain.proof == "socket 2, configuration unchanged since Apache loaded it"
    # A cut title proves nothing by itself: the position does, and the proof names it.
    cfg = config(tmp_path, TWO_GROUPS)
    cut = [child(11, 1, "(wsgi:a"), child(21, 2, "(wsgi:m")]
    obs = Observation(100, 7, sockets(1, 2), tuple(cut), time.time())
    assert prove(cfg, cfg.group("myapp"), obs, []).proof == (
        "socket 2, configuration unchanged since Apache loaded it, processes titled '(wsgi:m'"
    )


def test_title_proof_not_yet_titled_is_a_child_showing_the_parents_very_title_only() -> None:
    # Titles are read from /proc one by one: equal strings, never the same object.
    parent = "".join(["/usr/sbin/", "apache2"])
    just_forked = child(21, 2, "".join(["/usr/sbin/", "apache2"]))
    after = child(22, 2, "myapp-web")  # a free display-name sorting after the parent's title
    obs = Observation(
        parent_pid=100,
        title_room=ROOM,
        sockets=sockets(1, 2),
        children=(just_forked, after),
        loaded_at=time.time(),
        parent_title=parent,
    )
    assert obs.titled(2) == (after,)


def test_refusal_of_a_group_already_titled_by_its_name_does_not_ask_for_that_title(
    tmp_path: Path,
) -> None:
    # It has display-name=%{GROUP}, whole: the processes on its socket just do not show it.
    cfg = config(tmp_path, TWO_GROUPS)
    changes = [Change(tmp_path / "httpd.conf", time.time())]
    with pytest.raises(IdentityError) as info:
        prove(cfg, cfg.group("myapp"), observation(PLAIN), changes)
    message = str(info.value)
    assert "titled '/usr/sbin/apache2', not '(wsgi:myapp)'" in message
    assert message.endswith("so the configuration it runs is the one on disk")


def test_as_many_group_sockets_as_groups_past_256_is_no_mismatch(tmp_path: Path) -> None:
    # Counts compared by value: CPython shares the int objects up to 256 only.
    count = 300
    cfg = config(tmp_path, "".join(f"WSGIDaemonProcess g{i}\n" for i in range(count)))
    obs = observation([child(1000, 2, "/usr/sbin/apache2")], ids=tuple(range(1, count + 1)))
    identity = prove(cfg, cfg.group("g1"), obs, [])
    assert identity.socket.id == 2 and identity.config_current
