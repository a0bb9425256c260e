"""Tiny search runs shared by the search-loop and distributed tests, and a stand-in for a killed process.

TINY_SEARCH: 32 images of the bundled CIFAR-10 subset at 8x8, 4 channels, 2 cells, batch 8 (2 steps an epoch),
2 epochs, a metrics row every step, no progress bar, TensorBoard or plots.
"""

from __future__ import annotations

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


class Killed(Exception):
    """Stands for the process being killed at a step."""


def kill_after(n_steps: int):
    """An on_step hook of run_search that raises Killed at the n-th step."""
    count = {"n": 0}

    def hook(epoch: int, step: int) -> None:
        count["n"] += 1
        if count["n"] == n_steps:
            raise Killed

    return hook
