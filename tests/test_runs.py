"""The resumable-run contract, the same for every task (search and training): rarts.runs.

Each test runs over both tasks: a finished run resumed changes nothing, a run stopped before its first checkpoint
starts afresh on --resume, a folder without a run refuses --resume, and run folders written before the shared
machinery (checkpoint version 1, tests/fixtures/old_runs, made by its make.py) resume to the same results as the
uninterrupted old run and read in today's names and units.
"""

from __future__ import annotations

import gzip
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from rarts.config import build_config
from rarts.errors import UsageError
from rarts.runs import accuracy_scale, capture_rng, load_checkpoint, restore_rng, resume_free_settings
from rarts.runs.rng import upgrade_rng
from rarts.search.config import SearchConfig
from rarts.search.config import make_config as search_config
from rarts.search.loop import run_search
from rarts.train import TrainConfig, train
from rarts.train import make_config as train_config
from test_train import TINY, synthetic_set
from tiny_runs import TINY_SEARCH

OLD_RUNS = Path(__file__).parent / "fixtures" / "old_runs"
SETS = synthetic_set(24, 0), synthetic_set(16, 1, "test")


class Search:
    name, result = "search", "summary.json"

    @staticmethod
    def config(**more):
        return search_config("paper", {**TINY_SEARCH, "epochs": "1", **more}, {"method": "random", "device": "cpu"})

    @staticmethod
    def run(cfg, out, log=None, **kwargs):
        if log is None:
            return run_search(cfg, out, quiet=True, **kwargs)
        import contextlib
        import io

        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            result = run_search(cfg, out, **kwargs)
        log.extend(err.getvalue().splitlines())
        return result


class Train:
    name, result = "train", "result.json"

    @staticmethod
    def config(**more):
        return train_config("quick", {**TINY, "epochs": 1, **more}, {"genotype": "DARTS_V2"})

    @staticmethod
    def run(cfg, out, log=None, **kwargs):
        return train(cfg, out, sets=SETS, log=(lambda s: None) if log is None else log.append, **kwargs)


TASKS = [pytest.param(Search, id="search"), pytest.param(Train, id="train")]


@pytest.mark.parametrize("task", TASKS)
def test_resume_of_a_finished_run_leaves_its_record_alone(tmp_path, task):
    first = task.run(task.config(), tmp_path)
    before = {name: (tmp_path / name).read_bytes() for name in (task.result, "environment.json", "metrics.jsonl")}
    said: list[str] = []
    again = task.run(task.config(threads=2), tmp_path, resume=True, log=said)  # threads may change on a resume
    assert again == first == json.loads(before[task.result])
    noun = "search" if task is Search else "training"
    assert said == [f"{tmp_path}: the {noun} has finished already"]
    assert {name: (tmp_path / name).read_bytes() for name in before} == before


@pytest.mark.parametrize("task", TASKS)
def test_resume_of_a_run_stopped_before_its_first_checkpoint_starts_afresh(tmp_path, task):
    whole = task.run(task.config(), tmp_path / "whole")
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(tmp_path / "whole" / "config.json", run / "config.json")  # all a run killed at its start leaves
    said: list[str] = []
    again = task.run(task.config(), run, resume=True, log=said)
    assert f"{run}: the run stopped before its first checkpoint; starting it afresh" in said
    assert _untimed(again) == _untimed(whole)
    with pytest.raises(UsageError, match=r"--resume: .*empty holds no checkpoint.pt to resume from"):
        task.run(task.config(), tmp_path / "empty", resume=True)


@pytest.mark.parametrize("task", TASKS)
def test_resume_free_settings_come_from_the_config_fields(task):
    free = resume_free_settings(task.name)
    assert {"data_dir", "device", "threads", "progress", "tensorboard", "checkpoint_every"} <= free
    assert not free & {"seed", "lr", "epochs", "batch_size", "channels", "layers", "dataset"}
    if task is Search:
        assert {"paired_passes", "log_every", "plots"} <= free and not free & {"lam", "beta", "method"}
    else:
        assert {"workers", "eval_batch_size", "genotype"} <= free


# --- run folders of checkpoint version 1 -----------------------------------------------------------------------


def _old_folder(name: str, tmp_path: Path) -> Path:
    run = tmp_path / name
    shutil.copytree(OLD_RUNS / name, run)
    packed = run / "checkpoint.pt.gz"
    if packed.exists():
        (run / "checkpoint.pt").write_bytes(gzip.decompress(packed.read_bytes()))
        packed.unlink()
    return run


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _untimed(d: dict) -> dict:
    timed = ("seconds", "cpu_seconds", "search_seconds", "epoch_time_s", "elapsed_s", "train_time_s", "train_time_h")
    return {
        k: v for k, v in d.items() if k not in timed and "seconds" not in k and "memory" not in k and k != "search_cost"
    }


def _percent(row: dict) -> dict:
    return {k: 100.0 * v if k.endswith("_acc") else v for k, v in row.items()}


def test_an_old_search_folder_resumes_to_the_old_uninterrupted_run(tmp_path):
    run = _old_folder("search-killed", tmp_path)
    saved = json.loads((run / "config.json").read_text())
    cfg = build_config(SearchConfig, saved)
    assert accuracy_scale(run) == 100.0  # fractions, before accuracies were percents everywhere
    ckpt = load_checkpoint(run / "checkpoint.pt", "search")
    assert ckpt["version"] == 2 and (ckpt["epoch"], ckpt["step"]) == (1, 1)
    assert isinstance(ckpt["rng"]["python"], dict) and ckpt["rng"]["cuda"] == []
    run_search(cfg, run, resume=True, quiet=True)
    old = OLD_RUNS / "search-whole"
    for name in ("genotype.json", "alpha.json", "alphas.jsonl"):
        assert (run / name).read_text() == (old / name).read_text(), name
    assert [_untimed(r) for r in _rows(run / "metrics.jsonl")] == [
        _untimed(_percent(r)) for r in _rows(old / "metrics.jsonl")
    ]
    assert accuracy_scale(run) == 1.0
    summary = json.loads((run / "summary.json").read_text())
    old_summary = json.loads((old / "summary.json").read_text())
    assert summary["final_val_acc"] == 100.0 * old_summary["final_val_acc"]
    assert summary["genotype"] == old_summary["genotype"] and summary["steps"] == old_summary["steps"]


def test_an_old_training_folder_resumes_to_the_old_uninterrupted_run(tmp_path):
    run = _old_folder("train-killed", tmp_path)
    saved = json.loads((run / "config.json").read_text())
    assert "init_channels" in saved
    cfg = build_config(TrainConfig, saved)
    assert cfg.channels == saved["init_channels"] == 2
    ckpt = load_checkpoint(run / "checkpoint.pt", "train")
    assert ckpt["network"]["channels"] == 2 and "C" not in ckpt["network"]
    assert ckpt["config"]["channels"] == 2 and "init_channels" not in ckpt["config"]
    assert isinstance(ckpt["rng"]["numpy"], dict) and (ckpt["epoch"], ckpt["step"]) == (0, 2)
    result = train(cfg, run, resume=True, sets=SETS, log=lambda s: None)
    old = OLD_RUNS / "train-whole"
    assert _untimed(result) == _untimed(json.loads((old / "result.json").read_text()))
    assert [_untimed(r) for r in _rows(run / "metrics.jsonl")] == [_untimed(r) for r in _rows(old / "metrics.jsonl")]
    assert json.loads((run / "config.json").read_text())["channels"] == 2
    assert accuracy_scale(run) == 1.0


def test_both_old_generator_layouts_restore_the_same_state():
    cpu = torch.device("cpu")
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    state = capture_rng(cpu)
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    n, p = state["numpy"], state["python"]
    search_v1 = {"torch": state["torch"], "numpy": n, "python": p}
    train_v1 = {
        "python": [p["version"], p["internal"], p["gauss"]],
        "numpy": ["MT19937", n["keys"], n["pos"], n["has_gauss"], n["cached"]],
        "torch": state["torch"],
        "cuda": [],
        "cuda_current": None,
    }
    for old in (search_v1, train_v1):
        restore_rng(upgrade_rng(old), cpu)
        assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
