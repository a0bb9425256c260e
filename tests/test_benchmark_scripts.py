"""The scripts in benchmarks/ that the documentation's figures come from still run, on a tiny network, and write what
they say: benchmarks/search_ratios.py (methods in processes of their own, stepped in turn) and
benchmarks/core_sharing.py (passes alone, on two threads and paired)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
TINY = ["--batch", "2", "--channels", "4", "--layers", "2", "--image-size", "8", "--warmup", "0"]


def run_script(name: str, *args: str) -> None:
    done = subprocess.run([sys.executable, str(BENCHMARKS / name), *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]


def test_search_ratios_appends_runs_and_pairs_only_unsuffixed_methods(tmp_path):
    """The fast suite's run of search_ratios.py: the methods in this process, appended to a file of one run written
    before runs were appended (the process-per-method variant below, in the slow suite, starts four processes)."""
    out = tmp_path / "ratios.json"
    out.write_text(json.dumps({"settings": {}, "environment": {}, "results": [], "note": ""}))
    second = ["--methods", "darts1,rarts,rarts:serial", "--threads", "2", "--rounds", "2", "--out", str(out)]
    run_script("search_ratios.py", *TINY, *second, "--note", "second")
    runs = json.loads(out.read_text())["runs"]
    assert [r["note"] for r in runs] == ["", "second"] and runs[-1]["settings"]["processes"] is False
    rows = {r["method"]: r for r in runs[-1]["results"]}
    assert set(rows) == {"darts1", "rarts", "rarts:serial"}
    assert rows["darts1"]["vs_darts1"] == 1.0
    assert rows["rarts"]["paired_passes_threads"] == [1, 1] and rows["rarts:serial"]["paired_passes_threads"] is None
    assert rows["rarts"]["flops_vs_darts1"] == 2.0  # the methods' passes: 10F against 5F
    for row in rows.values():
        assert len(row["seconds"]) == 2 and all(s > 0 for s in row["seconds"])


@pytest.mark.slow
def test_search_ratios_in_processes_appends_runs(tmp_path):
    out = tmp_path / "ratios.json"
    # The first run only gives the second a run to append to: in one process, without the method processes' start.
    first = ["--methods", "darts1", "--threads", "1", "--rounds", "1", "--out", str(out)]
    run_script("search_ratios.py", *TINY, *first)
    second = ["--methods", "darts1,rarts,rarts:serial", "--threads", "2", "--rounds", "2", "--out", str(out)]
    run_script("search_ratios.py", "--processes", *TINY, *second, "--note", "second")
    runs = json.loads(out.read_text())["runs"]
    assert [r["note"] for r in runs] == ["", "second"]
    assert [r["settings"]["processes"] for r in runs] == [False, True]
    rows = {r["method"]: r for r in runs[-1]["results"]}
    assert set(rows) == {"darts1", "rarts", "rarts:serial"}
    assert rows["darts1"]["vs_darts1"] == 1.0
    assert rows["rarts"]["paired_passes_threads"] == [1, 1] and rows["rarts:serial"]["paired_passes_threads"] is None
    assert rows["rarts"]["flops_vs_darts1"] == 2.0  # the methods' passes: 10F against 5F
    for row in rows.values():
        assert len(row["seconds"]) == 2 and all(s > 0 for s in row["seconds"])
        assert row["peak_memory_bytes"] > 0


def test_core_sharing_reports_pairs_against_passes_alone(tmp_path):
    out = tmp_path / "cores.json"
    run_script("core_sharing.py", *TINY, "--rounds", "2", "--reps", "2", "--out", str(out), "--note", "tiny")
    (run,) = json.loads(out.read_text())["runs"]
    result, med = run["results"], run["results"]["seconds_median"]
    names = ["matmul", "add"]
    assert set(med) == {f"{k} {m}" for k in names for m in ("alone", "pair")} | {
        f"{p} {m}" for p in ("weight", "alpha") for m in ("pass, 1 thread", "pass, 2 threads", "pair")
    }
    assert all(len(v) == 2 for v in result["seconds"].values())
    # the derived figures are the ratios of the medians they name
    assert result["weight_pair_slowdown"] == med["weight pair"] / med["weight pass, 1 thread"]
    assert result["alpha_two_thread_speedup"] == med["alpha pass, 1 thread"] / med["alpha pass, 2 threads"]
    expected = (med["weight pair"] + med["alpha pair"]) / (med["weight pass, 2 threads"] + med["alpha pass, 2 threads"])
    assert result["passes_ratio_rarts_paired_to_darts1"] == expected
    assert run["note"] == "tiny" and run["settings"]["reps"] == 2
