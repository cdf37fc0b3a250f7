"""Rules of a run over several groups (`restart --group A --group B`), without Apache.

Which health URL is each group's, the routers every group shares, the one
failure policy for the host, the journal saved and removed as one copy per
group, the run's one verdict, and the command line's usage errors.
"""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.unit.test_restart_phases import RecordingRouter
from wsgi_drain import report_groups
from wsgi_drain.cli import cli
from wsgi_drain.config import Settings, health_urls_by_group, one_host
from wsgi_drain.errors import Interrupted, NotFoundError, UnhealthyError, UsageError
from wsgi_drain.groups_outcome import GroupsOutcome
from wsgi_drain.interrupts import Interrupts
from wsgi_drain.outcome import Outcome, RouterRecord
from wsgi_drain.restart.policy import Verdict, host_verdict
from wsgi_drain.restart.records import Routing, Run
from wsgi_drain.restart.restore import settle
from wsgi_drain.state import Journal
from wsgi_drain.status import ExitStatus

# -- --health-url GROUP=URL ---------------------------------------------------------------------


def test_health_url_group_equals_url_names_each_groups_own() -> None:
    urls = ["myapp=http://127.0.0.1:8080/health", "admin=http://127.0.0.1:8080/admin/health"]
    assert health_urls_by_group(urls, ["myapp", "admin"]) == {
        "myapp": "http://127.0.0.1:8080/health",
        "admin": "http://127.0.0.1:8080/admin/health",
    }


def test_a_plain_health_url_is_the_single_groups_even_with_an_equals_in_its_query() -> None:
    url = "http://127.0.0.1:8080/health?probe=1"
    assert health_urls_by_group([url], ["myapp"]) == {"myapp": url}
    assert health_urls_by_group([f"myapp={url}"], ["myapp"]) == {"myapp": url}


def test_a_plain_health_url_with_several_groups_is_a_usage_error_with_the_fix() -> None:
    with pytest.raises(UsageError) as err:
        health_urls_by_group(["http://127.0.0.1/health"], ["myapp", "admin"])
    assert "--health-url myapp=URL --health-url admin=URL" in str(err.value)


def test_a_health_url_for_a_group_not_in_the_run_is_refused() -> None:
    with pytest.raises(UsageError, match="'shop' is not a group of this run"):
        health_urls_by_group(["shop=http://127.0.0.1/health"], ["myapp", "admin"])


def test_a_groups_health_url_given_twice_is_refused() -> None:
    with pytest.raises(UsageError, match="twice"):
        health_urls_by_group(["a=http://x/1", "a=http://x/2"], ["a", "b"])


# -- one host: every group knows every router ----------------------------------------------------


def test_one_host_gives_every_group_every_router_and_the_first_groups_divert_settings() -> None:
    a = Settings(group="a", haproxy=("/s:be/web1",), drain_timeout=10, state_dir=Path("/r1"))
    b = Settings(group="b", routers=("command:hook web1", "haproxy:/s:be/web1"), drain_timeout=99)
    each = one_host([a, b])
    assert [s.routers for s in each] == [("haproxy:/s:be/web1", "command:hook web1")] * 2
    assert all(s.haproxy == () for s in each)
    assert [s.drain_timeout for s in each] == [10, 10]
    assert [s.state_dir for s in each] == [Path("/r1")] * 2
    assert [s.group for s in each] == ["a", "b"]


# -- the one failure policy for the host ---------------------------------------------------------


def test_host_goes_back_only_when_every_signalled_group_is_healthy() -> None:
    healthy, unhealthy = Verdict(True, True), Verdict(True, False)
    assert host_verdict([healthy, healthy]) == Verdict(True, True)
    assert host_verdict([healthy, unhealthy]) == Verdict(True, False)
    assert host_verdict([unhealthy, healthy]) == Verdict(True, False)
    # Unknown after its signal is not healthy.
    assert host_verdict([healthy, Verdict(True, None)]) == Verdict(True, False)


def test_a_group_never_signalled_does_not_keep_the_host_out() -> None:
    # Its old code still serves, untouched: the host may go back.
    assert host_verdict([Verdict(True, True), Verdict(False, None)]) == Verdict(True, True)
    assert host_verdict([Verdict(), Verdict()]) == Verdict(False, None)


def _host_settle(tmp_path: Path, verdicts: list[Verdict]) -> tuple[RecordingRouter, Run]:
    router = RecordingRouter("drain")
    rec = RouterRecord(name="recording:web1", before="ready", diverted=True)
    journal = Journal(group="myapp", pid=os.getpid(), started=time.time(),
                      routers=["recording:web1"], before={"recording:web1": "ready"},
                      diverted=["recording:web1"], groups=["myapp", "admin"])  # fmt: skip
    journal.save(tmp_path)
    routing = Routing(routers=(("recording:web1", router),), records=[rec], journal=journal)
    with Interrupts() as interrupts:
        out = Outcome(group="myapp, admin", mode="drain", requested_mode="drain", signal="SIGUSR1")
        settings = Settings(group="myapp", state_dir=tmp_path, lb_up_timeout=0)
        run = Run(settings, lambda kind, message: None, interrupts, out)
        settle(run, None, routing, host_verdict(verdicts))  # type: ignore[arg-type]
    return router, run


def test_one_unhealthy_group_leaves_the_host_diverted_and_both_journal_copies(
    tmp_path: Path,
) -> None:
    router, run = _host_settle(tmp_path, [Verdict(True, True), Verdict(True, False)])
    assert router.commands == [] and run.outcome.left_diverted
    for group in ("myapp", "admin"):
        kept = Journal.load(tmp_path, group)
        assert kept is not None and kept.phase == "left-diverted" and kept.group == group


def test_every_group_healthy_restores_the_host_once_and_removes_every_copy(
    tmp_path: Path,
) -> None:
    router, run = _host_settle(tmp_path, [Verdict(True, True), Verdict(True, True)])
    assert router.commands == ["restore"] and not run.outcome.left_diverted
    assert not any(Journal.path_for(tmp_path, g).exists() for g in ("myapp", "admin"))


# -- the journal of a run over several groups ----------------------------------------------------


def test_a_several_group_journal_is_one_copy_per_group_each_under_its_own_name(
    tmp_path: Path,
) -> None:
    journal = Journal(group="myapp", pid=1, started=1.0, groups=["myapp", "admin"])
    journal.save(tmp_path)
    copies = {g: json.loads(Journal.path_for(tmp_path, g).read_text()) for g in ("myapp", "admin")}
    assert {g: c["group"] for g, c in copies.items()} == {"myapp": "myapp", "admin": "admin"}
    loaded = Journal.load(tmp_path, "admin")
    assert loaded is not None and loaded.groups == ["myapp", "admin"]
    # Removed through any copy (as `undrain --group admin` does): every copy goes.
    loaded.remove(tmp_path)
    assert not list(tmp_path.glob("*.journal.json"))


def test_a_single_group_journal_stays_one_file(tmp_path: Path) -> None:
    Journal(group="myapp", pid=1, started=1.0).save(tmp_path)
    assert [p.name for p in tmp_path.glob("*.journal.json")] == ["myapp.journal.json"]


def test_a_journal_whose_groups_are_not_names_is_refused(tmp_path: Path) -> None:
    Journal.path_for(tmp_path, "myapp").write_text(
        json.dumps({"group": "myapp", "pid": 1, "started": 1.0, "groups": [1, 2]})
    )
    with pytest.raises(Exception, match="not a string"):
        Journal.load(tmp_path, "myapp")


# -- one verdict for the run ---------------------------------------------------------------------


def _outcome(group: str, error: Exception | None = None) -> Outcome:
    out = Outcome(group=group, mode="drain", requested_mode="drain", signal="SIGUSR1")
    out.error = error  # type: ignore[assignment]
    return out


def test_any_failed_group_decides_the_runs_status() -> None:
    result = GroupsOutcome(
        _outcome("myapp, admin"),
        [_outcome("myapp"), _outcome("admin", UnhealthyError("503"))],
    )
    assert result.status == ExitStatus.UNHEALTHY
    assert [o.group for o in result.failed] == ["admin"]
    assert report_groups.groups_dict(result)["failed_groups"] == ["admin"]
    assert report_groups.groups_message(result).startswith("group 'admin': 503")


def test_an_interrupt_outranks_a_groups_failure_and_success_needs_every_group() -> None:
    host = _outcome("myapp, admin", Interrupted("SIGTERM"))
    result = GroupsOutcome(host, [_outcome("myapp", NotFoundError("x")), _outcome("admin")])
    assert result.status == ExitStatus.INTERRUPTED
    assert GroupsOutcome(_outcome("h"), [_outcome("a"), _outcome("b")]).status == 0


def test_the_several_group_json_has_schema_v2_and_one_section_per_group() -> None:
    result = GroupsOutcome(_outcome("myapp, admin"), [_outcome("myapp"), _outcome("admin")])
    data = report_groups.groups_dict(result)
    assert data["schema"] == "wsgi-drain/restart/v2"
    assert [g["group"] for g in data["groups"]] == ["myapp", "admin"]
    assert all("schema" not in g and "routers" not in g for g in data["groups"])
    assert data["verdict"] == "success" and "routers" in data


# -- the command line ------------------------------------------------------------------------------


def _restart(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["restart", *args], catch_exceptions=False)
    return result.exit_code, result.output


def test_restart_without_a_group_says_how_to_name_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WSGI_DRAIN_GROUP", raising=False)
    code, output = _restart("--config", "/dev/null")
    assert code == 2 and "--group NAME (repeat it for several groups" in output


def test_all_groups_and_group_together_is_a_usage_error() -> None:
    code, output = _restart("--all-groups", "--group", "myapp")
    assert code == 2 and "not both" in output


def test_a_plain_health_url_with_two_groups_is_a_usage_error_on_the_command_line() -> None:
    code, output = _restart("-g", "a", "-g", "b", "--health-url", "http://127.0.0.1/health")
    assert code == 2 and "--health-url a=URL --health-url b=URL" in output
    assert "Traceback" not in output


def test_restart_help_teaches_several_groups() -> None:
    code, output = _restart("--help")
    assert code == 0
    for words in ("--all-groups", "GROUP=URL", "repeat", "several groups"):
        assert words in output


def test_wsgi_drain_group_names_one_group_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    from wsgi_drain.cli.several import choose_groups

    monkeypatch.setenv("WSGI_DRAIN_GROUP", "my app")
    kwargs = {"group": (), "all_groups": False, "health_url": ()}
    assert choose_groups(kwargs, {}, {}) == {"my app": None}
    assert kwargs["group"] == "my app"


def test_a_group_the_run_never_signalled_is_reported_not_restarted() -> None:
    result = GroupsOutcome(
        _outcome("myapp, admin"), [_outcome("myapp"), _outcome("admin", NotFoundError("no"))]
    )
    section = report_groups.groups_dict(result)["groups"][0]
    assert section["signalled"] is False and section["message"] == report_groups.NOT_RESTARTED
    text = io.StringIO()
    report_groups.print_groups(result, text)
    assert "group myapp: NOT RESTARTED" in text.getvalue()
    assert "group admin: NOT_FOUND" in text.getvalue()


def test_an_interrupt_marks_every_group_signalled_but_not_yet_verified() -> None:
    import signal

    from wsgi_drain.outcome import PhaseRecord
    from wsgi_drain.restart.several import Part, _interrupted

    with Interrupts() as interrupts:
        parts = []
        for name, signalled, verified in (
            ("a", True, True),
            ("b", True, False),
            ("c", False, False),
        ):
            out = _outcome(name)
            if verified:
                out.phases.append(PhaseRecord(name="verify"))
            run = Run(Settings(group=name), lambda kind, message: None, interrupts, out)
            parts.append(Part(run, signal.SIGUSR1, verdict=Verdict(signalled=signalled)))
        err = Interrupted("SIGINT")
        _interrupted(parts, err)
    assert [p.run.outcome.error for p in parts] == [None, err, None]


def test_a_group_name_read_from_apache_is_not_taken_for_a_typo() -> None:
    from wsgi_drain.config import resolve
    from wsgi_drain.errors import ConfigError

    data = {"groups": {"myapp": {"health_url": "http://127.0.0.1/health"}}}
    with pytest.raises(ConfigError, match="a typo"):
        resolve("myapp2", {}, data, "wsgi-drain.toml")
    # What cli/options.settings passes for a name read from Apache (--all-groups).
    from_apache = resolve("myapp2", {}, data, "wsgi-drain.toml", lambda _settings: True)
    assert from_apache.health_url is None


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--rollback", "/bin/true"], "--rollback"),
        (["--leftovers", "stop"], "--leftovers stop"),
        (["--textfile", "/tmp/wsgi-drain-never-written.prom"], "--textfile"),
    ],
)
def test_several_groups_refuse_what_only_a_one_group_run_does(
    tmp_path: Path, args: list[str], named: str
) -> None:
    # A several-group run has no rollback, leftovers or metrics phase yet:
    # asked for, it is a usage error before anything is read, never ignored.
    empty = tmp_path / "wsgi-drain.toml"
    empty.write_text("")
    result = CliRunner().invoke(
        cli,
        ["restart", "--group", "a", "--group", "b", "--state-dir", str(tmp_path), *args],
        env={"WSGI_DRAIN_CONFIG": str(empty)},
    )
    assert result.exit_code == 2, result.output
    assert named in result.output and "one group per run" in result.output
    assert not (tmp_path / "wsgi-drain-never-written.prom").exists()


def test_several_groups_failed_errors_are_said_once_on_stdout_naming_every_failed_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Decision 59: an error is printed once, in the report on stdout; stderr
    # keeps progress and a bug's traceback only.
    from tests.unit.test_check_messages import invoke
    from wsgi_drain.errors import NotReplacedError
    from wsgi_drain.restart import several

    result = GroupsOutcome(
        _outcome("myapp, admin, api"),
        [
            _outcome("myapp", UnhealthyError("health answered HTTP 503 in 3 ms (myapp-url)")),
            _outcome("admin"),
            _outcome("api", NotReplacedError("2 old processes still alive (api-pids)")),
        ],
    )
    monkeypatch.setattr(several, "restart_groups", lambda each, **kwargs: result)
    empty = tmp_path / "wsgi-drain.toml"
    empty.write_text("")
    monkeypatch.setenv("WSGI_DRAIN_CONFIG", str(empty))
    code, out, err = invoke(
        "restart", "-q", "--state-dir", str(tmp_path), "-g", "myapp", "-g", "admin", "-g", "api"
    )
    assert code == ExitStatus.UNHEALTHY
    first = out.splitlines()[0]
    assert first.startswith("wsgi-drain: UNHEALTHY - group 'myapp': health answered HTTP 503")
    assert "also failed: 'api'" in first and "'admin'" not in first
    assert "group api: NOT_REPLACED" in out and "(api-pids)" in out
    assert "myapp-url" not in err and "api-pids" not in err and "error" not in err, err
