"""Testing a network: top-1 / top-5 accuracy (%) and loss, and a trained network rebuilt from its checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from rarts import runs
from rarts.errors import UsageError
from rarts.genotype import Genotype
from rarts.network import count_params
from rarts.train.config import TrainConfig
from rarts.train.data import Data
from rarts.train.epoch import _correct_topk, _sum_over_processes
from rarts.train.recipe import autocast, make_model, precision_name, resolve_channels_last, resolve_precision
from rarts.utils import device_name, pick_device


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


def network_spec(cfg: TrainConfig, data: Data, kind: str) -> dict[str, Any]:
    """What rebuilding the network needs, stored in every checkpoint."""
    return {
        "kind": kind,
        "dataset": cfg.dataset,
        "channels": cfg.channels,
        "layers": cfg.layers,
        "auxiliary": cfg.builds_auxiliary,
        "num_classes": data.num_classes,
        "input_size": data.input_size,
        "mean": list(data.mean),
        "std": list(data.std),
        "classes": list(data.classes),
    }


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A training checkpoint (rarts.runs.checkpoint), in the current layout; anything else is a one-line UsageError."""
    return runs.load_checkpoint(path, "train")


def model_from_checkpoint(ckpt: dict[str, Any], device: torch.device, source: str = "checkpoint") -> nn.Module:
    """The network a checkpoint describes (genotype, kind, C, layers, classes) with its trained weights."""
    genotype = Genotype.from_dict(ckpt["genotype"], source=source)
    spec = ckpt["network"]
    model = make_model(
        genotype, spec["kind"], spec["channels"], spec["layers"], spec["auxiliary"], spec["num_classes"], device
    )
    load_model_state(model, ckpt["model"], source)
    return model


def load_model_state(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = next((line.strip() for line in str(e).splitlines()[1:] if line.strip()), str(e))
        raise UsageError(f"{source} holds weights of another architecture ({first[:160]})") from e


def evaluate_checkpoint(
    path: str | Path,
    dataset: str | None = None,
    data_dir: str | None = None,
    device: str = "auto",
    batch_size: int = 256,
    workers: int | None = None,
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
