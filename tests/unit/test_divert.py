"""Hand-run `drain` and `undrain` (wsgi_drain/divert.py): what each puts back, and the journal.

The routers are scripted fakes of our own Router interface, handed out by
spec (`divert._router` replaced): each rule here is about which server
wsgi-drain may put back, never about a load balancer's protocol (the
integration suites drive the real HAProxy: test_operator_state.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.children import reap
from wsgi_drain import divert as divert_mod
from wsgi_drain.config import Settings
from wsgi_drain.deadline import Deadline
from wsgi_drain.divert import drain, undrain
from wsgi_drain.errors import ConfigError, JournalError, LockedError, RouterError
from wsgi_drain.routers import RouterState
from wsgi_drain.state import Journal

A, B = "command:/srv/lb-a", "command:/srv/lb-b"


class Fake:
    """One server behind a router: its admin state, peers, and the commands received."""

    def __init__(self, spec: str, admin: str = "ready", peers_up: int | None = 2) -> None:
        self.spec, self.admin, self.peers_up = spec, admin, peers_up
        self.peers_out: tuple[str, ...] = ()
        self.commands: list[str] = []
        self.fail_restore = False
        self.after_divert: dict[str, object] = {}

    @property
    def name(self) -> str:
        return f"fake {self.spec}"

    def state(self) -> RouterState:
        return RouterState(name=self.spec, admin=self.admin, status="UP", sessions=0,
                           queued=1, peers_up=self.peers_up, peers_out=self.peers_out)  # fmt: skip

    def divert(self) -> None:
        self.commands.append("divert")
        self.admin = "drain"
        for key, value in self.after_divert.items():
            setattr(self, key, value)

    def wait_drained(self, deadline: Deadline) -> RouterState:
        self.commands.append("wait")
        return self.state()

    def restore(self) -> None:
        self.commands.append("restore")
        if self.fail_restore:
            raise RouterError(self.name, "socket unreachable")
        self.admin = "ready"


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> dict[str, Fake]:
    table = {A: Fake(A), B: Fake(B)}
    monkeypatch.setattr(divert_mod, "_router", lambda settings, spec: table[spec])
    return table


def settings(tmp_path: Path, *routers: str, **extra: object) -> Settings:
    options: dict[str, object] = {"drain_timeout": 0.0}
    options.update(extra)
    return Settings(group="myapp", routers=routers, state_dir=tmp_path, **options)  # type: ignore[arg-type]


def said() -> tuple[list[tuple[str, str]], object]:
    lines: list[tuple[str, str]] = []
    return lines, lambda kind, message: lines.append((kind, message))


def journal(tmp_path: Path, kind: str = "drain") -> Journal | None:
    return Journal.load(tmp_path, "myapp", kind)


def left_by_restart(tmp_path: Path, routers: list[str], before: dict[str, str]) -> None:
    Journal(group="myapp", pid=99999, started=1.0, phase="left-diverted", routers=routers,
            before=before, diverted=list(routers)).save(tmp_path)  # fmt: skip


# -- drain ----------------------------------------------------------------------------------------


def test_drain_without_a_router_says_how_to_name_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        drain(settings(tmp_path), lambda kind, message: None)
    assert str(err.value) == (
        "no router for group 'myapp': pass --router KIND:SPEC (or --haproxy "
        "SOCKET:BACKEND/SERVER), or name it in /etc/wsgi-drain.toml"
    )


def test_drain_diverts_a_ready_server_and_journals_it_before_the_command(
    tmp_path: Path, fakes: dict[str, Fake]
) -> None:
    seen: list[Journal | None] = []
    fakes[A].after_divert = {}
    original = fakes[A].divert

    def divert_seeing_the_journal() -> None:
        seen.append(journal(tmp_path))
        original()

    fakes[A].divert = divert_seeing_the_journal  # type: ignore[method-assign]
    lines, progress = said()
    result = drain(settings(tmp_path, A), progress)  # type: ignore[arg-type]
    written = seen[0]
    assert written is not None and written.diverted == [A] and written.before == {A: "ready"}
    assert fakes[A].commands == ["divert", "wait"]
    assert result.notes == [f"fake {A}: drain (was ready)"]
    assert [s.admin for s in result.states] == ["drain"]
    assert lines == [("divert", f"fake {A}: drain"), ("divert", f"fake {A}: 0 in flight, 1 queued")]
    kept = journal(tmp_path)
    assert kept is not None and kept.kind == "drain" and kept.phase == "drained"
    assert kept.routers == [A] and kept.diverted == [A]


def test_drain_leaves_a_server_already_out_and_journals_nothing(
    tmp_path: Path, fakes: dict[str, Fake]
) -> None:
    fakes[A].admin = "maint"
    result = drain(settings(tmp_path, A), lambda kind, message: None)
    assert fakes[A].commands == ["wait"] and result.notes == [
        f"fake {A}: already in maint, left so"
    ]
    assert journal(tmp_path) is None


@pytest.mark.parametrize(("min_peers", "noted"), [(1, True), (0, False), ("all", False)])
def test_drain_says_a_peer_count_it_cannot_check_is_taken_on_trust(
    tmp_path: Path, fakes: dict[str, Fake], min_peers: object, noted: bool
) -> None:
    fakes[A].peers_up = None
    if min_peers == "all":
        with pytest.raises(RouterError):  # "all" cannot be checked: refused, not trusted
            drain(settings(tmp_path, A, min_peers=min_peers), lambda kind, message: None)
        return
    result = drain(settings(tmp_path, A, min_peers=min_peers), lambda kind, message: None)
    trust = f"fake {A} cannot tell how many other servers are UP: --min-peers 1 taken on trust"
    assert (trust in result.notes) is noted
    assert any("taken on trust" in note for note in result.notes) is noted


def test_drain_refused_at_a_later_router_puts_the_first_back(
    tmp_path: Path, fakes: dict[str, Fake]
) -> None:
    fakes[B].peers_up = 0
    with pytest.raises(RouterError) as err:
        drain(settings(tmp_path, A, B), lambda kind, message: None)
    assert str(err.value) == (
        f"fake {B}: 0 other server(s) UP, --min-peers 1 needed: draining this one would fail "
        "every request, or take a second host out (lower --min-peers only if that is really "
        "what you want)"
    )
    assert fakes[A].commands == ["divert", "restore"] and fakes[A].admin == "ready"
    assert "divert" not in fakes[B].commands and journal(tmp_path) is None


def test_drain_that_backed_off_says_so(tmp_path: Path, fakes: dict[str, Fake]) -> None:
    # Another host went out as this one did, and came back during --peer-wait.
    reads = {"n": 0}
    fake = fakes[A]
    plain_state = fake.state

    def state() -> RouterState:
        reads["n"] += 1
        got = plain_state()
        if reads["n"] == 3:  # the recount right after the first divert
            return RouterState(name=A, admin=got.admin, status="UP", sessions=0, queued=0,
                               peers_up=0, peers_out=("web2 (drain)",))  # fmt: skip
        return got

    fake.state = state  # type: ignore[method-assign]
    result = drain(settings(tmp_path, A, peer_wait=30.0), lambda kind, message: None)
    assert fake.commands == ["divert", "restore", "divert", "wait"]
    assert result.notes[-1].startswith("waited ") and result.notes[-1].endswith(
        "s for other servers, backed off 1 time(s)"
    )
    kept = journal(tmp_path)
    assert kept is not None and kept.diverted == [A]


# -- undrain ----------------------------------------------------------------------------------


def test_undrain_puts_back_what_wsgi_drain_diverted_and_removes_the_journal(
    tmp_path: Path, fakes: dict[str, Fake]
) -> None:
    drain(settings(tmp_path, A), lambda kind, message: None)
    lines, progress = said()
    result = undrain(settings(tmp_path), progress)  # type: ignore[arg-type]
    assert fakes[A].admin == "ready" and fakes[A].commands[-1] == "restore"
    assert result.notes == [f"fake {A}: ready (its state before wsgi-drain diverted it)"]
    assert result.journal_removed and journal(tmp_path) is None
    assert ("restore", "removed the journal left by a hand-run drain") in lines


def test_undrain_of_a_restart_journal_names_the_pid(tmp_path: Path, fakes: dict[str, Fake]) -> None:
    fakes[A].admin = "drain"
    left_by_restart(tmp_path, [A], {A: "ready"})
    lines, progress = said()
    undrain(settings(tmp_path), progress)  # type: ignore[arg-type]
    assert ("restore", "removed the journal left by pid 99999") in lines
    assert journal(tmp_path, "restart") is None


@pytest.mark.parametrize(
    ("admin", "before", "ours", "note", "restored"),
    [
        ("ready", "ready", True, "ready (already)", False),
        ("maint", "ready", True, "left in maint: someone set it after wsgi-drain diverted it; "
         "put it back in rotation by hand (fake command:/srv/lb-a) if you mean it", False),
        ("drain", "maint", False, "left in drain: it was in maint before wsgi-drain ran, which "
         "did not touch it", False),
        ("drain", None, False, "ready (was in drain)", True),
        ("maint", None, False, "left in maint, which wsgi-drain never sets (an operator's "
         "maintenance?); put it back in rotation by hand (fake command:/srv/lb-a) if you mean "
         "it", False),
    ],
)  # fmt: skip
def test_undrain_puts_back_only_what_wsgi_drain_took_out(
    tmp_path: Path,
    fakes: dict[str, Fake],
    admin: str,
    before: str | None,
    ours: bool,
    note: str,
    restored: bool,
) -> None:
    fakes[A].admin = admin
    if before is not None:
        Journal(group="myapp", pid=1, started=1.0, kind="drain", routers=[A], before={A: before},
                diverted=[A] if ours else []).save(tmp_path)  # fmt: skip
    result = undrain(settings(tmp_path, A), lambda kind, message: None)
    assert result.notes[0] == f"fake {A}: {note}"
    assert ("restore" in fakes[A].commands) is restored
    assert [s.admin for s in result.states] == ["ready" if restored else admin]


def test_undrain_puts_back_a_drained_server_a_journal_saw_ready_but_never_diverted(
    tmp_path: Path, fakes: dict[str, Fake]
) -> None:
    # A restart killed before its divert: the journal saw A ready and diverted nothing.
    # A in drain now is no earlier state of the operator's: named, it is put back.
    Journal(group="myapp", pid=99999, started=1.0, routers=[A], before={A: "ready"}).save(tmp_path)
    fakes[A].admin = "drain"
    result = undrain(settings(tmp_path, A), lambda kind, message: None)
    assert fakes[A].commands == ["restore"] and f"fake {A}: ready (was in drain)" in result.notes


def test_undrain_of_one_router_leaves_the_journal_naming_the_others(
    tmp_path: Path, fakes: dict[str, Fake]
) -> None:
    drain(settings(tmp_path, A, B), lambda kind, message: None)
    result = undrain(settings(tmp_path, A), lambda kind, message: None)
    assert fakes[A].admin == "ready" and fakes[B].admin == "drain"
    assert not result.journal_removed
    assert result.notes[-1] == (
        "left out, as asked (the journal of a hand-run drain still names them; `wsgi-drain "
        f"undrain --group myapp --router SPEC` puts one back): {B}"
    )
    kept = journal(tmp_path)
    assert kept is not None and kept.routers == [B] and kept.diverted == [B]
    assert kept.before == {B: "ready"}


def test_undrain_without_routers_repairs_every_one_the_journals_name(
    tmp_path: Path, fakes: dict[str, Fake]
) -> None:
    fakes[A].admin = fakes[B].admin = "drain"
    left_by_restart(tmp_path, [A, B], {A: "ready", B: "ready"})
    undrain(settings(tmp_path), lambda kind, message: None)
    assert fakes[A].admin == fakes[B].admin == "ready"


def test_undrain_with_nothing_named_anywhere_says_how_to_name_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no router for group 'myapp'"):
        undrain(settings(tmp_path), lambda kind, message: None)


def test_undrain_failure_at_one_router_still_handles_the_others_then_fails(
    tmp_path: Path, fakes: dict[str, Fake]
) -> None:
    drain(settings(tmp_path, A, B), lambda kind, message: None)
    fakes[A].fail_restore = True
    with pytest.raises(RouterError) as err:
        undrain(settings(tmp_path), lambda kind, message: None)
    assert str(err.value) == f"undrain: fake {A}: socket unreachable"
    assert fakes[B].admin == "ready"
    kept = journal(tmp_path)
    assert kept is not None and A in kept.diverted, "the journal still names what is out"


def test_undrain_moves_a_broken_journal_aside_when_routers_are_named(
    tmp_path: Path, fakes: dict[str, Fake]
) -> None:
    fakes[A].admin = "drain"
    path = Journal.path_for(tmp_path, "myapp", "drain")
    path.write_text("{not json")
    result = undrain(settings(tmp_path, A), lambda kind, message: None)
    assert fakes[A].admin == "ready" and not path.exists()
    aside = list(tmp_path.glob(path.name + ".broken-*"))
    assert len(aside) == 1 and aside[0].read_text() == "{not json"
    assert result.notes[0].endswith(
        f"It was moved to {aside[0]}; the routers named were handled without it (their state "
        "before the run is unknown)"
    )


def test_undrain_with_a_broken_journal_and_no_router_named_refuses(tmp_path: Path) -> None:
    path = Journal.path_for(tmp_path, "myapp", "drain")
    path.write_text(json.dumps({"group": "myapp"}))
    with pytest.raises(JournalError):
        undrain(settings(tmp_path), lambda kind, message: None)
    assert path.exists(), "nothing moved when no router was named"


# -- how to put one back by hand, in the router's terms --------------------------------------


class Target:
    def __init__(self, **fields: str) -> None:
        self.__dict__.update(fields)


def test_by_hand_speaks_haproxy_nginx_or_plainly() -> None:
    haproxy, nginx, plain = Fake(A), Fake(A), Fake(A)
    haproxy.target = Target(backend="be_app", server="web1")  # type: ignore[attr-defined]
    nginx.target = Target(server="10.0.0.1:8080", upstream_file="/etc/nginx/up.conf")  # type: ignore[attr-defined]
    assert divert_mod._by_hand(haproxy) == (
        "`set server be_app/web1 state ready` on the HAProxy socket"
    )
    assert divert_mod._by_hand(nginx) == (
        "remove the `down` of `server 10.0.0.1:8080` in /etc/nginx/up.conf, then reload nginx"
    )
    assert divert_mod._by_hand(plain) == f"put it back in rotation by hand (fake {A})"


def test_drain_goes_on_past_a_server_already_out_to_the_next(
    tmp_path: Path, fakes: dict[str, Fake]
) -> None:
    fakes[A].admin = "maint"
    result = drain(settings(tmp_path, A, B), lambda kind, message: None)
    assert fakes[B].commands[0] == "divert" and "divert" not in fakes[A].commands
    assert f"fake {B}: drain (was ready)" in result.notes


HOLD = """
import sys, time
from pathlib import Path
from wsgi_drain import state
where, kind = Path(sys.argv[1]), sys.argv[2]
lock = (state.router_lock(where, sys.argv[3], "myapp") if kind == "router"
        else state.group_lock(where, "myapp", what="drain", shared=True))
with lock:
    sys.stdout.write("held\\n"); sys.stdout.flush()
    time.sleep(60)
"""


def holding(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path), *args], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None and child.stdout.readline() == "held\n"
    return child


def test_hand_drains_of_one_group_share_its_lock_but_not_a_server(
    tmp_path: Path, fakes: dict[str, Fake]
) -> None:
    other_host = holding(tmp_path, "group")  # another server's drain on this LB host
    try:
        drain(settings(tmp_path, A), lambda kind, message: None)
        undrain(settings(tmp_path, A), lambda kind, message: None)
        assert fakes[A].commands[0] == "divert" and fakes[A].admin == "ready"
    finally:
        reap([other_host])
    same_server = holding(tmp_path, "router", B)
    try:
        with pytest.raises(LockedError):
            drain(settings(tmp_path, B), lambda kind, message: None)
        with pytest.raises(LockedError):
            undrain(settings(tmp_path, B), lambda kind, message: None)
        assert fakes[B].commands == []
    finally:
        reap([same_server])


@pytest.mark.parametrize(
    ("waited", "backoffs", "noted"),
    [(0.0, 0, False), (0.999, 0, False), (1.0, 0, True), (1.5, 0, True), (0.2, 1, True)],
)
def test_drain_says_it_waited_for_other_servers_from_one_second_or_a_back_off(
    tmp_path: Path,
    fakes: dict[str, Fake],
    monkeypatch: pytest.MonkeyPatch,
    waited: float,
    backoffs: int,
    noted: bool,
) -> None:
    # The turn-taking itself is peers.py's (tests/unit/test_peers*.py): here it
    # diverts at once and reports the wait it was given.
    def in_turn(routers: list[Fake], *args: object, divert: object, **kw: object) -> object:
        for router in routers:
            divert(router)  # type: ignore[operator]
        return divert_mod.peers.Turn(waited=waited, backoffs=backoffs)

    monkeypatch.setattr(divert_mod.peers, "divert_in_turn", in_turn)
    result = drain(settings(tmp_path, A), lambda kind, message: None)
    note = f"waited {waited:.1f} s for other servers, backed off {backoffs} time(s)"
    assert (note in result.notes) is noted
    assert fakes[A].commands == ["divert", "wait"]


# -- undrain: the readiness wait and a journal changed by another command -----------------------


def test_undrain_waits_for_the_group_to_be_ready_before_putting_anything_back(
    tmp_path: Path, fakes: dict[str, Fake], monkeypatch: pytest.MonkeyPatch
) -> None:
    # ready.wait_ready reads a real Apache (tests/integration): here it answers as told.
    from wsgi_drain import ready

    drain(settings(tmp_path, A), lambda kind, message: None)
    asked: list[tuple[float, list[str]]] = []

    def wait_ready(settings: Settings, timeout: float, progress: object) -> str:
        asked.append((timeout, list(fakes[A].commands)))
        return "3 process(es) up"

    monkeypatch.setattr(ready, "wait_ready", wait_ready)
    result = undrain(settings(tmp_path), lambda kind, message: None, wait_ready=7.5)
    assert asked == [(7.5, ["divert", "wait"])], "waited once, before the restore"
    assert result.notes[0] == "ready: 3 process(es) up"
    assert fakes[A].admin == "ready"


def test_undrain_of_a_group_not_ready_puts_nothing_back(
    tmp_path: Path, fakes: dict[str, Fake], monkeypatch: pytest.MonkeyPatch
) -> None:
    from wsgi_drain import ready
    from wsgi_drain.errors import UnhealthyError

    drain(settings(tmp_path, A), lambda kind, message: None)

    def not_ready(settings: Settings, timeout: float, progress: object) -> str:
        raise UnhealthyError("0 of 3 process(es) up")

    monkeypatch.setattr(ready, "wait_ready", not_ready)
    with pytest.raises(UnhealthyError):
        undrain(settings(tmp_path), lambda kind, message: None, wait_ready=1.0)
    assert fakes[A].admin == "drain" and journal(tmp_path) is not None


def test_undrain_a_journal_another_undrain_removed_meanwhile_is_left_alone(
    tmp_path: Path, fakes: dict[str, Fake]
) -> None:
    drain(settings(tmp_path, A), lambda kind, message: None)
    plain_restore = fakes[A].restore

    def restore_and_remove() -> None:  # another undrain finished as ours restored
        plain_restore()
        Journal.path_for(tmp_path, "myapp", "drain").unlink()

    fakes[A].restore = restore_and_remove  # type: ignore[method-assign]
    lines, progress = said()
    result = undrain(settings(tmp_path), progress)  # type: ignore[arg-type]
    assert fakes[A].admin == "ready"
    assert not result.journal_removed
    assert not any("removed the journal" in message for _kind, message in lines)


def test_undrain_a_journal_broken_meanwhile_is_repaired_from_the_one_read(
    tmp_path: Path, fakes: dict[str, Fake]
) -> None:
    drain(settings(tmp_path, A), lambda kind, message: None)
    plain_restore = fakes[A].restore

    def restore_and_break() -> None:
        plain_restore()
        Journal.path_for(tmp_path, "myapp", "drain").write_text("[]")

    fakes[A].restore = restore_and_break  # type: ignore[method-assign]
    result = undrain(settings(tmp_path), lambda kind, message: None)
    assert fakes[A].admin == "ready"
    assert result.journal_removed and not Journal.path_for(tmp_path, "myapp", "drain").exists()
