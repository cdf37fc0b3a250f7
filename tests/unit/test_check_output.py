"""`check`'s output as Nagios and NRPE 2 take it, and `--json` on every usage error (issue 22).

Every state's output: a first line under 200 characters (perfdata included),
the whole under NRPE 2's 1024-byte buffer, the details on the lines after.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from wsgi_drain.check import CheckResult, Thresholds
from wsgi_drain.cli import cli
from wsgi_drain.health import Probe
from wsgi_drain.inventory import ProcessInfo
from wsgi_drain.report_check import print_check
from wsgi_drain.status import NagiosStatus

# A trap's advice is a paragraph; a host has many processes and findings at once.
LONG = (
    "group '127.0.0.1:8000' loads the app lazily: the first request after each restart "
    "pays the import, and the health URL is the first to pay it; Fix: add process-group= "
    "and application-group= to its WSGIScriptAlias, or WSGIImportScript, so that it is "
    "imported as each daemon starts (mod_wsgi documentation, 'preloading')"
)


def _result(state: NagiosStatus) -> CheckResult:
    result = CheckResult("127.0.0.1:8000:33")
    result.expected = 16
    result.processes_known = True
    result.processes = [
        ProcessInfo(pid=100000 + i, age=86400.0 + i, rss=2**30, threads=15, state="sleeping")
        for i in range(16)
    ]
    result.health = Probe("http://127.0.0.1:8000/health", True, 200, 0.0123)
    result.health_timeout = 5.0
    result.forced = 0
    levels = [NagiosStatus.WARNING, NagiosStatus.UNKNOWN, NagiosStatus.CRITICAL]
    for level in levels[: levels.index(state) + 1] if state in levels else []:
        for n in range(3):
            result.add(level, f"{level.name} finding {n}: {LONG}")
    return result


def _output(result: CheckResult) -> str:
    out = io.StringIO()
    print_check(result, Thresholds(rss_warn=2**29, age_warn=3600.0), out)
    return out.getvalue()


@pytest.mark.parametrize("state", list(NagiosStatus))
def test_check_output_of_every_state_fits_nrpe2_with_a_short_first_line(
    state: NagiosStatus,
) -> None:
    result = _result(state)
    if state == NagiosStatus.UNKNOWN:
        result.findings = [f for f in result.findings if f.level == NagiosStatus.UNKNOWN]
    assert result.status == state
    text = _output(result)
    first, *details = text.splitlines()
    assert first.startswith(f"WSGI-DRAIN {state.name} - 127.0.0.1:8000:33: "), first
    assert len(first) < 200 and len(first.encode()) < 200, first
    assert " | processes=16;16:;1:;0;16 health_time=" in first  # perfdata kept whole
    assert len(text.encode()) < 1024, len(text.encode())
    assert text.endswith("\n")
    if state != NagiosStatus.OK:
        # The worst finding comes first below, in full, and the rest are counted.
        assert details[0] == f"{state.name}: {state.name} finding 0: {LONG}"
        assert details[-1].startswith("(+") and details[-1].endswith("wsgi-drain check --json)")
    else:
        assert details[0].startswith("pid 100000: sleeping")


def test_check_output_first_line_keeps_the_count_of_the_other_findings() -> None:
    text = _output(_result(NagiosStatus.CRITICAL))
    first = text.splitlines()[0]
    assert "... (+8 more) | processes=" in first, first


def test_check_unknown_from_a_long_error_fits_nrpe2(tmp_path: Path) -> None:
    # An error raised before any rule ran (here: a configuration file missing at a
    # long path) goes through the same output as the rules' findings.
    long_path = tmp_path / ("d" * 200) / ("e" * 200) / "wsgi-drain.toml"
    result = CliRunner().invoke(cli, ["check", "--group", "g", "--config", str(long_path)])
    assert result.exit_code == 3, result.output
    first, *details = result.output.splitlines()
    assert first.startswith("WSGI-DRAIN UNKNOWN - g: configuration file ") and len(first) < 200
    assert details == [f"UNKNOWN: configuration file {long_path} does not exist"]
    assert len(result.output.encode()) < 1024


USAGE_ERRORS = {
    "check": (["check", "--group", "g", "--json", "--no-such-option"], 3),
    "restart": (["restart", "--group", "g", "--json", "--mode", "sideways"], 2),
    "drain": (["drain", "--json", "--no-such-option"], 2),
    "undrain": (["undrain", "--group", "g", "--json", "--wait-ready", "soon"], 2),
    "status": (["status", "--json", "--no-such-option"], 2),
}


@pytest.mark.parametrize("command", sorted(USAGE_ERRORS))
def test_check_json_on_a_usage_error_of_every_command(command: str) -> None:
    args, code = USAGE_ERRORS[command]
    done = subprocess.run(
        [sys.executable, "-m", "wsgi_drain", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == code, done.stdout + done.stderr
    data = json.loads(done.stdout)
    assert data["exit_status"] == code
    assert data["schema"].startswith("wsgi-drain/")
    message = data.get("message") or data["summary"]
    assert "sideways" in message or "no-such-option" in message or "soon" in message, message


def test_check_textfile_parses_with_prometheus_client_under_the_new_names() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from wsgi_drain.check import router_labels
    from wsgi_drain.report_check import prometheus_text
    from wsgi_drain.routers import from_spec

    result = _result(NagiosStatus.WARNING)
    routers = [
        from_spec("haproxy:/run/haproxy/admin.sock:be_app/web1"),
        from_spec("haproxy:/run/haproxy2/admin.sock:be_app/web1"),
        from_spec("nginx:/etc/nginx/upstreams/app.conf:10.0.0.11:8080"),
        from_spec("health-file:/var/www/maintenance"),
    ]
    for n, router in enumerate(routers):
        result.routers_drained[router.name] = n == 0
        result.router_labels[router.name] = router_labels(router)
    families = {f.name: f for f in text_string_to_metric_families(prometheus_text(result))}
    assert "wsgi_drain_process_rss_bytes_max" not in families
    (rss,) = families["wsgi_drain_process_rss_max_bytes"].samples
    assert rss.value == 2**30 and rss.labels == {"group": "127.0.0.1:8000:33"}
    (age,) = families["wsgi_drain_process_age_max_seconds"].samples
    assert age.value == 86415.0  # the oldest process, as perfdata's age_max
    drained = families["wsgi_drain_router_drained"].samples
    by_endpoint = {s.labels["endpoint"]: s for s in drained}
    web1 = by_endpoint["/run/haproxy/admin.sock"]
    assert web1.labels == {
        "group": "127.0.0.1:8000:33", "kind": "haproxy",
        "endpoint": "/run/haproxy/admin.sock", "backend": "be_app", "server": "web1",
    }  # fmt: skip
    assert web1.value == 1 and by_endpoint["/run/haproxy2/admin.sock"].value == 0
    nginx = by_endpoint["/etc/nginx/upstreams/app.conf"].labels
    assert (nginx["kind"], nginx["server"]) == ("nginx", "10.0.0.11:8080")
    assert by_endpoint["/var/www/maintenance"].labels["kind"] == "health-file"
    for family in families.values():
        assert family.type == "gauge" and family.documentation


def test_check_readme_example_perfdata_is_what_the_code_prints() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    line = next(x for x in readme.splitlines() if x.startswith("WSGI-DRAIN OK - myapp: 3/3"))
    perf = line.split(" | ", 1)[1]
    latency = float(re.search(r"health_time=([\d.]+)s", perf)[1])  # type: ignore[index]
    rss = int(re.search(r"rss_max=(\d+)B", perf)[1])  # type: ignore[index]
    result = CheckResult("myapp")
    result.expected, result.processes_known, result.forced = 3, True, 0
    result.leftovers = 0  # a run recorded none (README "Leftovers")
    result.processes = [ProcessInfo(8550 + i, 3.0, rss, 8, "sleeping") for i in range(3)]
    result.health = Probe("http://127.0.0.1:8080/health", True, 200, latency)
    result.health_timeout = 5.0
    out = _output_default(result)
    assert out.splitlines()[0] == line
    for example in [x for x in readme.splitlines() if x.startswith("WSGI-DRAIN ")]:
        assert len(example) < 200, example


def _output_default(result: CheckResult) -> str:
    out = io.StringIO()
    print_check(result, Thresholds(), out)
    return out.getvalue()


@pytest.mark.parametrize(
    "stamp",
    ["Mon Nov 23 12:16:27.666900 2026", "Wed Dec  2 08:01:02 2026", "Sun Mar 29 02:30:00.5 2026",
     "Thu Jan 01 00:00:00.000001 1970"],
)  # fmt: skip
def test_check_log_time_read_by_hand_is_what_strptime_reads(stamp: str) -> None:
    # The check reads Apache's timestamps without strptime (its first call is slow).
    import datetime

    from wsgi_drain.errorlog import line_time

    words = " ".join(stamp.split())
    fmt = "%a %b %d %H:%M:%S.%f %Y" if "." in words else "%a %b %d %H:%M:%S %Y"
    expected = datetime.datetime.strptime(words, fmt).timestamp()
    assert line_time(f"[{stamp}] [wsgi:info] [pid 1] mod_wsgi (pid=1): Starting.") == expected
    assert line_time(f"[{stamp.replace(stamp[4:7], 'Xyz')}] x") is None


def test_check_coldstart_imports_nothing_a_healthy_run_does_not_need() -> None:
    # Loaded by the command line and the check's rules: never the restart's records,
    # the TOML parser, difflib, traceback, tempfile, the routers, nor http.client
    # (issue 22: cron pays every import every minute).  Nor, since the check's own
    # /proc readers, HTTP reader and plain command line: psutil, ssl (http URLs),
    # email, click, the other commands, subprocess, hashlib, the idna codec.
    code = (
        "import sys, wsgi_drain.cli, wsgi_drain.cli.check_args, wsgi_drain.cli.check_run, "
        "wsgi_drain.check, wsgi_drain.health, wsgi_drain.report, wsgi_drain.nagios, "
        "wsgi_drain.sockdiag; "
        "print(' '.join(sorted(m for m in sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = set(done.stdout.split())
    absent = {"wsgi_drain.outcome", "wsgi_drain.restart", "tomllib", "tomli", "difflib",
              "traceback", "tempfile", "wsgi_drain.peers", "wsgi_drain.routers.haproxy",
              "http.client", "_strptime",
              "psutil", "ssl", "email", "click", "wsgi_drain.cli.group",
              "wsgi_drain.cli.options", "wsgi_drain.cli.restart", "wsgi_drain.cli.reload",
              "wsgi_drain.cli.status", "wsgi_drain.inventory", "subprocess", "hashlib",
              "encodings.idna"}  # fmt: skip
    assert not absent & loaded, sorted(absent & loaded)
