"""The restart's metrics textfile, its history and the failures between runs (issue 21)."""

from __future__ import annotations

import io
import os
import stat
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from wsgi_drain import history
from wsgi_drain.cli import cli
from wsgi_drain.impact import Impact, Source, log_source
from wsgi_drain.outcome import Outcome
from wsgi_drain.report_runs import print_history, restart_metrics

LINE = (
    "[{stamp}] [wsgi:error] [pid 11994:tid 11999] [client 127.0.0.1:38582] Truncated or oversized "
    "response headers received from daemon process 'myapp': /srv/app.wsgi\n"
)


def outcome(failed: int | None, *, group: str = "myapp") -> Outcome:
    out = Outcome(group=group, mode="drain", requested_mode="drain", signal="SIGUSR1")
    out.duration = 4.25
    for pid, ending in ((10, "drained"), (11, "drained"), (12, "stuck")):
        out.record(pid).ending = ending
    out.impact = Impact(started=1.0, ended=2.0)
    if failed is None:
        out.impact.sources.append(Source.unread("apache-log", "a", "pipe"))
    else:
        out.impact.sources.append(log_source("apache-log", "a", ["x"] * failed))
    return out


def samples(text: str) -> dict[str, tuple[dict[str, str], float]]:
    found = {}
    for family in text_string_to_metric_families(text):
        (sample,) = family.samples
        found[sample.name] = (sample.labels, sample.value)
    return found


def test_impact_metrics_parse_as_prometheus_text_with_the_runs_figures() -> None:
    text = restart_metrics(outcome(2, group='we"ird'), ended=1700000000.5)
    got = samples(text)
    assert got["wsgi_drain_restart_impact_failed"] == ({"group": 'we"ird'}, 2)
    assert got["wsgi_drain_restart_processes_replaced"][1] == 2
    assert got["wsgi_drain_restart_processes"][1] == 3
    assert got["wsgi_drain_restart_duration_seconds"][1] == 4.25
    assert got["wsgi_drain_restart_end_timestamp_seconds"][1] == 1700000000.5
    assert got["wsgi_drain_restart_success"][1] == 1
    assert got["wsgi_drain_restart_verdict"][0]["verdict"] == "success"
    assert got["wsgi_drain_restart_impact_known"][1] == 1


def test_impact_metrics_leave_out_an_unknown_count_rather_than_say_0() -> None:
    got = samples(restart_metrics(outcome(None)))
    assert "wsgi_drain_restart_impact_failed" not in got
    assert got["wsgi_drain_restart_impact_known"][1] == 0


def test_impact_history_is_bounded_private_and_oldest_first(tmp_path: Path) -> None:
    for i in range(history.MAX_RUNS + 3):
        history.append(tmp_path, outcome(i))
    runs = history.load(tmp_path, "myapp")
    assert len(runs) == history.MAX_RUNS
    assert runs[0]["impact"]["failed"] == 3 and runs[-1]["impact"]["failed"] == 22
    assert runs[-1]["replaced"] == 2 and runs[-1]["verdict"] == "success"
    mode = stat.S_IMODE(os.stat(history.path_for(tmp_path, "myapp")).st_mode)
    assert mode == 0o600
    assert set(history.all_groups(tmp_path)) == {"myapp"}
    assert history.last_end(tmp_path, "myapp") == runs[-1]["ended"]


def test_impact_history_unreadable_file_is_no_history_not_a_crash(tmp_path: Path) -> None:
    history.path_for(tmp_path, "myapp").write_text("{not json")
    assert history.load(tmp_path, "myapp") == []
    history.append(tmp_path, outcome(1))
    assert len(history.load(tmp_path, "myapp")) == 1


def _stamp(when: float) -> str:
    return time.strftime("%a %b %d %H:%M:%S.000000 %Y", time.localtime(when))


def test_impact_before_run_counts_only_lines_between_the_last_run_and_this_one(
    tmp_path: Path,
) -> None:
    log = tmp_path / "error.log"
    now = time.time()
    log.write_text(
        LINE.format(stamp=_stamp(now - 100))  # before the last run ended: that run's
        + LINE.format(stamp=_stamp(now - 30))  # between the runs: an apachectl graceful
        + LINE.format(stamp=_stamp(now - 20)).replace("'myapp'", "'other'")
        + LINE.format(stamp=_stamp(now + 5))  # after this run started: this run's own
    )
    source = history.before_run(log, "myapp", now - 60, now)
    assert source.read and source.failed == 1
    assert not history.before_run(log, "myapp", None, now).read  # no earlier run: unknown
    assert not history.before_run(tmp_path / "gone.log", "myapp", now - 60, now).read


def test_impact_status_history_text_says_the_loss_before_a_run(tmp_path: Path) -> None:
    out = outcome(0)
    assert out.impact is not None
    out.impact.before_run = log_source("apache-log", "a", ["Truncated ... 'myapp'"])
    out.impact.before_since = time.time() - 60
    history.append(tmp_path, out)
    text = io.StringIO()
    print_history(history.all_groups(tmp_path), tmp_path, text)
    words = text.getvalue()
    assert "group myapp: last 1 run(s)" in words
    assert "impact: 0 requests failed (Apache log: none)" in words
    assert "before it: 1 request failed outside any run" in words
    result = CliRunner().invoke(
        cli, ["status", "--history", "--state-dir", str(tmp_path), "--json"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert '"wsgi-drain/history/v1"' in result.output


def test_impact_restart_textfile_is_refused_under_sudo(monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() != 0:
        monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setenv("SUDO_USER", "deploy")
    monkeypatch.delenv("WSGI_DRAIN_CONFIG", raising=False)
    result = CliRunner().invoke(
        cli, ["restart", "--group", "myapp", "--textfile", "/etc/cron.d/x"], catch_exceptions=False
    )
    assert result.exit_code == 2, result.output
    assert "--textfile is refused when run as root through sudo (by deploy)" in result.output
