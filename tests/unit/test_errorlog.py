"""Parsing mod_wsgi's lifecycle lines (4.9.4 and 6.1.1 wording) and tailing the log.

The two synthetic fixtures are built from the format strings in each version's
source (every lifecycle line, plus noise); the two *-real.log fixtures were
written by real daemons (Debian's 4.9.4 and PyPI's 6.1.1 under Apache 2.4.71)
sent SIGUSR1 idle and busy, SIGUSR1 with a request outliving graceful- and
shutdown-timeout, SIGTERM, SIGUSR2, SIGHUP and SIGINT, then an Apache stop.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import Optional

import pytest

from wsgi_drain.errorlog import (
    KINDS,
    Ending,
    ErrorLogTail,
    LifecycleEvent,
    ending_of,
    parse_line,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "errorlog"

Row = Optional[tuple[int, Optional[str], str]]  # a runtime alias: no `|` before 3.10


def _rows(name: str) -> list[Row]:
    rows: list[Row] = []
    for line in (FIXTURES / name).read_text().splitlines():
        event = parse_line(line)
        rows.append(None if event is None else (event.pid, event.group, event.kind))
    return rows


def _by_pid(name: str) -> dict[int, list[LifecycleEvent]]:
    found: dict[int, list[LifecycleEvent]] = defaultdict(list)
    for line in (FIXTURES / name).read_text().splitlines():
        event = parse_line(line)
        if event is not None:
            found[event.pid].append(event)
    return found


# --- parse_line on every line of the synthetic fixtures ------------------------

EXPECTED_4_9_4: list[Row] = [
    (2101, "shop", "started"),
    (2102, "shop", "started"),
    (2103, "shop", "started"),
    None,  # Attach interpreter
    None,  # Loading Python script file
    None,  # AH00489 resuming normal operations
    (2101, "shop", "graceful"),
    None,  # application output at wsgi:error that looks like a lifecycle line
    (2101, "shop", "completed"),
    (2101, "shop", "shutdown"),
    (2101, "shop", "stopping"),
    None,  # Destroying interpreters
    None,  # Terminating Python
    None,  # Python has shutdown
    (2101, "shop", "exiting"),
    (2101, "shop", "died"),
    (2101, "shop", "terminated"),
    None,  # has been deregistered and will no longer be monitored
    (2201, "shop", "started"),
    (2102, "shop", "graceful"),
    (2102, "shop", "timer_expired"),
    (2102, "shop", "shutdown"),
    (2102, "shop", "stopping"),
    (2102, "shop", "exiting"),
    (2102, "shop", "died"),
    (2102, "shop", "terminated"),
    (2202, "shop", "started"),
    (2103, "shop", "graceful"),
    (2103, "shop", "timer_expired"),
    (2103, "shop", "shutdown"),
    (2103, "shop", "aborting"),
    (2103, "shop", "exiting"),
    (2150, "shop", "request_failed"),
    (2103, "shop", "died"),
    (2203, "shop", "started"),
    (2201, "shop", "completed"),
    (2201, "shop", "shutdown"),
    None,  # debug: Exiting thread
    (2201, "shop", "stopping"),
    (2201, "shop", "exiting"),
    (2202, "shop", "graceful"),  # maximum requests, graceful
    (2203, "shop", "completed"),  # maximum requests, immediate
    (2202, "shop", "graceful"),  # restart interval, waiting
    (2202, "shop", "completed"),  # restart interval, idle
    (2202, "shop", "graceful"),  # cpu limit, waiting
    (2202, "shop", "completed"),  # cpu limit, idle
    (2202, "shop", "completed"),  # idle inactivity
    (2202, "shop", "limit"),  # request time limit
    (2202, "shop", "limit"),  # startup timer
    (2202, "shop", "limit"),  # deadlock timer
    (2202, None, "terminated"),  # AH00052
    (2202, "shop", "died"),
    (2202, "shop", "terminated"),
    (2203, "shop", "died"),  # appears to have been lost
    None,  # AH00493 graceful restart of Apache
    (2301, "shop", "deregistered"),
    (2302, "shop", "deregistered"),
]

EXPECTED_6_1_1: list[Row] = [
    (3101, "shop", "started"),
    (3102, "shop", "started"),
    (3103, "shop", "started"),
    None,  # Initializing Python runtime
    None,  # Loading WSGI script
    (3101, "shop", "graceful"),
    None,  # application output at wsgi:error that looks like a lifecycle line
    (3101, "shop", "completed"),
    (3101, "shop", "shutdown"),
    (3101, "shop", "stopping"),
    None,  # Terminating Python runtime
    (3101, "shop", "exiting"),
    (3101, "shop", "died"),
    (3101, "shop", "terminated"),
    None,  # has been deregistered and will no longer be monitored
    (3201, "shop", "started"),
    (3102, "shop", "graceful"),
    (3102, "shop", "timer_expired"),
    (3102, "shop", "shutdown"),
    (3102, "shop", "stopping"),
    (3102, "shop", "exiting"),
    (3102, "shop", "died"),
    (3102, "shop", "terminated"),
    (3202, "shop", "started"),
    (3103, "shop", "graceful"),
    (3103, "shop", "timer_expired"),
    (3103, "shop", "shutdown"),
    (3103, "shop", "aborting"),
    (3103, "shop", "exiting"),
    (3150, "shop", "request_failed"),  # WSGI0147
    (3150, "shop", "request_failed"),  # WSGI0146
    (3103, "shop", "died"),
    (3203, "shop", "started"),
    (3201, "shop", "completed"),
    (3201, "shop", "shutdown"),
    None,  # debug: Exiting thread
    (3201, "shop", "stopping"),
    (3201, "shop", "exiting"),
    (3202, "shop", "completed"),  # eviction requested while idle
    (3202, "shop", "graceful"),  # maximum requests, graceful
    (3203, "shop", "completed"),  # maximum requests, immediate
    (3202, "shop", "graceful"),  # restart interval, waiting
    (3202, "shop", "completed"),  # restart interval, idle
    (3202, "shop", "graceful"),  # cpu limit, waiting
    (3202, "shop", "completed"),  # cpu limit, idle
    (3202, "shop", "completed"),  # idle inactivity
    (3202, "shop", "graceful"),  # request time limit, waiting
    (3202, "shop", "limit"),  # request time limit, stopping
    (3202, "shop", "limit"),  # startup timer
    (3202, "shop", "limit"),  # deadlock timer
    (3202, None, "terminated"),  # AH00052
    (3202, "shop", "died"),
    (3202, "shop", "terminated"),
    (3203, "shop", "died"),  # appears to have been lost
    (3301, "shop", "deregistered"),
    (3302, "shop", "deregistered"),
    None,  # Ignoring Python signal handler registration
]


@pytest.mark.parametrize(
    ("name", "expected"),
    [("mod_wsgi-4.9.4.log", EXPECTED_4_9_4), ("mod_wsgi-6.1.1.log", EXPECTED_6_1_1)],
)
def test_parse_line_on_every_fixture_line(name: str, expected: list[Row]) -> None:
    assert _rows(name) == expected


@pytest.mark.parametrize(
    "name",
    ["mod_wsgi-4.9.4.log", "mod_wsgi-6.1.1.log", "debian-4.9.4-real.log", "pypi-6.1.1-real.log"],
)
def test_every_kind_is_documented_and_line_kept(name: str) -> None:
    for line in (FIXTURES / name).read_text().splitlines():
        event = parse_line(line)
        if event is not None:
            assert event.kind in KINDS
            assert event.line == line


@pytest.mark.parametrize("name", ["mod_wsgi-4.9.4.log", "mod_wsgi-6.1.1.log"])
def test_exit_status_of_terminated_lines(name: str) -> None:
    terminated = [e for events in _by_pid(name).values() for e in events if e.kind == "terminated"]
    statuses = [(e.group, e.exit_code, e.signal) for e in terminated]
    sig = 12 if name.startswith("mod_wsgi-4") else 11
    assert statuses == [
        ("shop", 0, None),
        ("shop", 0, None),
        (None, None, sig),
        ("shop", None, sig),
    ]


def test_parent_line_is_about_the_dead_daemon_not_the_parent() -> None:
    v4 = parse_line(
        "[Mon Nov 23 12:22:33.254165 2026] [wsgi:info] [pid 11986:tid 11986] "
        "mod_wsgi (pid=11987): Process 'alpha' has died, deregister and restart it."
    )
    v6 = parse_line(
        "[Mon Nov 23 12:24:39.770587 2026] [wsgi:info] [pid 15231:tid 15231] "
        "Process 'alpha' (pid=15233) has died; deregistering and restarting it."
    )
    assert v4 is not None and (v4.pid, v4.kind) == (11987, "died")
    assert v6 is not None and (v6.pid, v6.kind) == (15233, "died")


def test_group_with_spaces_and_quotes_around_it() -> None:
    event = parse_line(
        "[Mon Nov 23 12:24:39.770587 2026] [wsgi:info] [pid 1:tid 1] "
        "Process 'my app' (pid=7) terminated normally, exit code 0"
    )
    assert event is not None
    assert (event.pid, event.group, event.kind, event.exit_code) == (7, "my app", "terminated", 0)


def test_line_ending_and_prefork_header() -> None:
    event = parse_line(
        "[Mon Nov 23 12:22:32.727996 2026] [wsgi:info] [pid 42] "
        "mod_wsgi (pid=42): Shutdown requested 'alpha'.\r\n"
    )
    assert event is not None
    assert (event.pid, event.group, event.kind) == (42, "alpha", "shutdown")
    assert event.line.endswith("'alpha'.")


def test_custom_format_without_module_level() -> None:
    event = parse_line(
        "[pid 77] Requests have completed; triggering immediate shutdown of daemon process 'x'."
    )
    assert event is not None and (event.pid, event.kind) == (77, "completed")


def test_no_pid_anywhere_is_none() -> None:
    assert parse_line("Shutdown requested for daemon process 'x'.") is None


@pytest.mark.parametrize(
    "line",
    [
        "",
        "garbage",
        "[Mon Nov 23 12:22:05.216735 2026] [mpm_event:notice] [pid 11727:tid 11727] AH00489: "
        "Apache/2.4.71 (Debian) mod_wsgi/4.9.4 Python/3.11 configured -- resuming normal "
        "operations",
        # app output mentioning a lifecycle phrase in the middle of its message
        "[Mon Nov 23 12:22:05.216735 2026] [wsgi:info] [pid 5:tid 5] mod_wsgi (pid=5): "
        "User said Stopping process 'x'.",
    ],
)
def test_not_lifecycle(line: str) -> None:
    assert parse_line(line) is None


# --- ending_of -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["mod_wsgi-4.9.4.log", "mod_wsgi-6.1.1.log"])
def test_endings_synthetic(name: str) -> None:
    base = 2100 if name.startswith("mod_wsgi-4") else 3100
    by_pid = _by_pid(name)
    assert ending_of(by_pid[base + 1]) is Ending.DRAINED  # graceful, then completed
    assert ending_of(by_pid[base + 2]) is Ending.FORCED  # timer expired, done in shutdown-timeout
    assert ending_of(by_pid[base + 3]) is Ending.ABORTED  # timer expired, then aborting
    assert ending_of(by_pid[base + 101]) is Ending.DRAINED  # signal while idle
    assert ending_of(by_pid[base + 102]) is Ending.ABORTED  # killed by a signal
    assert ending_of(by_pid[base + 201]) is Ending.EXITED  # only "deregistered"


@pytest.mark.parametrize(
    ("name", "endings"),
    [
        (
            "debian-4.9.4-real.log",
            {
                11987: Ending.DRAINED,  # SIGUSR1, idle
                11988: Ending.DRAINED,  # SIGUSR1, 2 s request, "Requests have completed"
                11990: Ending.ABORTED,  # SIGUSR1, 10 s request > graceful 2 + shutdown 2
                12365: Ending.FORCED,  # SIGUSR1, 3 s request: timer at 2, done before abort
                11989: Ending.FORCED,  # SIGTERM with a 2 s request, which completed
                11992: Ending.ABORTED,  # SIGUSR2 kills 4.9.4 at once
                12453: Ending.FORCED,  # SIGINT while idle
            },
        ),
        (
            "pypi-6.1.1-real.log",
            {
                15233: Ending.DRAINED,
                15234: Ending.DRAINED,
                15236: Ending.ABORTED,
                16141: Ending.FORCED,
                15235: Ending.FORCED,
                16607: Ending.FORCED,
                15237: Ending.FORCED,  # SIGUSR2 did nothing on 6.1.1; stopped with Apache
            },
        ),
    ],
)
def test_endings_real(name: str, endings: dict[int, Ending]) -> None:
    by_pid = _by_pid(name)
    assert {pid: ending_of(by_pid[pid]) for pid in endings} == endings


@pytest.mark.parametrize("name", ["debian-4.9.4-real.log", "pypi-6.1.1-real.log"])
def test_real_abort_cut_off_one_request(name: str) -> None:
    failed = [e for events in _by_pid(name).values() for e in events if e.kind == "request_failed"]
    assert {e.group for e in failed} == ({"gamma", "delta"} if "4.9.4" in name else {"gamma"})


def test_real_abort_has_no_exit_status_line() -> None:
    # exit(-1) from the reaper is status 255, which mod_wsgi's decoding drops.
    for name, pid in [("debian-4.9.4-real.log", 11990), ("pypi-6.1.1-real.log", 15236)]:
        kinds = [e.kind for e in _by_pid(name)[pid]]
        assert "died" in kinds
        assert "terminated" not in kinds


def _ev(kind: str, *, signal: int | None = None) -> LifecycleEvent:
    return LifecycleEvent(pid=1, group="g", kind=kind, line="", signal=signal)


@pytest.mark.parametrize(
    ("kinds", "expected"),
    [
        ([], Ending.EXITED),
        (["started", "exiting", "died"], Ending.EXITED),
        (["graceful", "completed", "shutdown", "stopping", "exiting"], Ending.DRAINED),
        (["completed", "shutdown", "stopping", "exiting"], Ending.DRAINED),
        (["graceful", "timer_expired", "shutdown", "stopping", "exiting"], Ending.FORCED),
        (["limit", "shutdown", "stopping", "exiting"], Ending.FORCED),
        (["shutdown", "stopping", "exiting"], Ending.FORCED),
        (["graceful", "timer_expired", "shutdown", "aborting", "exiting"], Ending.ABORTED),
        (["shutdown", "aborting"], Ending.ABORTED),
        (["request_failed", "completed"], Ending.DRAINED),
    ],
)
def test_ending_rules(kinds: list[str], expected: Ending) -> None:
    assert ending_of(_ev(kind) for kind in kinds) is expected


def test_killed_by_signal_is_aborted() -> None:
    assert ending_of([_ev("started"), _ev("terminated", signal=9)]) is Ending.ABORTED


# --- ErrorLogTail with real files -----------------------------------------------

L_START = (
    "[Mon Nov 23 12:22:05.216350 2026] [wsgi:info] [pid 10:tid 10] mod_wsgi (pid=10): "
    "Starting process 'a' with uid=33, gid=33 and threads=3.\n"
)
L_GRACE = (
    "[Mon Nov 23 12:22:34.967696 2026] [wsgi:info] [pid 10:tid 10] Graceful restart requested; "
    "waiting for in-flight requests to complete in daemon process 'a'.\n"
)
L_DONE = (
    "[Mon Nov 23 12:22:36.893119 2026] [wsgi:info] [pid 10:tid 11] mod_wsgi (pid=10): "
    "Requests have completed, triggering immediate shutdown 'a'.\n"
)
L_EXIT = (
    "[Mon Nov 23 12:22:36.899173 2026] [wsgi:info] [pid 10:tid 10] mod_wsgi (pid=10): "
    "Exiting process 'a'.\n"
)
L_NOISE = "[Mon Nov 23 12:22:05.243739 2026] [wsgi:info] [pid 10:tid 10] Attach interpreter ''.\n"


def _append(path: Path, text: str) -> None:
    with path.open("a") as f:
        f.write(text)


def _kinds(events: list[LifecycleEvent]) -> list[str]:
    return [e.kind for e in events]


def test_tail_reads_only_lines_after_construction(tmp_path: Path) -> None:
    log = tmp_path / "error.log"
    log.write_text(L_START + L_NOISE)
    with ErrorLogTail(log) as tail:
        assert tail.read_new() == []
        _append(log, L_GRACE + L_NOISE)
        assert _kinds(tail.read_new()) == ["graceful"]
        assert tail.read_new() == []
        _append(log, L_DONE + L_EXIT)
        assert _kinds(tail.read_new()) == ["completed", "exiting"]


def test_tail_keeps_partial_line(tmp_path: Path) -> None:
    log = tmp_path / "error.log"
    log.write_text("")
    with ErrorLogTail(log) as tail:
        _append(log, L_GRACE + L_DONE[:40])
        assert _kinds(tail.read_new()) == ["graceful"]
        assert tail.read_new() == []
        _append(log, L_DONE[40:])
        assert _kinds(tail.read_new()) == ["completed"]


def test_tail_truncation_restarts_at_zero(tmp_path: Path) -> None:
    log = tmp_path / "error.log"
    log.write_text(L_START * 5)
    with ErrorLogTail(log) as tail:
        _append(log, L_GRACE[:30])
        assert tail.read_new() == []
        log.write_text("")  # copytruncate
        _append(log, L_DONE)
        assert _kinds(tail.read_new()) == ["completed"]


def test_tail_rotation_reads_rest_of_old_then_new(tmp_path: Path) -> None:
    log = tmp_path / "error.log"
    log.write_text(L_START)
    with ErrorLogTail(log) as tail:
        _append(log, L_GRACE)
        os.rename(log, tmp_path / "error.log.1")
        # Apache still writes to the old inode until it reopens its logs.
        _append(tmp_path / "error.log.1", L_DONE + "partial old line")
        log.write_text(L_EXIT)
        assert _kinds(tail.read_new()) == ["graceful", "completed", "exiting"]
        _append(log, L_START)
        assert _kinds(tail.read_new()) == ["started"]


def test_tail_rotation_before_new_file_exists(tmp_path: Path) -> None:
    log = tmp_path / "error.log"
    log.write_text("")
    with ErrorLogTail(log) as tail:
        _append(log, L_GRACE)
        os.rename(log, tmp_path / "error.log.1")
        assert _kinds(tail.read_new()) == ["graceful"]
        _append(tmp_path / "error.log.1", L_DONE)
        assert _kinds(tail.read_new()) == ["completed"]
        log.write_text(L_EXIT)
        assert _kinds(tail.read_new()) == ["exiting"]


def test_tail_missing_file_then_created(tmp_path: Path) -> None:
    log = tmp_path / "error.log"
    with ErrorLogTail(log) as tail:
        assert tail.read_new() == []
        log.write_text(L_START + L_GRACE)
        assert _kinds(tail.read_new()) == ["started", "graceful"]
        log.unlink()
        assert tail.read_new() == []


def test_tail_undecodable_bytes(tmp_path: Path) -> None:
    log = tmp_path / "error.log"
    log.write_bytes(b"")
    with ErrorLogTail(log) as tail:
        log.write_bytes(b"\xff\xfe garbage\n" + L_EXIT.encode())
        assert _kinds(tail.read_new()) == ["exiting"]


def test_tail_closed(tmp_path: Path) -> None:
    log = tmp_path / "error.log"
    log.write_text("")
    tail = ErrorLogTail(log)
    tail.close()
    tail.close()
    with pytest.raises(ValueError, match="closed"):
        tail.read_new()


def test_tail_not_closed_does_not_warn(tmp_path: Path) -> None:
    # The descriptor is released when the object is collected, without a
    # ResourceWarning (warnings are errors in this suite).
    log = tmp_path / "error.log"
    log.write_text(L_START)
    tail = ErrorLogTail(log)
    _append(log, L_EXIT)
    assert _kinds(tail.read_new()) == ["exiting"]
    del tail


def test_tail_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="not a regular file"):
        ErrorLogTail(tmp_path)


def test_errorlog_catalogue_filed_by_first_word_loses_no_pattern() -> None:
    """Patterns are compiled on first use, looked up by the message's first word (issue 22).

    Each must begin with a plain word and a space (or a leading group of such
    alternatives, without a group inside), and be filed under every such word.
    """
    from wsgi_drain.errorlog import lines as errorlog

    for entry in errorlog._CATALOGUE:
        source = entry[2]
        if source.startswith("(?:"):
            group = source[3 : source.index(")")]
            assert "(" not in group, source
            alternatives = group.split("|")
        else:
            alternatives = [source]
        words = errorlog.first_words(source)
        assert len(words) == len(alternatives), source
        for word, alternative in zip(words, alternatives):
            assert word.isalpha() and alternative.startswith(word + " "), source
            assert entry in errorlog._BY_WORD[word]
