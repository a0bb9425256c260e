"""The resumable-run contract, the same for every task (search and training): rarts.runs.

Each contract test runs over both tasks, through a small adapter per task (`Search`, `Train`: a tiny config, a
run, the same run from the command line, how its checkpoint says where it stands and what it saved):

- a finished run resumed changes nothing, a run stopped before its first checkpoint starts afresh on --resume,
  a folder without a run refuses --resume;
- a run killed after any step resumes to the uninterrupted run;
- failures: out of memory gives advice, weights or a loss gone inf or nan stop the run before a checkpoint would
  save them (the last good one stays), Ctrl-C says how to resume;
- the run folder's rules: a folder holding a run (of either task) or a file is refused, one holding only the
  settings of a run that stopped at its start is reused, a resume with other settings is refused;
- the settings free to change on resume come from the config fields;
- run folders written before the shared machinery (checkpoint version 1, tests/fixtures/old_runs, made by its
  make.py) resume to the same results as the uninterrupted old run and read in today's names and units.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import math
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from rarts.cli import main
from rarts.config import build_config
from rarts.errors import RunFailed, UsageError
from rarts.runs import (
    CHECKPOINT_NAME,
    accuracy_scale,
    capture_rng,
    load_checkpoint,
    restore_rng,
    resume_free_settings,
)
from rarts.runs.rng import upgrade_rng
from rarts.search.config import SearchConfig
from rarts.search.config import make_config as search_config
from rarts.search.loop import run_search
from rarts.train import TrainConfig, train
from rarts.train import make_config as train_config
from tiny_runs import TINY_SEARCH, TINY_TRAIN, Killed, kill_after, same_training, search_results, synthetic_set

OLD_RUNS = Path(__file__).parent / "fixtures" / "old_runs"
SETS = synthetic_set(24, 0), synthetic_set(16, 1, "test")
OUT_OF_MEMORY = "[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: 25 MB"


def _silent(_: str) -> None:
    pass


def _key_values(settings: dict) -> list[str]:
    return [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in settings.items()]


class Search:
    """A tiny search: 1 epoch of the random baseline by default, 2 steps an epoch (TINY_SEARCH)."""

    name = noun = "search"
    result, other_noun, other_result = "summary.json", "training", "result.json"
    quiet = ("--quiet",)  # the command's flag for no progress
    done = "random"  # what `rarts search --resume` prints of a finished run of config()

    @staticmethod
    def config(method="random", **more):
        settings = {**TINY_SEARCH, "epochs": "1", **{k: str(v) for k, v in more.items()}}
        return search_config("paper", settings, {"method": method, "device": "cpu"})

    @staticmethod
    def run(cfg, out, log=None, **kwargs):
        if log is None:
            return run_search(cfg, out, quiet=True, **kwargs)
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            result = run_search(cfg, out, **kwargs)
        log.extend(err.getvalue().splitlines())
        return result

    @staticmethod
    def argv(out, *extra) -> list[str]:
        """`rarts search` of config() into `out`."""
        base = ["search", "--method", "random", "--out", str(out), "--device", "cpu", "--quiet"]
        return base + _key_values({**TINY_SEARCH, "epochs": "1"}) + list(extra)

    @staticmethod
    def command(monkeypatch, entry=None) -> None:
        """Make `rarts search` call `entry` instead of run_search (None: run_search as it is)."""
        if entry is not None:
            import rarts.search.loop

            monkeypatch.setattr(rarts.search.loop, "run_search", entry)

    @staticmethod
    def load(run):
        return load_checkpoint(run / CHECKPOINT_NAME, "search")

    @staticmethod
    def position(ckpt) -> tuple[int, int]:
        """(epochs done, steps done of the next epoch) of a checkpoint."""
        return ckpt["epoch"], ckpt["step"]

    @staticmethod
    def saved_tensors(ckpt) -> list[torch.Tensor]:
        """The floating-point tensors of the weights and alpha a checkpoint saved."""
        nets = [t for net in ckpt["method"]["networks"].values() for t in net.values() if t.is_floating_point()]
        return nets + list(ckpt["method"]["arch"].values())

    @staticmethod
    def check_killed(run, ckpt) -> None:
        """What else the checkpoint of a killed run holds (a search: nothing this test looks at)."""

    @staticmethod
    def same_run(a, b) -> None:
        assert search_results(a) == search_results(b)

    @staticmethod
    def started(out):
        """A run in `out` that may be resumed (a finished one); returns its config."""
        cfg = Search.config()
        Search.run(cfg, out)
        return cfg

    @staticmethod
    def other_settings() -> list[tuple]:
        """Configs that another run in started()'s folder would have, and what the refusal of each names."""
        return [(Search.config("darts1"), "method")]


class Train:
    """A tiny training: 1 epoch of DARTS_V2 by default, 3 steps an epoch on SETS (TINY_TRAIN)."""

    name, noun = "train", "training"
    result, other_noun, other_result = "result.json", "search", "summary.json"
    quiet = ()
    done = "test error"

    @staticmethod
    def config(genotype="DARTS_V2", **more):
        return train_config("quick", {**TINY_TRAIN, "epochs": 1, **more}, {"genotype": genotype})

    @staticmethod
    def run(cfg, out, log=None, **kwargs):
        return train(cfg, out, sets=SETS, log=_silent if log is None else log.append, **kwargs)

    @staticmethod
    def argv(out, *extra) -> list[str]:
        """`rarts train` of config() into `out`."""
        base = ["train", "--genotype", "DARTS_V2", "--preset", "quick", "--out", str(out)]
        return base + _key_values({**TINY_TRAIN, "epochs": 1}) + list(extra)

    @staticmethod
    def command(monkeypatch, entry=None) -> None:
        """Make `rarts train` call `entry` instead of train (None: train, on the tiny sets, silent)."""
        import rarts.train

        real = rarts.train.train
        tiny = lambda cfg, out, **kwargs: real(cfg, out, sets=SETS, log=_silent, **kwargs)  # noqa: E731
        monkeypatch.setattr(rarts.train, "train", entry or tiny)

    @staticmethod
    def load(run):
        return load_checkpoint(run / CHECKPOINT_NAME, "train")

    @staticmethod
    def position(ckpt) -> tuple[int, int]:
        return ckpt["epoch"], ckpt.get("step", 0)

    @staticmethod
    def saved_tensors(ckpt) -> list[torch.Tensor]:
        return [t for t in ckpt["model"].values() if t.is_floating_point()]

    @staticmethod
    def check_killed(run, ckpt) -> None:
        """Within an epoch, the checkpoint holds the epoch's running sums and the loader's place."""
        _, step = Train.position(ckpt)
        assert ckpt["partial"]["seen"] == 8 * step and ckpt["loader"]["position"] == step
        assert ckpt["partial"]["loss"] > 0 and 0 <= ckpt["partial"]["correct"] <= 8 * step

    @staticmethod
    def same_run(a, b) -> None:
        same_training(a, b)

    @staticmethod
    def started(out):
        """A run in `out` that may be resumed (one epoch of two done); returns its config."""
        cfg = Train.config(epochs=2)
        Train.run(cfg, out, stop_after=1)
        return cfg

    @staticmethod
    def other_settings() -> list[tuple]:
        return [(Train.config("DARTS_V1", epochs=2), "another architecture"), (Train.config(epochs=2, lr=0.5), "lr=")]


TASKS = [pytest.param(Search, id="search"), pytest.param(Train, id="train")]


@pytest.mark.parametrize("task", TASKS)
def test_resume_of_a_finished_run_leaves_its_record_alone(tmp_path, task):
    first = task.run(task.config(), tmp_path)
    before = {name: (tmp_path / name).read_bytes() for name in (task.result, "environment.json", "metrics.jsonl")}
    said: list[str] = []
    again = task.run(task.config(threads=2), tmp_path, resume=True, log=said)  # threads may change on a resume
    assert again == first == json.loads(before[task.result])
    assert said == [f"{tmp_path}: the {task.noun} has finished already"]
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


# --- a killed run ------------------------------------------------------------------------------------------------

KILLS = [
    # (task, settings of the killed run, of the uninterrupted one, steps before the kill, the checkpoint's place)
    pytest.param(
        Search,
        {"method": "rarts", "epochs": 2, "checkpoint_every": 1, "y_init": "independent"},
        {"method": "rarts", "epochs": 2, "checkpoint_every": 1, "y_init": "independent"},
        3,
        (1, 1),
        id="search-rarts-checkpoint-every-step",
    ),
    pytest.param(
        Search,
        {"method": "darts1", "epochs": 2, "checkpoint_every": 0, "y_init": "independent"},
        {"method": "darts1", "epochs": 2, "checkpoint_every": 0, "y_init": "independent"},
        3,
        (1, 0),  # resumed from the end of epoch 1
        id="search-darts1-checkpoint-every-epoch",
    ),
    pytest.param(
        Train,
        {"epochs": 3, "drop_path_prob": 0.3, "checkpoint_every": 1},
        {"epochs": 3, "drop_path_prob": 0.3},
        1,
        (0, 1),  # 3 steps an epoch: step 1 of epoch 1
        id="train-step-1-of-epoch-1",
    ),
    pytest.param(
        Train,
        {"epochs": 3, "drop_path_prob": 0.3, "checkpoint_every": 1},
        {"epochs": 3, "drop_path_prob": 0.3},
        5,
        (1, 2),  # step 2 of epoch 2
        id="train-step-2-of-epoch-2",
    ),
]


@pytest.mark.parametrize("task, settings, whole_settings, kill_at, position", KILLS)
def test_a_killed_run_resumes_to_the_uninterrupted_run(tmp_path, task, settings, whole_settings, kill_at, position):
    """Killed after `kill_at` steps: a checkpoint every step resumes there, one every epoch from the epoch's end."""
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    task.run(task.config(**whole_settings), whole)
    cfg = task.config(**settings)
    with pytest.raises(Killed):
        task.run(cfg, killed, on_step=kill_after(kill_at))
    assert not (killed / task.result).exists()
    ckpt = task.load(killed)
    assert task.position(ckpt) == position
    assert len((killed / "metrics.jsonl").read_text().splitlines()) == position[0]
    task.check_killed(killed, ckpt)
    assert task.run(cfg, killed, resume=True)["epochs"] == cfg.epochs
    task.same_run(killed, whole)


# --- failures ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "task, message",
    [
        pytest.param(Search, r"out of CPU memory at epoch 1/2, step 2/2 of darts1.*batch_size=4", id="search"),
        pytest.param(Train, r"out of CPU memory in epoch 1/3 \(batch_size=8.*batch_size=4", id="train"),
    ],
)
def test_out_of_memory_fails_with_advice(tmp_path, task, message):
    def no_memory(epoch: int, step: int) -> None:
        raise RuntimeError(OUT_OF_MEMORY)

    cfg = task.config("darts1", epochs=2) if task is Search else task.config(epochs=3)
    with pytest.raises(RunFailed, match=message) as err:
        task.run(cfg, tmp_path / "run", on_step=no_memory)
    assert err.value.exit_code == 1


def _search_nan_weight(run, monkeypatch) -> None:
    """A weight of w set to nan after the checkpoint of epoch 2, step 1: the next step's losses are nan."""
    import rarts.search.loop as loop

    nets, original = [], loop.SearchNetwork

    def keep(*args, **kwargs):
        nets.append(original(*args, **kwargs))
        return nets[-1]

    def poison(epoch: int, step: int) -> None:
        if (epoch, step) == (1, 1):
            with torch.no_grad():
                next(iter(nets[0].parameters())).fill_(float("nan"))

    monkeypatch.setattr(loop, "SearchNetwork", keep)
    Search.run(Search.config("milenas", epochs=2, checkpoint_every=1), run, on_step=poison)


def _search_inf_alpha(every: int, at_step: int):
    """An update that makes alpha inf after a finite loss, at the `at_step`-th step of darts1 (counted from 1)."""

    def start(run, monkeypatch) -> None:
        import rarts.search.loop as loop

        cls, calls = loop.METHODS["darts1"], {"n": 0}
        original = cls.step

        def step(self, *args):
            metrics = original(self, *args)
            calls["n"] += 1
            if calls["n"] == at_step:
                with torch.no_grad():
                    self.arch.alpha_normal.view(-1)[0] = math.inf
            return metrics

        monkeypatch.setattr(cls, "step", step)
        Search.run(Search.config("darts1", epochs=2, checkpoint_every=every), run)

    return start


def _poisoning_optimizer(monkeypatch, at_step: int) -> None:
    """Make train's optimiser fill one weight with inf right after its `at_step`-th step (counted from 1)."""
    import rarts.train.run

    make_optimizer = rarts.train.run.make_optimizer
    steps = {"n": 0}

    def make(cfg, net):
        optimizer = make_optimizer(cfg, net)
        weight = next(net.parameters())

        def after_step(*_):
            steps["n"] += 1
            if steps["n"] == at_step:
                with torch.no_grad():
                    weight.view(-1)[0] = math.inf

        optimizer.register_step_post_hook(after_step)
        return optimizer

    monkeypatch.setattr(rarts.train.run, "make_optimizer", make)


def _train_inf_weight(every: int, at_step: int):
    """Epoch 1 trained, then a resumed run whose optimiser makes a weight inf at its `at_step`-th step."""

    def start(run, monkeypatch) -> None:
        cfg = Train.config(epochs=3, checkpoint_every=every)
        Train.run(cfg, run, stop_after=1)
        _poisoning_optimizer(monkeypatch, at_step)
        Train.run(cfg, run, resume=True)

    return start


def _train_nan_loss(run, monkeypatch) -> None:
    """An epoch whose training loss is nan."""
    import rarts.train.run

    def diverged(*args, **kwargs):
        return {"train_loss": math.nan, "train_top1": 0.0, "train_top5": 0.0}

    monkeypatch.setattr(rarts.train.run, "train_one_epoch", diverged)
    Train.run(Train.config(epochs=3), run)


NON_FINITE = [
    # (task, how the run goes inf or nan, what the failure says, the place of the checkpoint kept, None: none)
    pytest.param(
        Search, _search_nan_weight, r"non-finite .*epoch 2/2, step 2/2 of milenas", (1, 1), id="search-nan-loss"
    ),
    # Caught before the mid-epoch checkpoint of step 1 of epoch 2 (the third step), or before the first epoch's
    # checkpoint (its last step, the second).
    pytest.param(
        Search,
        _search_inf_alpha(1, 3),
        "weights or alpha became inf or nan at epoch 2/2, step 1/2 of darts1",
        (1, 0),
        id="search-inf-alpha-mid-epoch",
    ),
    pytest.param(
        Search,
        _search_inf_alpha(0, 2),
        "weights or alpha became inf or nan at epoch 1/2, step 2/2 of darts1",
        None,
        id="search-inf-alpha-epoch-end",
    ),
    # The update of step 2 of epoch 2 makes a weight inf; that step's loss was computed before, finite.
    pytest.param(
        Train,
        _train_inf_weight(1, 2),
        r"1 weights became inf or nan by step 2 of epoch 2/3; the checkpoint at step 1/3 of epoch 2 ",
        (1, 1),
        id="train-inf-weight-mid-epoch",
    ),
    pytest.param(
        Train,
        _train_inf_weight(1, 1),
        r"1 weights became inf or nan by step 1 of epoch 2/3; the checkpoint of epoch 1 ",
        (1, 0),
        id="train-inf-weight-first-step",
    ),
    # No checkpoint at step 1: step 2's loss, and so the running sum, is no longer finite.
    pytest.param(
        Train,
        _train_inf_weight(2, 1),
        r"training loss became (nan|inf) by step 2 of epoch 2/3; the checkpoint of epoch 1 ",
        (1, 0),
        id="train-inf-loss-mid-epoch",
    ),
    # The last step of the epoch (3 steps an epoch): caught before the epoch's checkpoint.
    pytest.param(
        Train,
        _train_inf_weight(1, 3),
        r"1 weights became inf or nan in epoch 2/3; the checkpoint at step 2/3 of epoch 2 ",
        (1, 2),
        id="train-inf-weight-epoch-end",
    ),
    pytest.param(
        Train,
        _train_nan_loss,
        r"became nan in epoch 1/3; no checkpoint had been written yet",
        None,
        id="train-nan-loss",
    ),
]


def floating_tensors(obj) -> list[torch.Tensor]:
    """Every floating-point tensor in a checkpoint (weights, alpha, buffers, optimiser state, ...)."""
    if isinstance(obj, torch.Tensor):
        return [obj] if obj.is_floating_point() else []
    if isinstance(obj, dict):
        return [t for value in obj.values() for t in floating_tensors(value)]
    if isinstance(obj, (list, tuple)):
        return [t for value in obj for t in floating_tensors(value)]
    return []


def check_non_finite_stop(run: Path, monkeypatch, task, start, message, kept) -> None:
    """start(run) goes inf or nan: one RunFailed (exit 1) saying `message`, no result file, and the checkpoint kept
    at `kept` (or none) holding finite tensors only, the saved weights and every buffer and optimiser state."""
    with pytest.raises(RunFailed, match=message) as err:
        start(run, monkeypatch)
    assert err.value.exit_code == 1
    assert not (run / task.result).exists()
    if kept is None:
        assert not (run / CHECKPOINT_NAME).exists()
        return
    ckpt = task.load(run)
    assert task.position(ckpt) == kept
    assert all(torch.isfinite(t).all() for t in task.saved_tensors(ckpt))
    tensors = floating_tensors(ckpt)
    assert len(tensors) > len(task.saved_tensors(ckpt))  # buffers and optimiser state too
    assert all(torch.isfinite(t).all() for t in tensors)


@pytest.mark.parametrize("task, start, message, kept", NON_FINITE)
def test_a_run_gone_non_finite_stops_and_keeps_its_last_good_checkpoint(
    tmp_path, monkeypatch, task, start, message, kept
):
    check_non_finite_stop(tmp_path / "run", monkeypatch, task, start, message, kept)


@pytest.mark.parametrize("task", TASKS)
def test_ctrl_c_says_how_to_resume(tmp_path, capsys, monkeypatch, task):
    def interrupted(cfg, out, **kwargs):
        Path(out).mkdir(parents=True)
        (Path(out) / CHECKPOINT_NAME).write_bytes(b"")
        raise KeyboardInterrupt

    task.command(monkeypatch, interrupted)
    assert main(task.argv(tmp_path / "run")) == 130
    err = capsys.readouterr().err
    assert f"continue with: rarts {task.name} --out {tmp_path / 'run'} --resume" in err and "interrupted" in err


# --- the run folder's rules --------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", TASKS)
def test_run_folder_rules(tmp_path, capsys, monkeypatch, task):
    """On the command line: refuse a folder that holds a run or is a file, reuse one that holds only the settings
    of a run stopped at its start, resume a finished run to its result."""
    task.command(monkeypatch)

    def refused(argv: list[str], needle: str) -> None:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert needle in err, err

    out = tmp_path / "run"
    refused(task.argv(out, "--resume"), "holds no checkpoint.pt")
    assert main(task.argv(out)) == 0
    capsys.readouterr()
    refused(task.argv(out), f"already holds a {task.noun} run")
    refused([task.name, "--resume", "--out", str(out), "epochs=3"], "epochs=3 differs from the run's 1")
    assert main([task.name, "--resume", "--out", str(out), *task.quiet]) == 0
    assert task.done in capsys.readouterr().out
    (out / CHECKPOINT_NAME).unlink()  # deleted to save space: the results are still there
    refused(task.argv(out), f"already holds a {task.noun} run ({task.result}")
    other = tmp_path / "other"
    other.mkdir()
    (other / task.other_result).write_text("{}")
    refused(task.argv(other), f"already holds a {task.other_noun} run ({task.other_result}): give another --out")
    (tmp_path / "a_file").write_text("")
    refused(task.argv(tmp_path / "a_file"), "exists and is not a folder")
    started = tmp_path / "started"  # stopped before its first checkpoint: only settings, nothing to lose
    started.mkdir()
    (started / "config.json").write_text("{}")
    (started / "metrics.jsonl").write_text("")
    assert main(task.argv(started)) == 0
    assert (started / task.result).is_file()


@pytest.mark.parametrize("task", TASKS)
def test_resume_with_other_settings_is_refused(tmp_path, task):
    cfg = task.started(tmp_path)
    for other, needle in task.other_settings():
        with pytest.raises(UsageError, match=needle):
            task.run(other, tmp_path, resume=True)
    with pytest.raises(UsageError, match="already holds"):
        task.run(cfg, tmp_path)
    with pytest.raises(UsageError, match="no checkpoint"):
        task.run(cfg, tmp_path / "empty", resume=True)


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


def test_old_run_folders_still_report(tmp_path):
    from rarts import report as rep

    (run,), notes = rep.collect_runs([OLD_RUNS / "search-whole"])
    assert run.method == "darts1" and run.summary["format_version"] == 1 and run.metrics and run.alphas
    assert (
        rep.supernet_accuracy(run, "val")
        == 100.0 * json.loads((OLD_RUNS / "search-whole" / "summary.json").read_text())["final_val_acc"]
    )
    train = rep.load_train_run(OLD_RUNS / "train-whole")
    assert train.config["channels"] == 2 and "init_channels" not in train.config  # the old name, read as the new
    paths = rep.build_report([run], tmp_path / "report", toy_figure=False)
    assert "| DARTS (1st order), seed 0 | — | — | — | 0.0 / 0.0 |" in paths["markdown"].read_text()
