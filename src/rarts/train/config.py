"""The settings of `rarts train`: one dataclass, presets in src/rarts/configs/train_{quick,paper,imagenet}.yaml."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

from rarts.config import build_config, load_preset
from rarts.errors import UsageError
from rarts.runs.resume import free


@dataclass
class TrainConfig:
    """Everything a training run depends on; presets in src/rarts/configs/train_*.yaml. Settings declared
    `free(...)` may change when the run is resumed (rarts.runs.resume)."""

    # a known name, a JSON file, a DARTS string or a search run folder; on a resume the cells it names are checked
    # against the checkpoint's (the folder may have moved since)
    genotype: str = free("")
    dataset: str = "cifar10"
    data_dir: Optional[str] = free(None)
    epochs: int = 600
    batch_size: int = 96
    eval_batch_size: int = free(256)
    lr: float = 0.025
    lr_schedule: str = "cosine"  # cosine: lr to lr_min over the epochs; step: lr * lr_gamma ** epoch
    lr_min: float = 0.0
    lr_gamma: float = 0.97
    momentum: float = 0.9
    weight_decay: float = 3e-4
    label_smoothing: float = 0.0
    channels: int = field(default=36, metadata={"old_names": ("init_channels",)})  # of the first cell
    layers: int = 20
    auxiliary: bool = True
    auxiliary_weight: float = 0.4
    drop_path_prob: float = 0.2  # reached at the last epoch: epoch e uses drop_path_prob * e / epochs
    cutout: int = 16  # side of the cutout square (CIFAR-sized data only); 0 is off
    grad_clip: float = 5.0  # max gradient norm; 0 is off
    seed: int = 0
    device: str = free("auto")
    # Off by default: on an H200 both make this network train slower (benchmarks/train_speed.py, docs/performance.md).
    amp: str = "off"  # off, bf16, fp16 (with a GradScaler), auto (CUDA: bf16 where supported, else fp16; CPU: off)
    channels_last: str = "off"  # off, on, auto (on with CUDA, off on CPU)
    workers: Optional[int] = free(None)  # decoding processes for image folders; None: the cores available
    threads: int = free(0)  # torch CPU threads; 0 keeps torch's default (one per core)
    checkpoint_every: int = free(0)  # steps between extra checkpoints within an epoch (counted from its start); 0: none
    progress: bool = free(True)
    tensorboard: bool = free(True)

    @property
    def builds_auxiliary(self) -> bool:
        """Whether the network gets its auxiliary head: only when its loss counts (auxiliary_weight > 0). A head
        that no loss reaches would be dead weight, and DistributedDataParallel refuses parameters without a
        gradient."""
        return self.auxiliary and self.auxiliary_weight > 0

    def validate(self) -> None:
        from rarts.data import DATASETS

        if not self.genotype:
            raise UsageError("no genotype: pass --genotype (a known name, a JSON file, a DARTS string or a run folder)")
        if self.dataset not in DATASETS:
            raise UsageError(f"unknown dataset {self.dataset!r}: choose from {', '.join(DATASETS)}")
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "eval_batch_size": self.eval_batch_size}
        positive.update(channels=self.channels, layers=self.layers)
        for name, value in positive.items():
            if value < 1:
                raise UsageError(f"setting {name}={value}: must be at least 1")
        if self.layers < 3:
            raise UsageError(f"setting layers={self.layers}: needs at least 3 cells (two of them reduction cells)")
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise UsageError(f"setting lr={self.lr}: must be a positive number")
        if self.lr_schedule not in ("cosine", "step"):
            raise UsageError(f"setting lr_schedule={self.lr_schedule!r}: choose cosine or step")
        if not 0 <= self.lr_min <= self.lr:
            raise UsageError(f"setting lr_min={self.lr_min}: must lie in [0, lr]")
        if not 0 < self.lr_gamma <= 1:
            raise UsageError(f"setting lr_gamma={self.lr_gamma}: must lie in (0, 1]")
        for name in ("momentum", "drop_path_prob", "label_smoothing"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise UsageError(f"setting {name}={value}: must lie in [0, 1)")
        for name in ("weight_decay", "auxiliary_weight", "grad_clip"):
            value = getattr(self, name)
            if not value >= 0 or not math.isfinite(value):
                raise UsageError(f"setting {name}={value}: must be a number >= 0")
        if self.cutout < 0:
            raise UsageError(f"setting cutout={self.cutout}: must be >= 0")
        for name in ("workers", "threads", "checkpoint_every"):
            if (getattr(self, name) or 0) < 0:
                raise UsageError(f"setting {name}={getattr(self, name)}: must be >= 0")
        if self.amp not in ("auto", "off", "bf16", "fp16"):
            raise UsageError(f"setting amp={self.amp!r}: choose auto, off, bf16 or fp16")
        if self.channels_last not in ("auto", "on", "off"):
            raise UsageError(f"setting channels_last={self.channels_last!r}: choose auto, on or off")


def preset_for(name: str, dataset: str | None) -> dict[str, Any]:
    """The preset dict: `paper` means the CIFAR recipe (train_paper.yaml), or the ImageNet recipe
    (train_imagenet.yaml) when the dataset is one of 224-pixel images (imagenet, folder)."""
    if name == "paper" and dataset in ("imagenet", "folder"):
        name = "imagenet"
    return load_preset("train", name)


def make_config(
    preset: str | None = "paper", overrides: dict[str, Any] | None = None, flags: dict[str, Any] | None = None
) -> TrainConfig:
    """TrainConfig from a preset, then key=value overrides, then command-line flags (unset flags are None)."""
    flags = flags or {}
    overrides = overrides or {}
    dataset = flags.get("dataset") or overrides.get("dataset")
    return build_config(TrainConfig, preset_for(preset or "paper", dataset), overrides, flags)
