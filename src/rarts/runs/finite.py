"""What is checked before a checkpoint is written, so that a run gone inf or nan never replaces a good one.

    bad = count_nonfinite(net, arch)                 # a tensor on their device: no host sync yet
    check_finite(bad_everywhere, "at epoch 2/3; the checkpoint of epoch 1 is intact", loss=running_loss)

Checked: every parameter of the modules the checkpoint saves (the weights, and a search's alpha) and the loss the
task keeps a running sum of (training's). A search's losses are its step metrics, which its epoch meter checks at
every host sync (rarts.search.epoch), before a checkpoint too. Each task brings the count together over the
processes in the sync it makes anyway, so that every process stops at the same step.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from rarts.errors import RunFailed


def count_nonfinite(*modules: torch.nn.Module) -> torch.Tensor:
    """How many parameters of `modules` are inf or nan: a tensor on their device (no host sync). An update can
    make them so while the loss logged for its step, computed before it, is finite."""
    return torch.stack([(~torch.isfinite(p.detach())).sum() for m in modules for p in m.parameters()]).sum()


def check_finite(nonfinite: float, where: str, loss: Optional[float] = None, weights: str = "{n} weights") -> None:
    """Raise RunFailed when `loss` is not finite or `nonfinite` (count_nonfinite's, over every process) is not 0.
    where: the place and what a failure keeps, as the message ends it; weights: what the parameters are called
    ("{n}" is their count)."""
    if loss is not None and not math.isfinite(loss):
        raise RunFailed(f"training loss became {loss} {where}")
    if nonfinite:
        raise RunFailed(f"{weights.format(n=int(nonfinite))} became inf or nan {where}")
