"""Operation counts by formula, from forward hooks on the layers of one eval-mode forward pass.

Counted per image, in eval mode (so the auxiliary head is off). Two conventions:

- **mult-adds** (`count_mult_adds`, the figure this package reports): convolutions and linear layers only.
  A convolution costs out_elements * (C_in / groups) * k_h * k_w, a linear layer in * out. This is what
  most NAS papers mean by "multiply-add operations"; pools, BatchNorm, ReLU and additions are left out.
- **all layers** (`count_operations(...)["all_layers"]`): the mult-adds plus one operation per element for
  ReLU, per input element for pools (global pooling included), per element for BatchNorm (two when it has
  an affine scale and shift), and the linear bias. This is the rule of the `ptflops` counter.

DARTS_V2 on ImageNet (48 channels, 14 cells, 224 x 224) has 529.9M mult-adds and 544.6M operations under the
second rule. The DARTS paper reports 574M and its code does not say how that was counted; neither rule here
reproduces it (docs/genotypes.md).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

_POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


def count_operations(model: nn.Module, input_size: tuple[int, int, int], *args: Any) -> dict[str, int]:
    """Per-image operation counts of one eval-mode forward pass on an input of shape input_size (C, H, W).

    Returns a dict with `conv`, `linear`, `linear_bias`, `batchnorm`, `relu`, `pool` (each a count),
    `mult_adds` (conv + linear) and `all_layers` (the sum of every kind). Extra `args` go to the forward call.
    """
    counts = dict.fromkeys(("conv", "linear", "linear_bias", "batchnorm", "relu", "pool"), 0)

    def hook(m: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        x = inp[0]
        if isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            counts["conv"] += out[0].numel() * (m.in_channels // m.groups) * kh * kw
        elif isinstance(m, nn.Linear):
            rows = out[0].numel() // m.out_features
            counts["linear"] += rows * m.in_features * m.out_features
            counts["linear_bias"] += rows * m.out_features if m.bias is not None else 0
        elif isinstance(m, nn.BatchNorm2d):
            counts["batchnorm"] += out[0].numel() * (2 if m.affine else 1)
        elif isinstance(m, nn.ReLU):
            counts["relu"] += out[0].numel()
        elif isinstance(m, _POOLS):
            counts["pool"] += x[0].numel()

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    was_training = model.training
    model.eval()
    try:
        p = next(model.parameters())
        with torch.no_grad():
            model(torch.zeros(1, *input_size, device=p.device, dtype=p.dtype), *args)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    counts["mult_adds"] = counts["conv"] + counts["linear"]
    counts["all_layers"] = sum(counts[k] for k in ("conv", "linear", "linear_bias", "batchnorm", "relu", "pool"))
    return counts


def count_mult_adds(model: nn.Module, input_size: tuple[int, int, int], *args: Any) -> int:
    """Mult-adds (convolutions and linear layers) of one forward pass on one image of shape input_size (C, H, W)."""
    return count_operations(model, input_size, *args)["mult_adds"]
