"""What is checked before a checkpoint is written, so that a run gone inf or nan never replaces a good one.

    bad = count_nonfinite(net, arch, states=[optimizer.state_dict()])   # a tensor on their device: no host sync yet
    check_finite(bad_everywhere, "at epoch 2/3; the checkpoint of epoch 1 is intact", loss=running_loss)

Checked: every tensor the checkpoint holds of the modules it saves (the weights, a search's alpha, and the
floating-point buffers: batch-norm running statistics), of the optimiser states, the loss the task keeps a running
sum of (training's) and its evaluation loss (`what="test loss"`). A search's losses are its step metrics, which
its epoch meter checks at every host sync (rarts.search.epoch), before a checkpoint too. Each task brings the
count together over the processes in the sync it makes anyway, so that every process stops at the same step.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any, Optional

import torch

from rarts.errors import RunFailed


def count_nonfinite(*modules: torch.nn.Module, states: Iterable[Any] = ()) -> torch.Tensor:
    """How many values of the parameters and floating-point buffers of `modules`, and of the tensors nested in
    `states` (optimiser state dicts), are inf or nan: a tensor on their device (no host sync). An update can make
    them so while the loss logged for its step, computed before it, is finite."""
    tensors = [t for m in modules for t in (*m.parameters(), *m.buffers()) if t.is_floating_point()]
    tensors += [t for state in states for t in _nested_tensors(state) if t.is_floating_point()]
    return torch.stack([(~torch.isfinite(t.detach())).sum() for t in tensors]).sum()


def _nested_tensors(obj: Any) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from _nested_tensors(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from _nested_tensors(value)


def check_finite(
    nonfinite: float,
    where: str,
    loss: Optional[float] = None,
    weights: str = "{n} weights",
    what: str = "training loss",
) -> None:
    """Raise RunFailed when `loss` is not finite or `nonfinite` (count_nonfinite's, over every process) is not 0.
    where: the place and what a failure keeps, as the message ends it; weights: what the counted values are called
    ("{n}" is their count); what: the loss's name."""
    if loss is not None and not math.isfinite(loss):
        raise RunFailed(f"{what} became {loss} {where}")
    if nonfinite:
        raise RunFailed(f"{weights.format(n=int(nonfinite))} became inf or nan {where}")
