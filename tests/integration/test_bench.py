"""A short run of the benchmark, so it cannot rot: correctness only, never speed.

One repetition of raw SIGUSR1 and `wsgi-drain restart` on the real stack, a
few exit-detection trials and discovery with 200 extra processes, written to
a temporary directory.  The assertions check that the results are complete and
consistent; how fast anything was is the benchmark's business, not the test's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import restart_methods
from bench import run as bench_run
from lab import LabUnavailable, Outcome, skip_or_fail

# One worker runs the whole module: its module- or session-wide fixture is built once.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("test_bench")]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench")
    try:
        path = bench_run.run(
            modwsgi="debian",
            reps=1,
            methods=("sigusr1", "drain", "health-file", "command"),
            timing=restart_methods.Timing(steady=1.0, slow=2.0, slow_lead=0.3, tail=0.5),
            exit_trials=5,
            extra_processes=200,
            discovery_repeat=5,
            out_dir=out / "results",
            img_dir=out / "img",
            log=False,
        )
    except LabUnavailable as err:
        skip_or_fail(str(err))
    assert path.parent == out / "results"
    data: dict[str, Any] = json.loads(path.read_text())
    data["_img_dir"] = str(out / "img")
    return data


def test_result_names_machine_versions_and_date(result: dict[str, Any]) -> None:
    assert result["schema"] == "wsgi-drain-bench/1"
    assert result["date"]
    assert result["machine"]["nproc"] >= 1
    assert result["machine"]["kernel"]
    assert "Apache" in result["versions"]["apache"]
    assert result["versions"]["python"]


def test_every_method_counts_every_request(result: dict[str, Any]) -> None:
    methods = result["restart_methods"]["methods"]
    assert set(methods) == {"sigusr1", "drain", "health-file", "command"}
    for data in methods.values():
        (trial,) = data["trials"]
        assert set(trial["counts"]) == {o.value for o in Outcome}
        assert sum(trial["counts"].values()) == trial["total"] > 0
        assert trial["failed"] == trial["total"] - trial["counts"]["ok"]
        assert trial["wall_replaced"] is not None and trial["wall_replaced"] > 0
        assert trial["command_seconds"] > 0
        assert len(trial["old_pids"]) == 3 and len(trial["new_pids"]) == 3
        assert not set(trial["old_pids"]) & set(trial["new_pids"])
        assert trial["errors"] == []
        assert data["summary"]["reps"] == 1


@pytest.mark.parametrize("method", ["drain", "health-file", "command"])
def test_wsgi_drain_loses_nothing(result: dict[str, Any], method: str) -> None:
    (trial,) = result["restart_methods"]["methods"][method]["trials"]
    assert trial["failed"] == 0, trial["counts"]
    assert trial["overhead"] is not None
    assert trial["in_flight"]["outcome"] == "ok"
    assert trial["command_exit"] == 0
    assert trial["report"]["verdict"] == "success"
    # Overhead is computed against this run's raw-SIGUSR1 respawn; its sign is
    # not asserted (that would be a timed assertion), only that it exists.
    assert trial["unavoidable"] is not None and trial["overhead"] is not None


def test_timelines_are_pngs(result: dict[str, Any]) -> None:
    images = result["restart_methods"]["images"]
    # One timeline per method the run measured, each drawn from its first rep.
    assert set(images) == set(result["restart_methods"]["methods"])
    for path in images.values():
        assert Path(path).parent == Path(result["_img_dir"])
        assert Path(path).read_bytes()[:8] == PNG_MAGIC


def test_exit_detection_and_discovery_are_complete(result: dict[str, Any]) -> None:
    ed = result["exit_detection"]
    assert ed["pidfd"]["n"] == ed["polling"]["n"] == 5
    assert ed["pidfd"]["median"] > 0 and ed["polling"]["median"] > 0
    ds = result["discovery_scale"]
    assert ds["extra_started"] == 200 and ds["reaped_stuck"] == 0
    assert ds["quiet"]["members_found"] == ds["crowded"]["members_found"] == 3
    assert ds["crowded"]["host_processes"] >= ds["quiet"]["host_processes"] + 200 - 50


def test_markdown_has_a_row_per_method(result: dict[str, Any]) -> None:
    text = bench_run.markdown(result)
    for data in result["restart_methods"]["methods"].values():
        assert f"| {data['label']} |" in text


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """bench/load_cases.py, one trial of wsgi-drain in each of two cases (Debian's build)."""
    from bench import load_cases

    out = tmp_path_factory.mktemp("cases")
    try:
        path = load_cases.run(
            ["saturated-rolling", "lazy"],
            ["debian"],
            reps=1,
            img_dir=out / "img",
            out_dir=out / "results",
            rows=["rolling", "drain"],
        )
    except LabUnavailable as err:
        skip_or_fail(str(err))
    data: dict[str, Any] = json.loads(path.read_text())
    data["_img_dir"] = str(out / "img")
    return data


def test_load_cases_smoke_run_reports_every_figure(cases: dict[str, Any]) -> None:
    from bench import load_cases

    assert cases["schema"] == "wsgi-drain-bench-cases/1"
    build = cases["builds"]["debian"]
    assert set(build) == {"saturated-rolling", "lazy"}
    assert list(build["saturated-rolling"]["rows"]) == ["rolling"]
    assert list(build["lazy"]["rows"]) == ["drain", "rolling"]
    for name, case in build.items():
        for key, row in case["rows"].items():
            (trial,) = row["trials"]
            assert not trial["errors"], (name, key, trial["errors"])
            assert trial["total"] == sum(trial["counts"].values()) > 0
            for figure in ("wall_replaced", "new_code_at", "old_code_until", "command_seconds"):
                assert trial[figure] is not None, (name, key, figure)
            assert trial["tail"]["n"] > 0 and trial["tail"]["max"] is not None
            assert trial["report"]["verdict"] == "success"
            assert Path(case["images"][key]).read_bytes()[:8] == PNG_MAGIC
    assert build["lazy"]["rows"]["drain"]["trials"][0]["in_flight"]["status"] == 200
    table = load_cases.markdown(cases)
    assert "Saturated group, no router" in table and "App loaded on first request" in table


def test_bench_broken_deploy_with_and_without_rollback_side_by_side() -> None:
    """bench/broken_deploy.py, one trial of each variant: every figure there, both exits right."""
    from bench import broken_deploy

    try:
        result = broken_deploy.run("debian", reps=1, window=8.0, log=False)
    except LabUnavailable as err:
        skip_or_fail(str(err))
    assert result["schema"] == "wsgi-drain-bench-broken-deploy/1"
    without, with_rollback = result["trials"]
    assert (without["rollback"], with_rollback["rollback"]) == (False, True)
    assert without["exit_status"] == 6 and with_rollback["exit_status"] == 8
    for trial in (without, with_rollback):
        assert trial["requests"] > 0 and trial["failed"] <= trial["requests"]
    table = broken_deploy.markdown(result)
    assert "| without --rollback | 6 |" in table and "| with --rollback | 8 |" in table
