"""Datasets, the search split and device-side augmentation.

    from rarts.data import load_dataset, search_split, DeviceLoader

    train = load_dataset("cifar10-mini", None, "train")          # ImageSet: (N, 3, 32, 32) uint8, (N,) int64
    w_idx, a_idx = search_split(train.labels, train_portion=0.5, seed=0)
    w_loader = DeviceLoader.from_image_set(train, 64, device, indices=w_idx, seed=0)
    a_loader = DeviceLoader.from_image_set(train, 64, device, indices=a_idx, seed=1)
    x, y = w_loader.next_batch()                                   # (64, 3, 32, 32) float32, (64,) int64

Datasets (`DATASETS`): cifar10, cifar100 (python batches in --data-dir), cifar10-mini (bundled, no download),
folder and imagenet (class folders under --data-dir/train and --data-dir/val, streamed through worker processes
by `StreamLoader`; `ImageFolder.load_all(size)` turns a small folder into an in-memory ImageSet).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rarts.data.cifar import load_cifar10, load_cifar10_mini, load_cifar100, mini_path
from rarts.data.download import ARCHIVES, download
from rarts.data.folder import EvalTransform, ImageFolder, StreamLoader, TrainTransform, load_folder
from rarts.data.imageset import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_MEAN,
    CIFAR100_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageSet,
)
from rarts.data.loader import DeviceLoader, crop_and_flip, cutout_mask
from rarts.data.split import balanced_subset, search_split
from rarts.errors import UsageError

__all__ = [
    "ARCHIVES",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "DATASETS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "DatasetInfo",
    "DeviceLoader",
    "EvalTransform",
    "ImageFolder",
    "ImageSet",
    "StreamLoader",
    "TrainTransform",
    "balanced_subset",
    "crop_and_flip",
    "cutout_mask",
    "download",
    "input_size",
    "load_dataset",
    "mini_path",
    "num_classes",
    "search_split",
]

SPLITS = ("train", "test")


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset name stands for. num_classes is None where the data decide it (folder)."""

    num_classes: int | None
    input_size: int
    streamed: bool  # True: load_dataset returns an ImageFolder for StreamLoader; False: an in-memory ImageSet
    needs_data_dir: bool


DATASETS = {
    "cifar10": DatasetInfo(10, 32, streamed=False, needs_data_dir=True),
    "cifar100": DatasetInfo(100, 32, streamed=False, needs_data_dir=True),
    "cifar10-mini": DatasetInfo(10, 32, streamed=False, needs_data_dir=False),
    "folder": DatasetInfo(None, 224, streamed=True, needs_data_dir=True),
    "imagenet": DatasetInfo(1000, 224, streamed=True, needs_data_dir=True),
}


def _info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise UsageError(f"unknown dataset {name!r}: choose from {', '.join(DATASETS)}")
    return DATASETS[name]


def load_dataset(name: str, data_dir: str | Path | None = None, split: str = "train") -> ImageSet | ImageFolder:
    """One split ('train' or 'test') of a dataset.

    cifar10, cifar100: `data_dir` is the batches folder (cifar-10-batches-py/, cifar-100-python/) or its
        parent; returns an ImageSet (train 50,000 images, test 10,000; (N, 3, 32, 32) uint8).
    cifar10-mini: the bundled subset (train 3,500, test 1,000); `data_dir` is not used.
    folder, imagenet: `data_dir` holds train/ and val/ ('test' reads val/); returns an ImageFolder with the
        ImageNet recipe's transforms for that split, for StreamLoader.
    """
    info = _info(name)
    if split not in SPLITS:
        raise UsageError(f"unknown split {split!r}: choose train or test")
    if name == "cifar10":
        return load_cifar10(data_dir, split)
    if name == "cifar100":
        return load_cifar100(data_dir, split)
    if name == "cifar10-mini":
        return load_cifar10_mini(split)
    data = load_folder(name, data_dir, split)
    if info.num_classes is not None and len(data.classes) != info.num_classes:
        raise UsageError(f"{data.root} has {len(data.classes)} class folders, {name} has {info.num_classes}")
    return data


def num_classes(name: str, data_dir: str | Path | None = None) -> int:
    """Number of classes of dataset `name`; for 'folder', the class folders under data_dir/train."""
    info = _info(name)
    if info.num_classes is not None:
        return info.num_classes
    return len(load_folder(name, data_dir, "train").classes)


def input_size(name: str) -> int:
    """Side length of the network's input images: 32 for the CIFAR sets, 224 for image folders."""
    return _info(name).input_size
