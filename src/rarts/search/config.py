"""The settings of `rarts search`: one dataclass, presets in src/rarts/configs/search_{quick,paper}.yaml."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

from rarts.config import build_config, load_preset
from rarts.errors import UsageError
from rarts.runs.resume import free
from rarts.search.base import MethodSettings


@dataclass
class SearchConfig:
    """Everything a search run depends on. Defaults are the DARTS CIFAR-10 search settings (the paper preset).
    Settings declared `free(...)` may change when the run is resumed (rarts.runs.resume)."""

    method: str = "rarts"  # darts1, darts2, milenas, rarts, random
    dataset: str = "cifar10"  # cifar10, cifar100, cifar10-mini (in memory); folder, imagenet (loaded whole)
    data_dir: Optional[str] = free(None)
    subset: Optional[int] = None  # use this many training images (class-balanced); None: all of them
    train_portion: float = 0.5  # share of the (sub)set that trains w; the rest is the validation half
    image_size: Optional[int] = None  # resize (area) to this side; None: the dataset's own size
    batch_size: int = 64
    channels: int = 16
    layers: int = 8
    # the update rules' hyperparameters (epochs, learning rates, lam, beta, ...), set by their own names: lam=0.5
    method_settings: MethodSettings = field(default_factory=MethodSettings)
    # the run
    seed: int = 0
    device: str = free("auto")
    threads: Optional[int] = free(None)  # CPU threads for torch; None keeps torch's default (one per core)
    channels_last: bool = False  # NHWC activations and weights (faster convolutions on some CPUs)
    # rarts and milenas on the CPU with 2+ threads: run their independent passes two at once, each on half the
    # threads (rarts.fast.paired); faster, but both passes' graphs are held at once. Other methods, GPUs: no effect.
    paired_passes: bool = free(True)
    log_every: int = free(20)  # steps between host syncs: progress bar, non-finite check
    checkpoint_every: int = free(0)  # steps between extra checkpoints within an epoch; 0: at epoch ends only
    progress: bool = free(True)  # tqdm progress bar on a terminal
    tensorboard: bool = free(True)  # TensorBoard scalars, when tensorboard is installed
    plots: bool = free(True)  # at the end: the alpha heatmap and the cell diagrams
    # latency-aware search (rarts.latency): latency_weight x the expected latency in ms joins every alpha objective
    latency_table: Optional[str] = None  # a table from `rarts latency measure` covering the search network
    latency_weight: float = 0.0

    def validate(self) -> None:
        from rarts.data import DATASETS
        from rarts.search import METHODS

        if self.method not in METHODS:
            raise UsageError(f"unknown method {self.method!r}; known: {', '.join(sorted(METHODS))}")
        if self.dataset not in DATASETS:
            raise UsageError(f"unknown dataset {self.dataset!r}; known: {', '.join(DATASETS)}")
        for name in ("batch_size", "channels", "layers", "log_every"):
            if getattr(self, name) < 1:
                raise UsageError(f"setting {name}: must be at least 1, got {getattr(self, name)}")
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"setting threads: must be at least 1, got {self.threads}")
        if self.checkpoint_every < 0:
            raise UsageError(f"setting checkpoint_every: must not be negative, got {self.checkpoint_every}")
        if self.subset is not None and self.subset < 2:
            raise UsageError(f"setting subset: must be at least 2 images, got {self.subset}")
        if self.image_size is not None and self.image_size < 4:
            raise UsageError(f"setting image_size: must be at least 4, got {self.image_size}")
        if not 0.0 < self.train_portion < 1.0:
            raise UsageError(f"setting train_portion: must lie strictly between 0 and 1, got {self.train_portion}")
        if not 0 <= self.latency_weight < math.inf:  # (nan fails too)
            raise UsageError(f"setting latency_weight: must be a finite number >= 0, got {self.latency_weight}")
        if self.latency_weight > 0 and not self.latency_table:
            raise UsageError("setting latency_weight needs latency_table, a table from `rarts latency measure`")

    @property
    def epochs(self) -> int:
        """Search epochs (the length of the method's cosine schedules)."""
        return self.method_settings.epochs


def make_config(preset: str | None, overrides: dict[str, Any] | None = None, flags: dict[str, Any] | None = None):
    """The config of a new run: preset (default paper), then key=value overrides, then command-line flags."""
    return build_config(SearchConfig, load_preset("search", preset or "paper"), overrides or {}, flags or {})
