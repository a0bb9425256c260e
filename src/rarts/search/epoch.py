"""An epoch's figures: the step metrics summed on the device between host syncs, and the evaluation on the
validation half.

Accuracies are percents in every file; the methods' step metrics are fractions of the batch, which `percent`
scales when a row is made. `EpochMeter.check` is the one place the step metrics are looked at for inf or nan.
"""

from __future__ import annotations

import time
from typing import Callable

import torch
import torch.nn.functional as F

from rarts.distributed import all_reduce_sum, any_process
from rarts.errors import RunFailed
from rarts.runs.folder import is_accuracy


class EpochMeter:
    """Sums of the step metrics over an epoch (weighted by batch size), kept on the device between syncs.

    `check` syncs once: it looks at every metric of every step added since the last check and raises RunFailed
    naming the first step with a non-finite value.
    """

    def __init__(self, state: dict | None = None, device: torch.device | None = None):
        state = state or {}
        self.sums: dict[str, torch.Tensor] = {
            k: torch.tensor(v, device=device) for k, v in state.get("sums", {}).items()
        }
        self.count = int(state.get("count", 0))
        self.device = device if device is not None else torch.device("cpu")
        # Wall and process CPU time of the epoch so far (CPU time: all threads; on a shared machine it is the
        # steadier figure). Counting starts at construction, continuing from the saved part of the epoch.
        self._wall0 = time.perf_counter() - float(state.get("seconds", 0.0))
        self._cpu0 = time.process_time() - float(state.get("cpu_seconds", 0.0))
        self._pending: list[tuple[int, dict[str, torch.Tensor]]] = []

    def elapsed(self) -> tuple[float, float]:
        """(wall seconds, process CPU seconds) of the epoch so far."""
        return time.perf_counter() - self._wall0, time.process_time() - self._cpu0

    def add(self, step: int, metrics: dict[str, torch.Tensor], n: int) -> None:
        for key, value in metrics.items():
            term = value.detach().float() * n
            self.sums[key] = self.sums[key] + term if key in self.sums else term
        self.count += n
        self._pending.append((step, metrics))

    def check(self, where: Callable[[int], str]) -> None:
        if not self._pending:
            return
        keys = sorted(self._pending[0][1])
        values = torch.stack([torch.stack([m[k].detach().float() for k in keys]) for _, m in self._pending])
        finite = torch.isfinite(values)
        # Every process stops when one of them sees a non-finite value (one stopping alone would hang the rest).
        if any_process(not bool(finite.all()), values.device) and bool(finite.all()):
            raise RunFailed(f"non-finite metric on another process at {where(self._pending[0][0])}")
        if not bool(finite.all()):
            row, col = (~finite).nonzero()[0].tolist()
            step = self._pending[row][0]
            raise RunFailed(f"non-finite {keys[col]} ({values[row, col].item()}) at {where(step)}")
        self._pending.clear()

    def means(self) -> dict[str, float]:
        return {k: (v / max(self.count, 1)).item() for k, v in self.sums.items()}

    def totals(self) -> tuple[dict[str, float], int]:
        """(sums, count) over all processes of a distributed run (one all-reduce; every process must call it)."""
        keys = sorted(self.sums)
        local = torch.stack([self.sums[k].double() for k in keys] + [torch.tensor(float(self.count)).double()])
        total = all_reduce_sum(local.to(self.device)).tolist()
        return dict(zip(keys, total[:-1])), int(total[-1])

    def global_means(self) -> dict[str, float]:
        """The epoch's means over all processes (every process must call it)."""
        sums, count = self.totals()
        return {k: v / max(count, 1) for k, v in sums.items()}

    def state_dict(self) -> dict:
        """Sums and count over all processes (every process must call it), so rank 0's checkpoint holds them all."""
        seconds, cpu_seconds = self.elapsed()
        sums, count = self.totals()
        return {"sums": sums, "count": count, "seconds": seconds, "cpu_seconds": cpu_seconds}


@torch.no_grad()
def evaluate(net: torch.nn.Module, loader, mixing) -> tuple[float, float]:
    """(mean loss, accuracy) of `net` over the whole loader, BatchNorm in eval mode."""
    was_training = net.training
    net.eval()
    loss_sum = correct = None
    n = 0
    for x, target in loader:
        logits = net(x, mixing)
        loss = F.cross_entropy(logits, target, reduction="sum")
        hits = (logits.argmax(1) == target).sum()
        loss_sum = loss if loss_sum is None else loss_sum + loss
        correct = hits if correct is None else correct + hits
        n += target.numel()
    net.train(was_training)
    # Each process evaluated its shard of the loader: add up over the processes.
    loss_sum, correct, n = all_reduce_sum(
        torch.stack([loss_sum.double(), correct.double(), loss_sum.new_tensor(n).double()])
    ).tolist()
    return loss_sum / n, correct / n


def percent(means: dict[str, float]) -> dict[str, float]:
    """The step metrics' means with accuracies (fractions of the batch) in percent, as every file holds them."""
    return {k: 100.0 * v if is_accuracy(k) else v for k, v in means.items()}
