"""The search loop and `rarts search`: run folder, a kill between an epoch's checkpoint and its lines, a diverging
run on the command line, settings validation. What every resumable run does (kill and resume, failures, the run
folder's rules) is tested for search and training alike in test_runs.py.

Runs are tiny: 32 images of the bundled CIFAR-10 subset at 8x8, 4 channels, 2 cells, batch 8 (2 steps an epoch).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rarts.cli import main
from rarts.genotype import load_genotype
from rarts.runs import CHECKPOINT_NAME
from rarts.runs import load_checkpoint as read_checkpoint
from rarts.search.config import SearchConfig, make_config
from rarts.search.data import resize_images
from rarts.search.loop import run_search
from rarts.search.plots import edge_labels, plot_alpha_heatmap
from rarts.search.records import peak_memory_bytes
from tiny_runs import TINY_SEARCH, Killed, kill_after, search_results


def load_checkpoint(path) -> dict:
    return read_checkpoint(path, "search")


def tiny(method: str, **more) -> SearchConfig:
    return make_config(
        "paper", {**TINY_SEARCH, **{k: str(v) for k, v in more.items()}}, {"method": method, "device": "cpu"}
    )


def tiny_args(method: str, out: Path, *extra: str) -> list[str]:
    return (
        ["search", "--method", method, "--out", str(out), "--device", "cpu", "--quiet"]
        + [f"{k}={v}" for k, v in TINY_SEARCH.items()]
        + list(extra)
    )


# ---- a whole run -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def darts1_run(tmp_path_factory) -> tuple[Path, dict]:
    """A whole tiny darts1 search with plots (which draw no random numbers): its folder and summary, read by
    several tests."""
    out = tmp_path_factory.mktemp("darts1") / "run"
    return out, run_search(tiny("darts1", plots=True), out, quiet=True)


def test_run_folder_holds_every_artefact(darts1_run):
    out, summary = darts1_run
    for name in ("config.json", "environment.json", "metrics.jsonl", "metrics.csv", "alphas.jsonl", "genotype.json"):
        assert (out / name).is_file(), name
    assert (out / "alpha.png").stat().st_size > 0
    assert any(p.name.startswith("normal.") for p in (out / "cells").iterdir())
    assert summary == json.loads((out / "summary.json").read_text())
    for key in ("method", "genotype", "epochs", "search_seconds", "search_cost", "search_cost_unit", "device_name"):
        assert key in summary, key
    assert summary["method"] == "darts1" and summary["epochs"] == 2 and summary["steps"] == 4
    assert summary["search_cost_unit"] == "CPU-hours"
    assert summary["search_cost"] == pytest.approx(summary["search_seconds"] / 3600)
    assert summary["peak_memory_bytes"] > 10 * 2**20
    assert 0.0 <= summary["final_val_acc"] <= 100.0 and 0.0 <= summary["final_train_acc"] <= 100.0  # percent
    assert load_genotype(str(out)).to_dict() == summary["genotype"]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1]
    assert rows[0]["lr"] == pytest.approx(0.025) and rows[1]["lr"] < rows[0]["lr"]  # cosine, stepped after epochs
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "arch_loss", "genotype", "seconds"} <= set(rows[0])
    alphas = [json.loads(line) for line in (out / "alphas.jsonl").read_text().splitlines()]
    assert [a["epoch"] for a in alphas] == [0, 1]
    assert torch.tensor(alphas[1]["normal"]).sum(1) == pytest.approx(torch.ones(14), abs=1e-6)
    alpha = json.loads((out / "alpha.json").read_text())
    assert torch.softmax(torch.tensor(alpha["alpha_normal"]), -1) == pytest.approx(torch.tensor(alphas[1]["normal"]))
    ckpt = torch.load(out / CHECKPOINT_NAME, weights_only=True)
    assert ckpt["epoch"] == 2 and ckpt["step"] == 0
    assert set(ckpt["method"]["optimizers"]) == {"w", "alpha"}
    assert json.loads((out / "config.json").read_text())["method"] == "darts1"


def test_rarts_logs_both_weight_sets(tmp_path):
    summary = run_search(tiny("rarts", epochs=1), tmp_path / "run", quiet=True)
    row = json.loads((tmp_path / "run" / "metrics.jsonl").read_text())
    for key in ("train_acc", "val_acc", "y_loss", "y_acc", "y_val_loss", "y_val_acc", "wy_dist", "y_lr"):
        assert key in row, key
    assert "final_y_val_acc" in summary
    ckpt = load_checkpoint(tmp_path / "run" / CHECKPOINT_NAME)
    assert set(ckpt["method"]["networks"]) == {"w", "y"}
    assert set(ckpt["method"]["optimizers"]) == {"w", "y", "alpha"}


# ---- kill and resume -------------------------------------------------------------------------------------------------


def test_a_kill_between_the_epoch_checkpoint_and_its_log_lines_loses_no_row(tmp_path, darts1_run):
    """The checkpoint of an epoch is written before its metrics and alpha rows: a kill in between leaves a
    checkpoint at the next epoch and no row for this one. The resumed run writes the row from the checkpoint."""
    cfg = tiny("darts1")
    run = tmp_path / "killed"
    with pytest.raises(Killed):
        run_search(cfg, run, quiet=True, on_step=kill_after(3))
    for name in ("metrics.jsonl", "alphas.jsonl"):  # as if killed before epoch 1's lines were written
        lines = (run / name).read_text().splitlines(keepends=True)
        (run / name).write_text("".join(lines[:-1]))
    (run / "metrics.csv").write_text("")
    run_search(cfg, run, resume=True, quiet=True)
    assert search_results(run) == search_results(darts1_run[0])
    env = json.loads((run / "environment.json").read_text())
    assert env["resumed_at"] is None and [r["resumed_at"] for r in env["resumes"]] == [{"epoch": 1, "step": 0}]


# ---- the command line: a diverging run, refused settings -------------------------------------------------------------


def test_cli_exit_code_1_on_a_diverging_run(tmp_path, capsys):
    code = main(tiny_args("darts1", tmp_path / "run", "lr=1e30", "grad_clip=1e30", "epochs=1"))
    err = capsys.readouterr().err
    assert code == 1, err
    assert err.startswith("rarts: error: non-finite") and "darts1" in err and len(err.strip().splitlines()) == 1


def test_a_new_search_needs_a_method(tmp_path, capsys):
    assert main(["search", "--out", str(tmp_path / "run"), "--preset", "quick"]) == 2
    assert "--method is required" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--method", "sgd"], "unknown method 'sgd'"),
        (["lam=-1"], "lam"),
        (["beta=-0.5"], "beta"),
        (["lr=0"], "lr"),
        (["y_lr=-1"], "y_lr"),
        (["batch_size=100"], "batch_size=100 is larger than the training half (16 images)"),
        (["colour=red"], "unknown setting 'colour'"),
        (["lr=inf"], "setting lr: must be a finite number"),
        (["beta=inf"], "setting beta: must be a finite number"),
        (["lam=nan"], "setting lam: must be a finite number, got nan"),
        (["epochs=inf"], "setting epochs: expected an integer, got 'inf'"),
        (["epochs=nan"], "setting epochs: expected an integer, got 'nan'"),
        (["latency_weight=nan"], "setting latency_weight: must be a finite number >= 0, got nan"),
        (["--latency-weight", "inf"], "setting latency_weight: must be a finite number >= 0, got inf"),
    ],
)
def test_invalid_settings_exit_2_before_any_work(tmp_path, capsys, extra, needle):
    out = tmp_path / "run"
    args = tiny_args("rarts", out)
    if extra[0] == "--method":
        args[args.index("--method") + 1] = extra[1]
    else:
        args += extra
    assert main(args) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1
    assert not out.exists()  # a refused run leaves no folder behind


# ---- pieces ----------------------------------------------------------------------------------------------------------


def test_presets_load_and_validate():
    quick = make_config("quick", {}, {"method": "rarts"})
    paper = make_config("paper", {}, {"method": "darts2"})
    assert quick.dataset == "cifar10-mini"
    assert (paper.epochs, paper.batch_size, paper.channels, paper.layers) == (50, 64, 16, 8)
    rules = paper.method_settings
    assert (rules.lr, rules.lr_min, rules.momentum, rules.weight_decay, rules.grad_clip) == (
        0.025,
        0.001,
        0.9,
        3e-4,
        5.0,
    )
    assert (rules.arch_lr, rules.arch_betas, rules.arch_weight_decay, paper.train_portion) == (
        3e-4,
        (0.5, 0.999),
        1e-3,
        0.5,
    )


def test_resize_images_averages_areas():
    images = torch.arange(2 * 3 * 4 * 4, dtype=torch.int64).reshape(2, 3, 4, 4).to(torch.uint8)
    small = resize_images(images, 2)
    assert small.shape == (2, 3, 2, 2) and small.dtype == torch.uint8
    want = images.float().reshape(2, 3, 2, 2, 2, 2).mean((3, 5)).round().to(torch.uint8)
    assert torch.equal(small, want)
    assert resize_images(images, 4) is images


def test_alpha_heatmap_and_edge_labels(tmp_path):
    labels = edge_labels()
    assert len(labels) == 14 and labels[:3] == ["c_{k-2} -> 0", "c_{k-1} -> 0", "c_{k-2} -> 1"]
    assert labels[-1] == "2 -> 3"
    path = plot_alpha_heatmap(torch.randn(14, 8), torch.randn(14, 8), tmp_path / "alpha.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_peak_memory_on_cpu_is_the_process_rss():
    value, kind = peak_memory_bytes(torch.device("cpu"))
    assert value > 10 * 2**20 and "RSS" in kind


# ---- slow: the quick preset end to end, and a real kill --------------------------------------------------------------


@pytest.mark.slow
def test_quick_preset_end_to_end(tmp_path):
    out = tmp_path / "quick"
    assert main(["search", "--method", "rarts", "--preset", "quick", "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final_val_acc"] > 25.0  # percent; chance is 10
    assert summary["search_seconds"] < 15 * 60


@pytest.mark.slow
def test_a_killed_process_resumes_to_the_same_result(tmp_path):
    args = [f"{k}={v}" for k, v in {**TINY_SEARCH, "epochs": "3", "checkpoint_every": "2"}.items()]
    base = [sys.executable, "-m", "rarts", "search", "--method", "rarts", "--device", "cpu", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(base + ["--out", str(tmp_path / "whole")] + args, check=True, env=env)
    proc = subprocess.Popen(base + ["--out", str(tmp_path / "killed")] + args, env=env)
    ckpt = tmp_path / "killed" / CHECKPOINT_NAME
    deadline = time.time() + 300
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "summary.json").exists()
    resume = [sys.executable, "-m", "rarts", "search", "--resume", "--out", str(tmp_path / "killed"), "--quiet"]
    subprocess.run(resume, check=True, env=env)
    assert search_results(tmp_path / "killed") == search_results(tmp_path / "whole")
