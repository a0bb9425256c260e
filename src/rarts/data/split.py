"""The search split: the training set cut into two disjoint seeded halves, one for w and one for alpha (and y).

The test set is never part of it: a search never sees test images.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from rarts.errors import UsageError


def _labels_or_n(labels_or_n: int | torch.Tensor | np.ndarray | Sequence[int]) -> tuple[int, torch.Tensor | None]:
    if isinstance(labels_or_n, (int, np.integer)):
        return int(labels_or_n), None
    if isinstance(labels_or_n, torch.Tensor):
        labels = labels_or_n.detach().to("cpu", torch.int64).reshape(-1)
    else:
        labels = torch.as_tensor(np.asarray(labels_or_n), dtype=torch.int64).reshape(-1)
    return labels.numel(), labels


def balanced_subset(labels: torch.Tensor | np.ndarray | Sequence[int], n: int, seed: int = 0) -> torch.Tensor:
    """Sorted indices of `n` images drawn at random (seeded), as evenly as possible over the classes.

    Each class gets n // C images and the first n % C classes one more. Returns an int64 tensor of shape (n,).
    """
    _, y = _labels_or_n(labels)
    counts = torch.bincount(y)
    classes = int((counts > 0).sum())
    if n < 1 or n > y.numel():
        raise UsageError(f"setting subset={n}: choose between 1 and {y.numel()} (the number of training images)")
    want = torch.full((counts.numel(),), n // max(classes, 1), dtype=torch.int64)
    present = torch.nonzero(counts > 0).flatten()
    want[counts == 0] = 0
    want[present[: n % classes]] += 1
    g = torch.Generator().manual_seed(seed)
    picked = []
    for c in present.tolist():
        members = torch.nonzero(y == c).flatten()
        if want[c] > members.numel():
            raise UsageError(f"setting subset={n}: class {c} has only {members.numel()} images, {int(want[c])} needed")
        picked.append(members[torch.randperm(members.numel(), generator=g)[: want[c]]])
    return torch.cat(picked).sort().values


def search_split(
    labels_or_n: int | torch.Tensor | np.ndarray | Sequence[int],
    train_portion: float = 0.5,
    seed: int = 0,
    subset: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split the training set into (train_idx, val_idx): disjoint, covering, seeded, sorted int64 tensors.

    labels_or_n: the (N,) training labels, or just N. With labels, the halves are stratified (each class is
        split in the same proportion) and `subset` is class-balanced; with N they are plain random.
    train_portion: share of the (sub)set that goes to train_idx: floor(train_portion * n) images.
    subset: use only this many images (N for quick experiments); None uses them all.
    """
    n, labels = _labels_or_n(labels_or_n)
    if not 0.0 < train_portion < 1.0:
        raise UsageError(f"train_portion {train_portion} must lie strictly between 0 and 1")
    g = torch.Generator().manual_seed(seed)
    if subset is not None:
        if labels is not None:
            pool = balanced_subset(labels, subset, seed)
        elif 1 <= subset <= n:
            pool = torch.randperm(n, generator=g)[:subset].sort().values
        else:
            raise UsageError(f"setting subset={subset}: choose between 1 and {n} (the number of training images)")
    else:
        pool = torch.arange(n)
    m = pool.numel()
    n_train = int(np.floor(train_portion * m))
    if n_train < 1 or n_train >= m:
        raise UsageError(f"train_portion {train_portion} of {m} images leaves one half empty")
    if labels is None:
        order = pool[torch.randperm(m, generator=g)]
        return order[:n_train].sort().values, order[n_train:].sort().values
    # Stratified: each class gives floor(p * count) images to the train half, and the remaining
    # n_train - sum(floor) go to the classes with the largest fractional parts, so the total is exact.
    y = labels[pool]
    counts = torch.bincount(y).double()
    share = train_portion * counts
    take = share.floor().long()
    extra = n_train - int(take.sum())
    if extra > 0:
        take[torch.argsort(share - share.floor(), descending=True, stable=True)[:extra]] += 1
    train_parts, val_parts = [], []
    for c in torch.nonzero(counts > 0).flatten().tolist():
        members = pool[y == c]
        members = members[torch.randperm(members.numel(), generator=g)]
        train_parts.append(members[: take[c]])
        val_parts.append(members[take[c] :])
    return torch.cat(train_parts).sort().values, torch.cat(val_parts).sort().values
