"""One training epoch: the step (autocast, auxiliary loss, clipping, SGD), its running sums, mid-epoch checkpoints."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from rarts.runs.finite import count_nonfinite
from rarts.runs.run import Terminated, stop_requested
from rarts.train.config import TrainConfig
from rarts.train.recipe import autocast, is_main_process, training_loss


def _correct_topk(logits: torch.Tensor, target: torch.Tensor, ks: tuple[int, ...]) -> list[torch.Tensor]:
    """Number of samples whose target is among the top-k logits, for each k (tensors: no device sync)."""
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hits = top == target[:, None]
    return [hits[:, : min(k, logits.shape[1])].any(dim=1).sum() for k in ks]


def train_one_epoch(
    model: nn.Module,
    loader: Any,
    optimizer: torch.optim.Optimizer,
    criterion: nn.Module,
    cfg: TrainConfig,
    amp_dtype: torch.dtype | None,
    scaler: Any = None,
    desc: str = "train",
    start_step: int = 0,
    partial: dict[str, float] | None = None,
    checkpoint: Callable[[int, dict[str, float]], None] | None = None,
    on_step: Callable[[int], None] | None = None,
) -> dict[str, float]:
    """One pass over `loader` (the rest of its epoch): returns the mean training objective and top-1 accuracy (%)
    over the epoch, summed over the processes.

    start_step: batches of this epoch done before (a resumed epoch; the loader stands there already); partial:
    their summed `loss`, `correct` and `seen`, which one process alone passes (rank 0), as they cover all.
    checkpoint(step, sums): called every cfg.checkpoint_every steps of the epoch but the last, on every process,
    with the sums so far over all processes (and `nonfinite_weights`, the count of weights that are inf or nan);
    on_step(step): called after every step (tests stop runs with it). The result holds `nonfinite_weights` too.
    After SIGTERM (rarts.runs.stop_requested) a step but the last is checkpointed and raises Terminated.
    """
    from tqdm import tqdm

    model.train()
    device = next(model.parameters()).device
    total_loss = torch.zeros((), device=device, dtype=torch.float64)
    total_correct = torch.zeros((), device=device, dtype=torch.int64)
    seen = 0
    if partial:
        total_loss += partial["loss"]
        total_correct += int(partial["correct"])
        seen = int(partial["seen"])
    # disable=None: tqdm shows the bar only on a terminal, so logs of background runs stay clean.
    hide = None if cfg.progress and is_main_process() else True
    bar = tqdm(loader, total=len(loader), initial=start_step, desc=desc, leave=False, disable=hide)
    for step, (x, y) in enumerate(bar, start=start_step + 1):
        with autocast(device, amp_dtype):
            logits, logits_aux = model(x)
            loss = training_loss(criterion, logits, logits_aux, y, cfg.auxiliary_weight)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        n = y.shape[0]
        seen += n
        total_loss += loss.detach().double() * n
        total_correct += (logits.detach().argmax(dim=1) == y).sum()
        if step % 20 == 1 and not bar.disable:  # .item() is a device sync: only now and then
            bar.set_postfix(loss=f"{loss.item():.3f}")
        within = checkpoint is not None and step < len(loader)
        due = within and cfg.checkpoint_every and step % cfg.checkpoint_every == 0
        if due:
            checkpoint(step, _sums(total_loss, total_correct, seen, model, optimizer))
        if on_step is not None:
            on_step(step)
        if within and stop_requested():
            if not due:
                checkpoint(step, _sums(total_loss, total_correct, seen, model, optimizer))
            raise Terminated(f"at step {step}/{len(loader)} of {desc}")
    bar.close()
    nonfinite = _nonfinite(model, optimizer)
    total_loss, correct, seen, nonfinite = _sum_over_processes(total_loss, total_correct, seen, nonfinite)
    return {
        "train_loss": total_loss / max(seen, 1),
        "train_top1": 100.0 * correct / max(seen, 1),
        "nonfinite_weights": int(nonfinite),
    }


def _nonfinite(model: nn.Module, optimizer: torch.optim.Optimizer) -> torch.Tensor:
    """What a checkpoint would save of inf or nan: weights, batch-norm statistics, momentum."""
    return count_nonfinite(model, states=[optimizer.state_dict()["state"]])


def _sums(total_loss: torch.Tensor, total_correct: torch.Tensor, seen: int, model: nn.Module, optimizer) -> dict:
    """The epoch's sums so far over all processes, and the count of weights gone inf or nan, as checkpoint takes."""
    sums = _sum_over_processes(total_loss, total_correct, seen, _nonfinite(model, optimizer))
    return {"loss": sums[0], "correct": sums[1], "seen": sums[2], "nonfinite_weights": sums[3]}


def _sum_over_processes(*values: torch.Tensor | int) -> list[float]:
    """The values (tensors or numbers) summed over all processes of a distributed run, as floats; one sync."""
    from rarts.distributed import all_reduce_sum

    device = next(v for v in values if isinstance(v, torch.Tensor)).device
    stacked = torch.stack([torch.as_tensor(v, device=device).double() for v in values])
    return all_reduce_sum(stacked).tolist()
