"""The search's data: the training set split into its two seeded halves, as device loaders.

    data = prepare_data(cfg, device)      # data.train (w's half), data.val (alpha's and y's), data.val_eval

A search never touches the test set: as in DARTS, alpha is chosen on the validation half, the training images
that a seeded random split (cfg.train_portion of them for w) leaves out of w's half.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from rarts.errors import UsageError
from rarts.search.config import SearchConfig


@dataclass
class SearchData:
    """The two halves of the training set as device loaders, and the validation half for evaluation."""

    train: Any  # DeviceLoader over the w half: shuffled, augmented
    val: Any  # DeviceLoader over the alpha (and y) half: shuffled, augmented
    val_eval: Any  # DeviceLoader over the alpha half: in order, no augmentation
    num_classes: int
    image_size: int


def resize_images(images: torch.Tensor, size: int, chunk: int = 5000) -> torch.Tensor:
    """uint8 images (N, C, H, W) resized to (N, C, size, size): area averaging down, bilinear up; uint8 out."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    mode = "area" if size < images.shape[-1] else "bilinear"
    out = torch.empty(images.shape[0], images.shape[1], size, size, dtype=torch.uint8)
    for start in range(0, images.shape[0], chunk):
        x = F.interpolate(images[start : start + chunk].float(), size=(size, size), mode=mode)
        out[start : start + chunk] = x.round_().clamp_(0, 255).to(torch.uint8)
    return out


def prepare_data(cfg: SearchConfig, device: torch.device, rank: int = 0, world_size: int = 1) -> SearchData:
    """Load the training set, split it into the two seeded halves and build the loaders (checks batch size).
    rank, world_size: the loaders yield this process's shard of every global batch (batch_size per process)."""
    from rarts.data import DATASETS, DeviceLoader, load_dataset, search_split

    if cfg.dataset == "imagenet":
        raise UsageError("search on imagenet is not supported: search on CIFAR and transfer, or use a small folder")
    data = load_dataset(cfg.dataset, cfg.data_dir, "train")
    if DATASETS[cfg.dataset].streamed:
        data = data.load_all(cfg.image_size or 32)
    size = cfg.image_size or data.image_size
    train_idx, val_idx = search_split(data.labels, cfg.train_portion, seed=cfg.seed, subset=cfg.subset)
    for name, idx in (("training", train_idx), ("validation", val_idx)):
        if cfg.batch_size * world_size > idx.numel():
            processes = f" x {world_size} processes" if world_size > 1 else ""
            raise UsageError(
                f"setting batch_size={cfg.batch_size}{processes} is larger than the {name} half ({idx.numel()} images)"
            )
    images = resize_images(data.images, size)
    pad = max(1, round(4 * size / 32))  # DARTS pads 32x32 images by 4 before the random crop
    common = {"mean": data.mean, "std": data.std, "channels_last": cfg.channels_last, "crop_padding": pad}
    common.update(rank=rank, world_size=world_size)

    def loader(idx: torch.Tensor, seed: int, train: bool):
        return DeviceLoader(images[idx], data.labels[idx], cfg.batch_size, device, train=train, seed=seed, **common)

    return SearchData(
        train=loader(train_idx, cfg.seed, True),
        val=loader(val_idx, cfg.seed + 1, True),
        val_eval=loader(val_idx, 0, False),
        num_classes=data.num_classes,
        image_size=size,
    )
