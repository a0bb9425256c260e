"""An image set held whole in memory: uint8 images, int64 labels, class names and normalisation constants."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

# Normalisation constants on the [0, 1] scale. The CIFAR-10 values are the ones DARTS uses; CIFAR-100's are the
# usual published training-set statistics; ImageNet's are the standard ones, also used for custom image folders.
CIFAR10_MEAN = (0.49139968, 0.48215827, 0.44653124)
CIFAR10_STD = (0.24703233, 0.24348505, 0.26158768)
CIFAR100_MEAN = (0.50707516, 0.48654887, 0.44091784)
CIFAR100_STD = (0.26733429, 0.25643846, 0.27615047)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ImageSet:
    """One split of a dataset, whole in memory.

    images: (N, 3, H, W) uint8, NCHW, RGB.
    labels: (N,) int64 in [0, len(classes)).
    mean, std: per-channel normalisation constants on the [0, 1] scale (not measured on this split;
        `channel_stats()` measures).
    source: where the pixels came from (a folder, or "bundled: <file>").
    """

    name: str
    split: str
    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    source: str

    def __len__(self) -> int:
        return int(self.labels.numel())

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> int:
        """Side length H of the (square) images."""
        return int(self.images.shape[-1])

    def subset(self, indices: torch.Tensor | Sequence[int]) -> ImageSet:
        """The images at `indices` (a copy), same classes and constants."""
        idx = torch.as_tensor(indices, dtype=torch.int64)
        return replace(self, images=self.images[idx], labels=self.labels[idx])

    def class_counts(self) -> list[int]:
        """Number of images of each class, in class order."""
        return torch.bincount(self.labels, minlength=self.num_classes).tolist()

    def channel_stats(self, chunk: int = 5000) -> tuple[list[float], list[float]]:
        """Measured per-channel mean and std of the pixels on the [0, 1] scale (population std).

        Accumulates integer sums chunk by chunk, so 50,000 CIFAR images never become one float tensor.
        """
        n_channels = self.images.shape[1]
        total = torch.zeros(n_channels, dtype=torch.float64)
        total_sq = torch.zeros(n_channels, dtype=torch.float64)
        for start in range(0, len(self), chunk):
            x = self.images[start : start + chunk].to(torch.int64)
            total += x.sum(dim=(0, 2, 3)).double()
            total_sq += (x * x).sum(dim=(0, 2, 3)).double()
        count = max(1, len(self) * self.images.shape[2] * self.images.shape[3])
        mean = total / count
        var = (total_sq / count - mean * mean).clamp_min(0)
        return (mean / 255).tolist(), (var.sqrt() / 255).tolist()
