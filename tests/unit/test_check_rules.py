"""`check`'s review findings, each reproduced: lock holder, textfile, severity, perfdata,
usage errors, the timeout, and a reused pid in the stuck rule."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

from click.testing import CliRunner

from wsgi_drain import check as check_mod
from wsgi_drain.check import CheckResult, Thresholds
from wsgi_drain.cli import cli
from wsgi_drain.errorlog import LifecycleEvent
from wsgi_drain.report_check import check_perfdata, prometheus_text
from wsgi_drain.state import flock_holder, write_atomic
from wsgi_drain.status import NagiosStatus

LOCKS = """\
1: FLOCK  ADVISORY  WRITE 4242 fd:01:5678 0 EOF
2: POSIX  ADVISORY  WRITE 99 08:02:5678 0 EOF
3: FLOCK  ADVISORY  WRITE 777 08:02:5678 0 EOF
"""


def test_lock_holder_compares_the_device_not_only_the_inode() -> None:
    assert flock_holder(LOCKS, os.makedev(0xFD, 0x01), 5678) == 4242
    assert flock_holder(LOCKS, os.makedev(0x08, 0x02), 5678) == 777
    assert flock_holder(LOCKS, os.makedev(0x08, 0x03), 5678) is None


def test_textfile_is_written_whole_with_its_mode_and_no_leftover(tmp_path: Path) -> None:
    target = tmp_path / "wsgi_drain.prom"
    target.symlink_to(tmp_path / "elsewhere")  # replaced, never followed
    write_atomic(target, "x 1\n")
    assert not target.is_symlink() and target.read_text() == "x 1\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert not (tmp_path / "elsewhere").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["wsgi_drain.prom"]


def test_textfile_help_and_type_once_per_metric_with_two_routers() -> None:
    result = CheckResult("myapp")
    result.routers_drained = {"haproxy a": False, "haproxy b": True}
    text = prometheus_text(result)
    assert text.count("# HELP wsgi_drain_router_drained") == 1
    assert text.count("# TYPE wsgi_drain_router_drained") == 1
    assert text.count("wsgi_drain_router_drained{") == 2


def test_check_severity_critical_over_warning_over_unknown_over_ok() -> None:
    def worst(*levels: NagiosStatus) -> NagiosStatus:
        result = CheckResult("g")
        for level in levels:
            result.add(level, "x")
        return result.status

    assert worst(NagiosStatus.UNKNOWN, NagiosStatus.CRITICAL) == NagiosStatus.CRITICAL
    assert worst(NagiosStatus.UNKNOWN, NagiosStatus.WARNING) == NagiosStatus.WARNING
    assert worst(NagiosStatus.OK, NagiosStatus.UNKNOWN) == NagiosStatus.UNKNOWN
    assert worst() == NagiosStatus.OK


def test_perfdata_thresholds_match_the_rules() -> None:
    result = CheckResult("g", expected=3, forced=0, processes_known=True)
    perf = check_perfdata(result, Thresholds(health_warn=1.0))
    # WARNING below 3 processes, CRITICAL below 1; forced exits WARNING above 0.
    assert "processes=0;3:;1:;0;3" in perf
    assert "forced_exits=0;0;;0;" in perf


def test_check_perfdata_has_no_process_count_when_it_is_not_known() -> None:
    """An UNKNOWN that could not count the processes reports no count, not a false 0."""
    result = CheckResult("g", expected=3, forced=0)
    result.add(NagiosStatus.UNKNOWN, "cannot tell group 'g''s processes from Apache's workers")
    perf = check_perfdata(result, Thresholds(health_warn=1.0))
    assert "processes=" not in perf
    assert "forced_exits=0;0;;0;" in perf
    assert "wsgi_drain_processes{" not in prometheus_text(result)


def test_check_usage_error_is_one_unknown_line_on_stdout() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "wsgi_drain", "check", "--group", "g", "--no-such-option"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 3
    assert done.stdout.startswith("WSGI-DRAIN UNKNOWN - usage: No such option")
    assert "--no-such-option" in done.stdout
    assert len(done.stdout.splitlines()) == 1


def test_check_textfile_unwritable_does_not_hide_the_critical(tmp_path: Path) -> None:
    # Apache down (no such pid file) is CRITICAL; the unwritable textfile is an
    # UNKNOWN of its own, which must never hide it (issue 22; worst-of rule).
    result = CliRunner().invoke(
        cli,
        ["check", "--group", "g", "--apache-pidfile", str(tmp_path / "none.pid"),
         "--state-dir", str(tmp_path / "state"),
         "--textfile", str(tmp_path / "missing-dir" / "wsgi_drain.prom")],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert result.output.startswith("WSGI-DRAIN CRITICAL - ")
    assert "cannot write --textfile" in result.output
    assert "Traceback" not in result.output


def test_check_textfile_is_rewritten_on_unknown(tmp_path: Path) -> None:
    prom = tmp_path / "wsgi_drain.prom"
    prom.write_text('wsgi_drain_check_status{group="g"} 2\n')  # a stale CRITICAL
    result = CliRunner().invoke(
        cli,
        ["check", "--group", "g", "--config", str(tmp_path / "missing.toml"),
         "--textfile", str(prom)],
    )  # fmt: skip
    assert result.exit_code == 3, result.output
    assert 'wsgi_drain_check_status{group="g"} 3' in prom.read_text()


def test_check_timeout_says_unknown(tmp_path: Path) -> None:
    slow = tmp_path / "slow-lb"
    finished = tmp_path / "finished"
    slow.write_text(f"#!/bin/sh\nsleep 30\ntouch {finished}\n")
    slow.chmod(0o755)
    result = CliRunner().invoke(
        cli,
        ["check", "--group", "g", "-t", "1", "--apache-pidfile", str(tmp_path / "none.pid"),
         "--state-dir", str(tmp_path / "state"), "--router", f"command:{slow}"],
    )  # fmt: skip
    assert result.exit_code == 3, result.output
    assert "check timed out after 1 s" in result.output
    # The check answered while the router was still running: it did not wait for it.
    assert not finished.exists(), "the slow router ran to its end"


def test_stuck_rule_ignores_a_pid_reused_after_the_log_line() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        instance = SimpleNamespace(pid=os.getpid())
        group = SimpleNamespace(name="myapp", drain_window=0.0, shutdown_window=0.0)
        told = LifecycleEvent(pid=child.pid, group="myapp", kind="shutdown", line="")
        result = CheckResult("myapp")
        # The log says this pid was told to shut down two hours ago: that was
        # another process; the one alive now started seconds ago.
        check_mod._stuck_rule(result, instance, group, [(time.time() - 7200, told)])  # type: ignore[arg-type]
        assert result.findings == []
    finally:
        child.kill()
        child.wait()


def test_sudo_textfile_label_values_are_escaped_as_the_exposition_format_says() -> None:
    # A group name is the caller's text: a quote, a backslash or a newline must
    # stay inside its label value, never start a line of its own.
    group = 'x"} 1\nwsgi_drain_evil{a="\\$(id>/tmp/x)'
    result = CheckResult(group)
    result.routers_drained = {'r"\n': True}
    text = prometheus_text(result)
    escaped = 'group="x\\"} 1\\nwsgi_drain_evil{a=\\"\\\\$(id>/tmp/x)"'
    lines = text.splitlines()
    assert all(line.startswith(("# HELP wsgi_drain_", "# TYPE wsgi_drain_", "wsgi_drain_"))
               for line in lines), text  # fmt: skip
    assert not any(line.startswith("wsgi_drain_evil") for line in lines)
    samples = [line for line in lines if not line.startswith("#")]
    assert samples and all(escaped in line for line in samples), text
    assert 'kind="r\\"\\n"' in text
