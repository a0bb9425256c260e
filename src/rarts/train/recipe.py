"""DARTS' final-training recipe, piece by piece: precision, loss, schedules, optimiser, the network.

SGD with momentum, a learning rate that follows a cosine from `lr` to `lr_min` (CIFAR) or decays by `lr_gamma`
per epoch (ImageNet), an auxiliary classifier at 2/3 depth whose loss is added with weight `auxiliary_weight`,
drop-path whose probability ramps linearly from 0 over the epochs, gradient-norm clipping and, for ImageNet,
label smoothing. The scheduler steps once after each epoch, so epoch 0 trains at `lr` and epoch E-1 at the
schedule's value for E-1.
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

from rarts.genotype import Genotype
from rarts.network import build_network
from rarts.train.config import TrainConfig


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
    genotype: Genotype, kind: str, channels: int, layers: int, auxiliary: bool, num_classes: int, device: torch.device
) -> nn.Module:
    """The final network on `device` (float32); `kind` is 'cifar' or 'imagenet'."""
    dataset = "imagenet" if kind == "imagenet" else "cifar10"
    return build_network(genotype, dataset, channels, layers, auxiliary, num_classes).to(device)


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
