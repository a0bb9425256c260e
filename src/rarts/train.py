"""Training a found cell from scratch, and evaluating the trained network.

The recipe is DARTS' final training: SGD with momentum, a learning rate that follows a cosine from `lr` to
`lr_min` (CIFAR) or decays by `lr_gamma` per epoch (ImageNet), an auxiliary classifier at 2/3 depth whose loss
is added with weight `auxiliary_weight`, drop-path whose probability ramps linearly from 0 over the epochs,
cutout, gradient-norm clipping and, for ImageNet, label smoothing. The scheduler steps once after each
epoch, so epoch 0 trains at `lr` and epoch E-1 at the schedule's value for E-1.

A run folder holds config.json, environment.json, genotype.json, metrics.jsonl / metrics.csv (one row per
epoch), checkpoint.pt (after every epoch, and every `checkpoint_every` steps within one) and, when the last epoch
is done, result.json. The checkpoint is a plain dict (model, optimiser, scheduler, scaler, RNG and data-loader
states, epoch, genotype and config as plain data; within an epoch also the step and the epoch's running sums)
that loads with torch.load(weights_only=True); resuming from it on the CPU with the same seed ends with the same
weights as a run that never stopped.

Under torchrun (WORLD_SIZE > 1, see rarts.distributed) the network is wrapped in DistributedDataParallel,
each process trains on its shard of every global batch (batch_size per process), the epoch's training and test
figures are summed over the processes, and only rank 0 writes the run folder; every rank reads the checkpoint
on resume.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import nn

from rarts.config import build_config, config_to_dict, load_preset
from rarts.errors import RunFailed, UsageError
from rarts.fast import use_fast_paths
from rarts.genotype import Genotype, load_genotype
from rarts.network import build_network, count_params
from rarts.utils import (
    atomic_torch_save,
    check_out_folder,
    count_nonfinite,
    device_name,
    environment_info,
    is_out_of_memory,
    load_checkpoint_file,
    pick_device,
    read_json,
    seed_everything,
    write_environment,
    write_json,
)

CHECKPOINT_FORMAT = "rarts-train-checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"

# Settings that may change when a run is resumed: where the data lie and how the run reports, not what it computes.
RESUME_FREE_KEYS = (
    "data_dir",
    "device",
    "workers",
    "threads",
    "progress",
    "tensorboard",
    "eval_batch_size",
    "checkpoint_every",
)


@dataclass
class TrainConfig:
    """Everything a training run depends on; presets in src/rarts/configs/train_*.yaml."""

    genotype: str = ""  # a known name, a JSON file, a DARTS string or a search run folder
    dataset: str = "cifar10"
    data_dir: Optional[str] = None
    epochs: int = 600
    batch_size: int = 96
    eval_batch_size: int = 256
    lr: float = 0.025
    lr_schedule: str = "cosine"  # cosine: lr to lr_min over the epochs; step: lr * lr_gamma ** epoch
    lr_min: float = 0.0
    lr_gamma: float = 0.97
    momentum: float = 0.9
    weight_decay: float = 3e-4
    label_smoothing: float = 0.0
    init_channels: int = 36
    layers: int = 20
    auxiliary: bool = True
    auxiliary_weight: float = 0.4
    drop_path_prob: float = 0.2  # reached at the last epoch: epoch e uses drop_path_prob * e / epochs
    cutout: int = 16  # side of the cutout square (CIFAR-sized data only); 0 is off
    grad_clip: float = 5.0  # max gradient norm; 0 is off
    seed: int = 0
    device: str = "auto"
    # Off by default: on an H200 both made this network train slower (benchmarks/train_speed.py, README).
    amp: str = "off"  # off, bf16, fp16 (with a GradScaler), auto (CUDA: bf16 where supported, else fp16; CPU: off)
    channels_last: str = "off"  # off, on, auto (on with CUDA, off on CPU)
    workers: int = 4  # decoding processes for image folders (folder, imagenet)
    threads: int = 0  # torch CPU threads; 0 keeps torch's default (one per core)
    checkpoint_every: int = 0  # steps between extra checkpoints within an epoch (counted from its start); 0: none
    progress: bool = True
    tensorboard: bool = True

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
        positive.update(init_channels=self.init_channels, layers=self.layers)
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
            if getattr(self, name) < 0:
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


# --- pieces of the recipe ---------------------------------------------------------------------------------------


def resolve_precision(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for setting `amp` on `device`, or None for float32 throughout."""
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def resolve_channels_last(setting: str, device: torch.device) -> bool:
    return setting == "on" or (setting == "auto" and device.type == "cuda")


def precision_name(dtype: torch.dtype | None) -> str:
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def make_criterion(cfg: TrainConfig) -> nn.Module:
    """Cross entropy of the training objective; label smoothing eps mixes the one-hot target with 1/classes."""
    return nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)


def training_loss(
    criterion: nn.Module, logits: torch.Tensor, logits_aux: torch.Tensor | None, target: torch.Tensor, weight: float
) -> torch.Tensor:
    """loss(main head) + weight * loss(auxiliary head); the auxiliary term only where the head ran (training)."""
    loss = criterion(logits, target)
    if logits_aux is not None and weight > 0:
        loss = loss + weight * criterion(logits_aux, target)
    return loss


def drop_path_at(cfg: TrainConfig, epoch: int) -> float:
    """Drop-path probability of epoch `epoch` (0-based): ramps linearly from 0, as DARTS does."""
    return cfg.drop_path_prob * epoch / cfg.epochs


def lr_factor(cfg: TrainConfig, epoch: int) -> float:
    """Learning rate of epoch `epoch` (0-based) divided by cfg.lr."""
    if cfg.lr_schedule == "step":
        return cfg.lr_gamma**epoch
    cosine = 0.5 * (1.0 + math.cos(math.pi * epoch / cfg.epochs))
    return (cfg.lr_min + (cfg.lr - cfg.lr_min) * cosine) / cfg.lr


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def make_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    """Closed-form schedule, stepped once after each epoch (never before the first)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: lr_factor(cfg, epoch))


def network_kind(input_size: int) -> str:
    """'imagenet' (stem of three stride-2 convolutions) for large images (image folders, 224 pixels), else 'cifar'."""
    return "imagenet" if input_size >= 64 else "cifar"


def make_model(
    genotype: Genotype, kind: str, C: int, layers: int, auxiliary: bool, num_classes: int, device: torch.device
) -> nn.Module:
    """The final network on `device` (float32); `kind` is 'cifar' or 'imagenet'."""
    dataset = "imagenet" if kind == "imagenet" else "cifar10"
    return build_network(genotype, dataset, C, layers, auxiliary, num_classes).to(device)


def wrap_model(model: nn.Module, device: torch.device) -> nn.Module:
    """The module the training step calls: the model itself, or in DistributedDataParallel under torchrun."""
    from rarts.distributed import wrap_ddp

    return wrap_ddp(model, device)


def unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)


def is_main_process() -> bool:
    """Only rank 0 writes files and prints."""
    from rarts.distributed import is_main_process as main

    return main()


# --- data -------------------------------------------------------------------------------------------------------


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


# --- one epoch ----------------------------------------------------------------------------------------------------


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
        if checkpoint is not None and cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < len(loader):
            sums = _sum_over_processes(total_loss, total_correct, seen, count_nonfinite(model))
            checkpoint(step, {"loss": sums[0], "correct": sums[1], "seen": sums[2], "nonfinite_weights": sums[3]})
        if on_step is not None:
            on_step(step)
    bar.close()
    total_loss, correct, seen, nonfinite = _sum_over_processes(total_loss, total_correct, seen, count_nonfinite(model))
    return {
        "train_loss": total_loss / max(seen, 1),
        "train_top1": 100.0 * correct / max(seen, 1),
        "nonfinite_weights": int(nonfinite),
    }


def _sum_over_processes(*values: torch.Tensor | int) -> list[float]:
    """The values (tensors or numbers) summed over all processes of a distributed run, as floats; one sync."""
    from rarts.distributed import all_reduce_sum

    device = next(v for v in values if isinstance(v, torch.Tensor)).device
    stacked = torch.stack([torch.as_tensor(v, device=device).double() for v in values])
    return all_reduce_sum(stacked).tolist()


@torch.no_grad()
def evaluate(model: nn.Module, loader: Any, amp_dtype: torch.dtype | None = None) -> dict[str, float]:
    """Test loss (plain cross entropy, main head only) and top-1 / top-5 accuracy (%) over `loader`."""
    model.eval()
    device = next(model.parameters()).device
    total_loss = torch.zeros((), device=device, dtype=torch.float64)
    correct1 = torch.zeros((), device=device, dtype=torch.int64)
    correct5 = torch.zeros((), device=device, dtype=torch.int64)
    seen = 0
    for x, y in loader:
        with autocast(device, amp_dtype):
            logits, _ = model(x)
        logits = logits.float()
        total_loss += nn.functional.cross_entropy(logits, y, reduction="sum").double()
        c1, c5 = _correct_topk(logits, y, (1, 5))
        correct1 += c1
        correct5 += c5
        seen += y.shape[0]
    total_loss, correct1, correct5, seen = _sum_over_processes(total_loss, correct1, correct5, seen)
    if seen == 0:
        raise UsageError("the test set is empty")
    return {
        "test_loss": total_loss / seen,
        "test_top1": 100.0 * correct1 / seen,
        "test_top5": 100.0 * correct5 / seen,
        "test_images": int(seen),
    }


# --- checkpoints --------------------------------------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """Python, numpy, torch (and CUDA) generator states as plain data that loads with weights_only=True."""
    py_version, py_state, py_gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [np_kind, torch.from_numpy(np_keys.astype(np.int64)), np_pos, np_has_gauss, np_gauss],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        # The current GPU's alone, for a resume that sees another number of GPUs (one per process, say).
        "cuda_current": torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
    }
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py_version, py_state, py_gauss = state["python"]
    random.setstate((py_version, tuple(py_state), py_gauss))
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_kind, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    elif state.get("cuda_current") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda_current"])


def network_spec(cfg: TrainConfig, data: Data, kind: str) -> dict[str, Any]:
    """What rebuilding the network needs, stored in every checkpoint."""
    return {
        "kind": kind,
        "dataset": cfg.dataset,
        "C": cfg.init_channels,
        "layers": cfg.layers,
        "auxiliary": cfg.builds_auxiliary,
        "num_classes": data.num_classes,
        "input_size": data.input_size,
        "mean": list(data.mean),
        "std": list(data.std),
        "classes": list(data.classes),
    }


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A training checkpoint, loaded with weights_only=True; anything else is a one-line UsageError."""
    return load_checkpoint_file(path, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, "train")


def model_from_checkpoint(ckpt: dict[str, Any], device: torch.device, source: str = "checkpoint") -> nn.Module:
    """The network a checkpoint describes (genotype, kind, C, layers, classes) with its trained weights."""
    genotype = Genotype.from_dict(ckpt["genotype"], source=source)
    spec = ckpt["network"]
    model = make_model(
        genotype, spec["kind"], spec["C"], spec["layers"], spec["auxiliary"], spec["num_classes"], device
    )
    load_model_state(model, ckpt["model"], source)
    return model


def load_model_state(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = next((line.strip() for line in str(e).splitlines()[1:] if line.strip()), str(e))
        raise UsageError(f"{source} holds weights of another architecture ({first[:160]})") from e


# --- the run ------------------------------------------------------------------------------------------------------


def _check_resumable(cfg: TrainConfig, saved: dict[str, Any], genotype: Genotype, ckpt: dict[str, Any], path: Path):
    saved_genotype = Genotype.from_dict(ckpt["genotype"], source=str(path))
    if saved_genotype != genotype:
        raise UsageError(f"{path} is a checkpoint of another architecture: its genotype differs from {cfg.genotype!r}")
    current = config_to_dict(cfg)
    for key, value in saved.items():
        if key in RESUME_FREE_KEYS or key == "genotype" or key not in current:
            continue
        if current[key] != value:
            raise UsageError(
                f"setting {key}={current[key]!r} differs from the checkpoint's {value!r}: resume with the same "
                "settings, or start a new --out"
            )


def resume_config(run_dir: str | Path, overrides: dict[str, Any], flags: dict[str, Any]) -> TrainConfig:
    """The config of the run in `run_dir`, with overrides and flags on top (for `--resume` without --preset)."""
    path = Path(run_dir) / CHECKPOINT_NAME
    if not path.is_file():
        raise UsageError(f"--resume: {run_dir} holds no {CHECKPOINT_NAME} to resume from")
    saved = load_checkpoint(path)["config"]
    return build_config(TrainConfig, saved, overrides, flags)


def train(
    cfg: TrainConfig,
    run_dir: str | Path,
    resume: bool = False,
    stop_after: int | None = None,
    sets: tuple[Any, Any] | None = None,
    log: Callable[[str], None] | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> dict[str, Any] | None:
    """Train cfg.genotype from scratch in `run_dir` (or continue it with resume=True).

    stop_after: end the session after this many epochs in total (the run stays resumable), e.g. for time-limited
        job slots. sets: (train, test) ImageSets instead of loading cfg.dataset. on_step(epoch, step): called
        after every training step (tests stop a run in the middle of an epoch with it).
    Returns the result dict (also written to result.json), or None when stopped before the last epoch.
    Under torchrun (WORLD_SIZE > 1) it joins the process group for the run (rarts.distributed.process_group).
    """
    from rarts.distributed import process_group

    with process_group(cfg.device) as (world, device):
        return _train(cfg, Path(run_dir), world, device, resume, stop_after, sets, log, on_step)


def _checkpoint_name(epoch: int, step: int, steps_per_epoch: int) -> str:
    """The checkpoint written after `epoch` epochs and `step` steps of the next one, as the messages name it."""
    if step:
        return f"the checkpoint at step {step}/{steps_per_epoch} of epoch {epoch + 1}"
    return f"the checkpoint of epoch {epoch}"


def _train(cfg, run_dir: Path, world, device: torch.device, resume: bool, stop_after, sets, log, on_step):
    from tqdm import tqdm

    from rarts.distributed import all_gather_objects, barrier, broadcast_state, rank_seed
    from rarts.flops import count_mult_adds
    from rarts.metrics_log import MetricsLogger

    main = world.is_main
    say = log or (lambda s: tqdm.write(s) if main else None)
    ckpt_path = run_dir / CHECKPOINT_NAME
    check_out_folder(run_dir, "training run", resume)
    ckpt = None
    if resume:
        if not ckpt_path.is_file():
            raise UsageError(f"--resume: {run_dir} holds no {CHECKPOINT_NAME} to resume from")
        ckpt = load_checkpoint(ckpt_path)
        # The cells come from the checkpoint: the genotype given at the start (a search run's folder, say) may
        # have moved since. Another genotype given now must name the same cells.
        genotype = Genotype.from_dict(ckpt["genotype"], source=str(ckpt_path))
        saved_spec = ckpt["config"].get("genotype")
        given = genotype if cfg.genotype == saved_spec else load_genotype(cfg.genotype)
        _check_resumable(cfg, ckpt["config"], given, ckpt, ckpt_path)
        if saved_spec is not None:
            cfg = dataclasses.replace(cfg, genotype=saved_spec)  # keep the run's record as it was
        if ckpt["epoch"] >= cfg.epochs and (run_dir / "result.json").is_file():
            done = read_json(run_dir / "result.json")
            if isinstance(done, dict) and "test_top1_error" in done:
                say(f"{run_dir}: the training has finished already")
                return done
            # A result.json that is not the run's (overwritten, cut short): written again from the checkpoint.
    else:
        genotype = load_genotype(cfg.genotype)

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    amp_dtype = resolve_precision(cfg.amp, device)
    channels_last = resolve_channels_last(cfg.channels_last, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    seed_everything(cfg.seed)
    data = make_data(cfg, device, channels_last, sets, world.rank, world.world_size)
    kind = network_kind(data.input_size)
    net = make_model(genotype, kind, cfg.init_channels, cfg.layers, cfg.builds_auxiliary, data.num_classes, device)
    params = count_params(net)
    mult_adds = count_mult_adds(net, (3, data.input_size, data.input_size))
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    use_fast_paths(net)
    model = wrap_model(net, device)
    optimizer = make_optimizer(cfg, net)
    scheduler = make_scheduler(cfg, optimizer)
    scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None
    criterion = make_criterion(cfg)

    start_epoch, start_step, partial, train_time, last_test = 0, 0, None, 0.0, None
    if ckpt is not None:
        if ckpt["network"]["num_classes"] != data.num_classes:
            raise UsageError(
                f"{ckpt_path}: trained for {ckpt['network']['num_classes']} classes, the data have {data.num_classes}"
            )
        load_model_state(net, ckpt["model"], str(ckpt_path))
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        data.train.load_state_dict(ckpt["loader"])  # refuses another number of processes
        # Each process draws its own drop-path masks, so a checkpoint of several keeps each one's generators.
        rng_ranks = ckpt.get("rng_ranks")
        set_rng_state(rng_ranks[world.rank] if rng_ranks else ckpt["rng"])
        start_epoch, train_time, last_test = ckpt["epoch"], ckpt["train_time_s"], ckpt.get("last_test")
        start_step, partial = ckpt.get("step", 0), ckpt.get("partial")

    logger = None
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "config.json", config_to_dict(cfg))
        write_json(run_dir / "genotype.json", genotype.to_dict())
        env = environment_info(device)
        env.update(precision=precision_name(amp_dtype), channels_last=channels_last, resumed_at_epoch=start_epoch)
        env["world_size"] = world.world_size
        write_environment(run_dir / "environment.json", env, resumed=ckpt is not None)
        logger = MetricsLogger(run_dir, resume_step=start_epoch if resume else None, tensorboard=cfg.tensorboard)
        say(
            f"training {cfg.genotype} on {cfg.dataset} ({kind} network, C={cfg.init_channels}, {cfg.layers} cells): "
            f"{params / 1e6:.3f}M params, {mult_adds / 1e6:.1f}M mult-adds; {device_name(device)}, "
            f"{precision_name(amp_dtype)}{', channels_last' if channels_last else ''}; run folder {run_dir}"
        )

    steps_per_epoch = len(data.train)
    # What a failure leaves behind, as its message says.
    kept = _checkpoint_name(start_epoch, start_step, steps_per_epoch) if ckpt is not None else None

    def write_checkpoint(progress: dict[str, Any]) -> None:
        """Save `progress` (rank 0 writes; every process takes part) and wait until the file is in place."""
        nonlocal kept
        rng_ranks = all_gather_objects(rng_state()) if world.enabled else None
        if main:
            save_checkpoint(
                ckpt_path, cfg, genotype, data, kind, net, optimizer, scheduler, scaler, progress, rng_ranks
            )
        barrier()  # until rank 0 has written the checkpoint: a resume on any process reads the new one
        kept = _checkpoint_name(progress["epoch"], progress.get("step", 0), steps_per_epoch)

    def check_finite(loss: float, nonfinite_weights: float, where: str) -> None:
        """Stop before a checkpoint would save a diverged run (loss, or weights after the last step, not finite)."""
        if math.isfinite(loss) and not nonfinite_weights:
            return
        saved = f"{kept} in {run_dir} stays intact" if kept else "no checkpoint had been written yet"
        what = (
            f"training loss became {loss}"
            if not math.isfinite(loss)
            else f"{int(nonfinite_weights)} weights became inf or nan"
        )
        raise RunFailed(f"{what} {where}; {saved}")

    def mid_epoch_checkpoint(step: int, sums: dict[str, float], *, epoch: int, t0: float, before: float, done: float):
        """The checkpoint after `step` steps of `epoch` (sums: the steps' summed figures over all processes)."""
        sums = dict(sums)
        check_finite(sums["loss"], sums.pop("nonfinite_weights"), f"by step {step} of epoch {epoch + 1}/{cfg.epochs}")
        partial_sums = {**sums, "time_s": before + time.perf_counter() - t0}
        write_checkpoint(
            {"epoch": epoch, "step": step, "partial": partial_sums, "train_time_s": done, "last_test": last_test}
        )

    end_epoch = cfg.epochs if stop_after is None else min(cfg.epochs, stop_after)
    epoch = start_epoch
    try:
        for epoch in range(start_epoch, end_epoch):
            t0 = time.perf_counter()
            first_step = start_step if epoch == start_epoch else 0
            time_before = partial["time_s"] if first_step and partial else 0.0
            lr = optimizer.param_groups[0]["lr"]
            net.drop_path_prob = drop_path_at(cfg, epoch)
            # Drop-path masks differ between processes, and an epoch started again redraws its own (one resumed
            # mid-way goes on with the generator states its checkpoint holds).
            if world.enabled and not first_step:
                torch.manual_seed(rank_seed(cfg.seed, epoch, world.rank))
            checkpoint = functools.partial(
                mid_epoch_checkpoint, epoch=epoch, t0=t0, before=time_before, done=train_time
            )
            stats = train_one_epoch(
                model,
                data.train,
                optimizer,
                criterion,
                cfg,
                amp_dtype,
                scaler,
                desc=f"epoch {epoch + 1}/{cfg.epochs}",
                start_step=first_step,
                partial=partial if first_step and main else None,
                checkpoint=checkpoint,
                on_step=None if on_step is None else (lambda step, epoch=epoch: on_step(epoch, step)),
            )
            check_finite(stats["train_loss"], stats.pop("nonfinite_weights", 0), f"in epoch {epoch + 1}/{cfg.epochs}")
            # The network evaluated is rank 0's: its running statistics, then no collective in the loop, so ranks
            # may hold different numbers of test batches (a streamed test set smaller than the processes, say).
            broadcast_state(net, buffers_only=True)
            last_test = evaluate(net, data.test, amp_dtype)
            scheduler.step()
            seconds = time_before + time.perf_counter() - t0
            train_time += seconds
            row = {"epoch": epoch, "lr": lr, "drop_path_prob": net.drop_path_prob, **stats}
            row.update({k: last_test[k] for k in ("test_loss", "test_top1", "test_top5")})
            row.update(epoch_time_s=seconds, elapsed_s=train_time)
            if main:
                logger.log(row)
            write_checkpoint({"epoch": epoch + 1, "train_time_s": train_time, "last_test": last_test})
            if main:
                say(
                    f"epoch {epoch + 1}/{cfg.epochs}  lr {lr:.5f}  train loss {stats['train_loss']:.4f} "
                    f"acc {stats['train_top1']:.2f}%  test acc {last_test['test_top1']:.2f}% "
                    f"(top-5 {last_test['test_top5']:.2f}%)  {seconds:.1f}s"
                )
    except (RuntimeError, MemoryError) as e:
        if not is_out_of_memory(e):
            raise
        where = "GPU" if device.type == "cuda" else "CPU"
        done = f"{kept} stays intact" if kept else "no checkpoint had been written yet"
        raise RunFailed(
            f"out of {where} memory in epoch {epoch + 1}/{cfg.epochs} (batch_size={cfg.batch_size}, init_channels="
            f"{cfg.init_channels}, layers={cfg.layers}); {done}: try a smaller batch_size, e.g. batch_size="
            f"{max(1, cfg.batch_size // 2)}"
        ) from e
    finally:
        if logger is not None:
            logger.close()

    if end_epoch < cfg.epochs:
        return None
    result = {
        "genotype": genotype.to_dict(),
        "genotype_string": genotype.to_darts_string(),
        "dataset": cfg.dataset,
        "epochs": cfg.epochs,
        "seed": cfg.seed,
        "test_top1_error": 100.0 - last_test["test_top1"],
        "test_top5_error": 100.0 - last_test["test_top5"],
        "test_loss": last_test["test_loss"],
        "test_images": last_test["test_images"],
        "params": params,
        "params_with_auxiliary": count_params(net, include_auxiliary=True),
        "mult_adds": mult_adds,
        "train_time_s": train_time,
        "train_time_h": train_time / 3600.0,
        "device": device_name(device),
        "device_type": device.type,
        "precision": precision_name(amp_dtype),
        "channels_last": channels_last,
        "world_size": world.world_size,
    }
    if main:
        write_json(run_dir / "result.json", result)
    return result


def save_checkpoint(
    path: Path,
    cfg: TrainConfig,
    genotype: Genotype,
    data: Data,
    kind: str,
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    progress: dict[str, Any],
    rng_ranks: list[dict[str, Any]] | None = None,
) -> None:
    """Write everything a resume needs, atomically. progress: epoch (epochs done), train_time_s, last_test and,
    within an epoch, step (its steps done) and partial (their summed loss, correct, seen, and time_s).
    rng_ranks: every process's generator states, in rank order (a run of several processes)."""
    state = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        **progress,
        "model": unwrap(net).state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": rng_ranks[0] if rng_ranks else rng_state(),  # rank 0's, the one this process just gathered
        "rng_ranks": rng_ranks,
        "loader": data.train.state_dict(),
        "genotype": genotype.to_dict(),
        "config": config_to_dict(cfg),
        "network": network_spec(cfg, data, kind),
    }
    atomic_torch_save(state, path)


# --- evaluation of a saved network ------------------------------------------------------------------------------


def evaluate_checkpoint(
    path: str | Path,
    dataset: str | None = None,
    data_dir: str | None = None,
    device: str = "auto",
    batch_size: int = 256,
    workers: int = 4,
    amp: str | None = None,
) -> dict[str, Any]:
    """Test top-1 / top-5 error (%) of the network saved in a training checkpoint, rebuilt from the checkpoint.

    amp (auto, off, bf16, fp16) and the memory format default to the training run's settings, so on the same kind
    of device the figures repeat the run's last test exactly.
    """
    from rarts.data import DATASETS, DeviceLoader, StreamLoader, load_dataset
    from rarts.flops import count_mult_adds

    ckpt = load_checkpoint(path)
    spec = ckpt["network"]
    dataset = dataset or spec["dataset"]
    if dataset not in DATASETS:
        raise UsageError(f"unknown dataset {dataset!r}: choose from {', '.join(DATASETS)}")
    if data_dir is None and dataset == spec["dataset"]:
        data_dir = ckpt["config"].get("data_dir")
    dev = pick_device(device)
    amp_dtype = resolve_precision(amp or ckpt["config"].get("amp", "off"), dev)
    channels_last = resolve_channels_last(ckpt["config"].get("channels_last", "off"), dev)
    model = model_from_checkpoint(ckpt, dev, source=str(path))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    test_set = load_dataset(dataset, data_dir, "test")
    if len(test_set.classes) != spec["num_classes"]:
        raise UsageError(
            f"{path} holds a network for {spec['num_classes']} classes, {dataset} has {len(test_set.classes)}"
        )
    if DATASETS[dataset].streamed:
        loader = StreamLoader(test_set, batch_size, dev, train=False, workers=workers, channels_last=channels_last)
    else:
        if test_set.image_size != spec["input_size"]:
            raise UsageError(
                f"{path} was trained on {spec['input_size']}-pixel images, {dataset} has {test_set.image_size}"
            )
        loader = DeviceLoader.from_image_set(test_set, batch_size, dev, train=False, channels_last=channels_last)
    stats = evaluate(model, loader, amp_dtype)
    return {
        "checkpoint": str(path),
        "dataset": dataset,
        "epoch": ckpt["epoch"],
        "test_top1_error": 100.0 - stats["test_top1"],
        "test_top5_error": 100.0 - stats["test_top5"],
        "test_loss": stats["test_loss"],
        "test_images": stats["test_images"],
        "params": count_params(model),
        "mult_adds": count_mult_adds(model, (3, spec["input_size"], spec["input_size"])),
        "genotype": ckpt["genotype"],
        "device": device_name(dev),
        "precision": precision_name(amp_dtype),
        "channels_last": channels_last,
    }
