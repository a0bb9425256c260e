"""Mult-add counts by formula, from forward hooks on convolutions and linear layers.

Counted per image in eval mode (auxiliary head off): a convolution costs
out_elements * (C_in / groups) * k_h * k_w mult-adds, a linear layer in * out. Pools, BN and additions
are left out, as the NAS literature counts them.
"""

from __future__ import annotations

import torch
from torch import nn


def count_mult_adds(model: nn.Module, input_size: tuple[int, int, int], *args) -> int:
    """Mult-adds of one forward pass of `model` on one image of shape input_size (C, H, W)."""
    total = 0

    def conv_hook(m: nn.Conv2d, inp, out) -> None:
        nonlocal total
        kh, kw = m.kernel_size
        total += out.numel() // out.shape[0] * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m: nn.Linear, inp, out) -> None:
        nonlocal total
        total += m.in_features * m.out_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
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
    return total
