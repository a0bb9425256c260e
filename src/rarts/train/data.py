"""The loaders of a training run: CIFAR-sized sets whole on the device, image folders streamed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from rarts.errors import UsageError
from rarts.train.config import TrainConfig


@dataclass
class Data:
    """The loaders of one run and what the network needs to know about the images."""

    train: Any  # DeviceLoader or StreamLoader: iterable per epoch, len(), state_dict(), load_state_dict()
    test: Any
    num_classes: int
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...]


def make_data(
    cfg: TrainConfig,
    device: torch.device,
    channels_last: bool,
    sets: tuple[Any, Any] | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> Data:
    """Loaders for cfg.dataset. CIFAR-sized sets live whole on the device (DeviceLoader: crop, flip, cutout done
    there); image folders stream through worker processes (StreamLoader). `sets` = (train, test) ImageSets
    replaces loading (tests use small synthetic sets). rank, world_size: this process's shard of every batch
    (batch sizes are per process)."""
    from rarts.data import DATASETS, DeviceLoader, StreamLoader, load_dataset

    if sets is not None:
        train_set, test_set = sets
    else:
        train_set = load_dataset(cfg.dataset, cfg.data_dir, "train")
        test_set = load_dataset(cfg.dataset, cfg.data_dir, "test")
    if len(train_set) < cfg.batch_size * world_size:
        raise UsageError(
            f"{cfg.dataset} has {len(train_set)} training images, fewer than batch_size={cfg.batch_size}"
            + (f" x {world_size} processes" if world_size > 1 else "")
        )
    if DATASETS[cfg.dataset].streamed and sets is None:
        common = dict(workers=cfg.workers, seed=cfg.seed, channels_last=channels_last, rank=rank, world_size=world_size)
        train = StreamLoader(train_set, cfg.batch_size, device, train=True, drop_last=True, **common)
        test = StreamLoader(test_set, cfg.eval_batch_size, device, train=False, **common)
        size = DATASETS[cfg.dataset].input_size
        mean, std = train_set.mean, train_set.std
    else:
        train = DeviceLoader.from_image_set(
            train_set,
            cfg.batch_size,
            device,
            train=True,
            cutout=cfg.cutout,
            seed=cfg.seed,
            drop_last=True,
            channels_last=channels_last,
            rank=rank,
            world_size=world_size,
        )
        test = DeviceLoader.from_image_set(
            test_set,
            cfg.eval_batch_size,
            device,
            train=False,
            channels_last=channels_last,
            rank=rank,
            world_size=world_size,
        )
        size = train_set.image_size
        mean, std = train_set.mean, train_set.std
    classes = tuple(train_set.classes)
    return Data(train, test, len(classes), size, tuple(mean), tuple(std), classes)
