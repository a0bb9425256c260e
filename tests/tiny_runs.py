"""Tiny search and training runs shared by the search, training, run-contract and distributed tests, what two run
folders are compared by, and a stand-in for a killed process.

TINY_SEARCH: 32 images of the bundled CIFAR-10 subset at 8x8, 4 channels, 2 cells, batch 8 (2 steps an epoch),
2 epochs, a metrics row every step, no progress bar, TensorBoard or plots.
TINY_TRAIN: 4 channels, 3 cells, batch 8, 3 epochs on CPU, no progress bar or TensorBoard; with synthetic_set's
24 training images, 3 steps an epoch.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from rarts.data.imageset import ImageSet

TINY_SEARCH = {
    "dataset": "cifar10-mini",
    "subset": "32",
    "image_size": "8",
    "channels": "4",
    "layers": "2",
    "batch_size": "8",
    "epochs": "2",
    "log_every": "1",
    "progress": "false",
    "tensorboard": "false",
    "plots": "false",
}

TINY_TRAIN = {
    "channels": 4,
    "layers": 3,
    "batch_size": 8,
    "eval_batch_size": 16,
    "epochs": 3,
    "progress": False,
    "tensorboard": False,
    "device": "cpu",
}


def synthetic_set(n: int, seed: int, split: str = "train") -> ImageSet:
    """n random 32x32 images (the CIFAR auxiliary head needs 32x32 inputs), 10 classes."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.arange(n) % 10
    return ImageSet("synthetic", split, images, labels, tuple("abcdefghij"), (0.5,) * 3, (0.25,) * 3, "synthetic")


def search_results(run_dir: Path) -> dict:
    """Everything a search run computed, without wall times."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        row.pop("seconds")
        row.pop("search_seconds")
        row.pop("cpu_seconds")
    return {
        "alpha": json.loads((run_dir / "alpha.json").read_text()),
        "genotype": json.loads((run_dir / "genotype.json").read_text()),
        "metrics": rows,
        "alphas": (run_dir / "alphas.jsonl").read_text(),
    }


def same_training(a: Path, b: Path) -> None:
    """Two training run folders end with the same weights, momentum, metric rows (times aside) and result."""
    from rarts.train import load_checkpoint

    ca, cb = load_checkpoint(a / "checkpoint.pt"), load_checkpoint(b / "checkpoint.pt")
    assert ca["model"].keys() == cb["model"].keys()
    for key in ca["model"]:
        assert torch.equal(ca["model"][key], cb["model"][key]), key
    for state_a, state_b in zip(ca["optimizer"]["state"].values(), cb["optimizer"]["state"].values()):
        assert torch.equal(state_a["momentum_buffer"], state_b["momentum_buffer"])
    rows = [
        [{k: v for k, v in json.loads(line).items() if not k.endswith("_s")} for line in (run / "metrics.jsonl").open()]
        for run in (a, b)
    ]
    assert rows[0] == rows[1]
    results = [json.loads((run / "result.json").read_text()) for run in (a, b)]
    assert results[0]["test_top1_error"] == results[1]["test_top1_error"]
    assert results[0]["test_loss"] == results[1]["test_loss"]


class Killed(Exception):
    """Stands for the process being killed at a step."""


def kill_after(n_steps: int):
    """An on_step hook of run_search and train that raises Killed at the n-th step."""
    count = {"n": 0}

    def hook(epoch: int, step: int) -> None:
        count["n"] += 1
        if count["n"] == n_steps:
            raise Killed

    return hook
