"""Faults a run meets, for both tasks: SIGTERM to a real `rarts search` / `rarts train` process, a write refused
mid-run (a full disk), the temporary files a kill during a write leaves behind (rarts.runs.run), and non-finite
values beyond the weights: a batch-norm statistic, the evaluation loss (rarts.runs.finite).

The SIGTERM tests start the command as a subprocess (one thread), send SIGTERM once its first checkpoint is on
disk, expect exit code 143 and the one-line resume advice, then resume it in this process and compare with the
run that was never stopped.
"""

from __future__ import annotations

import errno
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rarts.cli import main
from rarts.runs import CHECKPOINT_NAME, Stopped, remove_orphans
from test_runs import TASKS, Search, Train, _key_values, check_non_finite_stop
from tiny_runs import TINY_SEARCH, same_training, search_results

SRC = Path(__file__).resolve().parents[1] / "src"

# Search: 3 epochs of DARTS 1st order, 2 steps each, a checkpoint every step. Training: one epoch of cifar10-mini
# (3,500 images) in 7 steps of 500, a checkpoint every 2: the smallest run of the real dataset a subprocess can be
# given on the command line.
SEARCH_ARGV = ["search", "--method", "darts1", "--device", "cpu", "--quiet"] + _key_values(
    {**TINY_SEARCH, "epochs": "3", "checkpoint_every": "1", "threads": "1"}
)
TRAIN_SETTINGS = {"channels": 4, "layers": 3, "batch_size": 500, "eval_batch_size": 500, "epochs": 1}
TRAIN_ARGV = ["train", "--genotype", "DARTS_V2", "--preset", "quick"] + _key_values(
    {**TRAIN_SETTINGS, "checkpoint_every": 2, "progress": False, "tensorboard": False, "device": "cpu", "threads": 1}
)
SIGTERMED = [
    pytest.param(SEARCH_ARGV, "search", lambda a, b: search_results(a) == search_results(b), id="search"),
    # a whole epoch of 3,500 images, three times: half a minute, in the slow suite
    pytest.param(TRAIN_ARGV, "train", lambda a, b: same_training(a, b) is None, id="train", marks=pytest.mark.slow),
]


def _argv(argv: list[str], out: Path) -> list[str]:
    return [argv[0], "--out", str(out), *argv[1:]]


@pytest.mark.parametrize("argv, command, same", SIGTERMED)
def test_sigterm_checkpoints_says_how_to_resume_and_resumes_to_the_uninterrupted_run(tmp_path, argv, command, same):
    stopped, whole = tmp_path / "stopped", tmp_path / "whole"
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rarts", *_argv(argv, stopped)], env=env, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 120
    while not (stopped / CHECKPOINT_NAME).exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    [line] = [line for line in err.splitlines() if line.startswith("rarts:")]
    assert line.startswith("rarts: error: stopped by SIGTERM ")
    assert line.endswith(
        f"; the last checkpoint in {stopped} is intact; continue with: rarts {command} --out {stopped} --resume"
    )
    assert not [p for p in stopped.iterdir() if p.name.endswith(".tmp")]

    assert main([command, "--out", str(stopped), "--resume"] + (["--quiet"] if command == "search" else [])) == 0
    assert main(_argv(argv, whole)) == 0
    assert same(stopped, whole)


def _sigterm_after(n_steps: int):
    """An on_step hook that sends this process SIGTERM at the n-th step, as a job scheduler would."""
    count = {"n": 0}

    def hook(epoch: int, step: int) -> None:
        count["n"] += 1
        if count["n"] == n_steps:
            os.kill(os.getpid(), signal.SIGTERM)

    return hook


IN_PROCESS = [
    # (task, settings (no checkpoint but the epoch's: SIGTERM writes its own), steps before it, the checkpoint's place)
    pytest.param(Search, {"method": "darts1", "epochs": 2, "checkpoint_every": 0}, 1, (0, 1), id="search-mid-epoch"),
    pytest.param(Search, {"method": "random", "epochs": 2, "checkpoint_every": 0}, 2, (1, 0), id="search-epoch-end"),
    pytest.param(Train, {"epochs": 2, "checkpoint_every": 0}, 2, (0, 2), id="train-mid-epoch"),
    pytest.param(Train, {"epochs": 2, "checkpoint_every": 2}, 3, (1, 0), id="train-epoch-end"),
]


@pytest.mark.parametrize("task, settings, stop_at, position", IN_PROCESS)
def test_sigterm_stops_after_the_step_checkpointed(tmp_path, task, settings, stop_at, position):
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    cfg = task.config(**settings)
    task.run(cfg, whole)
    with pytest.raises(Stopped, match=f"continue with: rarts {task.name} --out {stopped} --resume") as err:
        task.run(cfg, stopped, on_step=_sigterm_after(stop_at))
    assert err.value.exit_code == 143
    assert task.position(task.load(stopped)) == position
    assert not (stopped / task.result).exists()
    task.run(cfg, stopped, resume=True)
    task.same_run(stopped, whole)


def test_sigterm_handler_is_the_previous_one_after_a_run(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    Search.run(Search.config(), tmp_path / "run")
    assert signal.getsignal(signal.SIGTERM) is before


def _refuse_checkpoint_write(monkeypatch, after: int) -> None:
    """Make the (after+1)-th write of a checkpoint fail as a full disk does, at its fsync (the data written)."""
    real = os.fsync
    seen = {"n": 0}

    def fsync(fd: int) -> None:
        if f".{CHECKPOINT_NAME}." in os.readlink(f"/proc/self/fd/{fd}"):
            seen["n"] += 1
            if seen["n"] > after:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to tell a checkpoint's write")
@pytest.mark.parametrize("task", TASKS)
def test_a_full_disk_mid_run_is_one_line_and_keeps_the_earlier_checkpoint(tmp_path, capsys, monkeypatch, task):
    run = tmp_path / "run"
    task.command(monkeypatch)
    _refuse_checkpoint_write(monkeypatch, after=1)
    assert main(task.argv(run, "checkpoint_every=1")) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"rarts: error: cannot write {run / CHECKPOINT_NAME}: {os.strerror(errno.ENOSPC)}; the last checkpoint in "
        f"{run} is intact; continue with: rarts {task.name} --out {run} --resume"
    ]
    assert task.position(task.load(run)) == (0, 1)
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("task", TASKS)
def test_a_run_removes_its_orphan_temporary_files_and_only_those(tmp_path, task):
    run = tmp_path / "run"
    cfg = task.started(run)
    orphans = [run / ".checkpoint.pt.k2j4x_9q.tmp", run / ".metrics.jsonl.abcd1234.tmp"]
    others = [run / "notes.tmp", run / ".checkpoint.pt.tmp", run / "checkpoint.pt.abcd1234.tmp"]
    for path in orphans + others:
        path.write_bytes(b"half")
    task.run(cfg, run, resume=True)
    assert [p for p in orphans if p.exists()] == []
    assert all(p.read_bytes() == b"half" for p in others)


def test_remove_orphans_of_a_folder_not_made_yet(tmp_path):
    assert remove_orphans(tmp_path / "new") == []


# --- non-finite values the weights' check did not see -------------------------------------------------------------


def _kept_networks(monkeypatch, module, name: str) -> list:
    """Make `module.name` (the network's constructor) keep what it builds in the list returned."""
    nets, original = [], getattr(module, name)

    def keep(*args, **kwargs):
        nets.append(original(*args, **kwargs))
        return nets[-1]

    monkeypatch.setattr(module, name, keep)
    return nets


def _nan_running_var(nets: list, at: tuple[int, int]):
    """An on_step hook that sets one batch-norm running_var of the first network to nan after step `at`."""

    def hook(epoch: int, step: int) -> None:
        if (epoch, step) == at:
            bn = next(m for m in nets[0].modules() if isinstance(m, torch.nn.BatchNorm2d) and m.running_var is not None)
            bn.running_var.fill_(float("nan"))

    return hook


def _search_nan_statistic(run, monkeypatch) -> None:
    import rarts.search.loop as loop

    nets = _kept_networks(monkeypatch, loop, "SearchNetwork")
    Search.run(Search.config("darts1", checkpoint_every=1), run, on_step=_nan_running_var(nets, (0, 1)))


def _search_nan_val_loss(run, monkeypatch) -> None:
    import rarts.search.loop as loop

    monkeypatch.setattr(loop, "evaluate", lambda *args: (math.nan, 0.1))
    Search.run(Search.config("darts1", checkpoint_every=1), run)


def _train_nan_statistic(run, monkeypatch) -> None:
    import rarts.train.run

    nets = _kept_networks(monkeypatch, rarts.train.run, "make_model")
    Train.run(Train.config(checkpoint_every=1), run, on_step=_nan_running_var(nets, (0, 1)))


def _train_nan_test_loss(run, monkeypatch) -> None:
    import rarts.train.run

    real, calls = rarts.train.run.evaluate, {"n": 0}

    def diverged(*args, **kwargs):
        calls["n"] += 1
        result = real(*args, **kwargs)
        return {**result, "test_loss": math.nan} if calls["n"] == 2 else result

    monkeypatch.setattr(rarts.train.run, "evaluate", diverged)
    Train.run(Train.config(epochs=2), run)


NON_FINITE = [
    # (task, how the run goes inf or nan, what the failure says, the place of the checkpoint kept)
    pytest.param(
        Search,
        _search_nan_statistic,
        "weights or alpha became inf or nan at epoch 1/1, step 2/2 of darts1",
        (0, 1),
        id="search-nan-running-var",
    ),
    pytest.param(
        Search, _search_nan_val_loss, "val_loss became nan at epoch 1/1, step 2/2 of darts1", (0, 1), id="search-val"
    ),
    pytest.param(
        Train, _train_nan_statistic, "weights became inf or nan by step 2 of epoch 1/1", (0, 1), id="train-running-var"
    ),
    pytest.param(
        Train,
        _train_nan_test_loss,
        "test loss became nan in epoch 2/2; the checkpoint of epoch 1 in",
        (1, 0),
        id="train-nan-test-loss",
    ),
]


@pytest.mark.parametrize("task, start, message, kept", NON_FINITE)
def test_a_non_finite_statistic_or_evaluation_stops_the_run_with_every_saved_tensor_finite(
    tmp_path, monkeypatch, task, start, message, kept
):
    check_non_finite_stop(tmp_path / "run", monkeypatch, task, start, message, kept)
