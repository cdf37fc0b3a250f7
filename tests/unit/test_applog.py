"""The app's own words from the error log: lines as mod_wsgi 4.9.4 and 6.1.1 write them."""

from __future__ import annotations

from pathlib import Path

from wsgi_drain.applog import MAX_WORDS, RunLog, split_line
from wsgi_drain.errorlog import ErrorLogTail

H = "[Wed Nov 25 01:59:02.896620 2026] [wsgi:error] [pid {pid}:tid 9] [remote 127.0.0.1:5]"
P = "[Wed Nov 25 01:59:12.212640 2026] [wsgi:info] [pid 100:tid 100]"


def traceback_4x(pid: int) -> list[str]:
    head = H.format(pid=pid)
    return [
        f"{head} mod_wsgi (pid={pid}): Failed to exec Python script file '/srv/app.wsgi'.",
        f"{head} mod_wsgi (pid={pid}): Exception occurred processing WSGI script '/srv/app.wsgi'.",
        f"{head} Traceback (most recent call last):",
        f'{head}   File "/srv/app.wsgi", line 3, in <module>',
        f"{head}     import missing",
        f"{head} ModuleNotFoundError: No module named 'missing'",
    ]


def traceback_6x(pid: int) -> list[str]:
    head = H.format(pid=pid)
    return [
        f"{head} [script /srv/app.wsgi] WSGI0109: Unable to execute Python script file "
        "'/srv/app.wsgi'.",
        f"{head} Traceback (most recent call last):",
        f'{head}   File "<frozen importlib._bootstrap>", line 1176, in _find_and_load',
        f"{head} ModuleNotFoundError: No module named 'missing'",
    ]


def run_log(tmp_path: Path, lines: list[str]) -> RunLog:
    path = tmp_path / "error.log"
    path.write_text("")
    log = RunLog(ErrorLogTail(path), "myapp")
    with path.open("a") as f:
        f.write("\n".join(lines) + "\n")
    log.poll()
    return log


def test_split_line_keeps_the_traceback_indentation() -> None:
    line = split_line(H.format(pid=7) + '   File "/srv/app.wsgi", line 3, in <module>')
    assert (line.pid, line.module, line.level) == (7, "wsgi", "error")
    assert line.message == '  File "/srv/app.wsgi", line 3, in <module>'


def test_import_error_is_found_in_both_wordings(tmp_path: Path) -> None:
    for lines in (traceback_4x(7), traceback_6x(7)):
        log = run_log(tmp_path, lines)
        assert log.load_failure({7}) == "ModuleNotFoundError: No module named 'missing'"
        assert log.load_failure({8}) is None, "another process's traceback was attributed"


def test_exception_in_a_request_is_not_a_load_failure(tmp_path: Path) -> None:
    head = H.format(pid=7)
    log = run_log(
        tmp_path,
        [
            f"{head} mod_wsgi (pid=7): Exception occurred processing WSGI script '/srv/app.wsgi'.",
            f"{head} Traceback (most recent call last):",
            f"{head} KeyError: 'x'",
        ],
    )
    assert log.load_failure({7}) is None


def test_words_drop_repeats_of_the_same_traceback(tmp_path: Path) -> None:
    log = run_log(tmp_path, traceback_4x(7) * 3 + traceback_4x(8))
    words = log.words({7, 8})
    assert words.count("Traceback (most recent call last):") == 1
    assert words[-1] == "ModuleNotFoundError: No module named 'missing'"


def test_words_are_bounded(tmp_path: Path) -> None:
    head = H.format(pid=7)
    log = run_log(tmp_path, [f"{head} line {i}" for i in range(500)])
    words = log.words({7})
    assert len(words) == MAX_WORDS + 1 and words[-1].startswith("...")


def test_deaths_of_new_processes_with_the_logged_status(tmp_path: Path) -> None:
    log = run_log(
        tmp_path,
        [
            f"{P} mod_wsgi (pid=21): Process 'myapp' has died, deregister and restart it.",
            f"{P} mod_wsgi (pid=21): Process 'myapp' terminated by signal 3",
            f"{P} Process 'myapp' (pid=22) has died; deregistering and restarting it.",
            f"{P} Process 'myapp' (pid=22) terminated normally, exit code 1",
            f"{P} Process 'other' (pid=23) has died; deregistering and restarting it.",
            f"{P} Process 'myapp' (pid=5) has died; deregistering and restarting it.",
        ],
    )
    assert log.deaths(old={5}) == {
        21: "terminated by signal 3",
        22: "terminated normally, exit code 1",
    }
