"""Faster CPU versions of the reference modules (rarts.ops, rarts.supernet), with the same values, behind one switch.

    net = use_fast_paths(SearchNetwork(16, 10, 8))      # or a final network of rarts.network

`use_fast_paths` changes the class of the modules it has a fast version of, in place: parameters, buffers, their
names and the state dict stay as they are, so checkpoints of either load into the other, and an optimiser built
before or after sees the same tensors. What the fast modules compute equals what the reference ones compute, up to
float rounding (tests/test_fast_ops.py checks outputs, every gradient and the running statistics). Whether a rewrite
runs on a given input is decided by one rule, `rarts.fast.policy.applies`: on the CPU, with autograd recording.

The parts, each of which `parts` may name:
- "shared_relu": the mixed op computes the ReLU its convolution ops begin with once (rarts.fast.mixed_op); on
  every device;
- "depthwise": the depthwise convolutions' backward rewritten onto oneDNN's fast kernel (rarts.fast.depthwise);
- "lean_memory": less kept for the backward pass: the mixed op's weight x BatchNorm fused with its pools
  recomputed, the separable convolutions' inner BatchNorm-ReLU recomputed, max pooling without int64 indices
  (rarts.fast.recompute); it includes "shared_relu".

rarts.fast.paired, the other half of this package, runs a search step's independent pairs of passes at once.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from rarts.fast.depthwise import FastDepthwiseConv2d
from rarts.fast.mixed_op import FastMixedOp, SharedReLUMixedOp
from rarts.fast.recompute import FastMaxPool2d
from rarts.ops import DilConv
from rarts.supernet import MixedOp

PARTS: tuple[str, ...] = ("shared_relu", "depthwise", "lean_memory")


def use_fast_paths(net: nn.Module, parts: Iterable[str] = PARTS) -> nn.Module:
    """Swap the modules of `net` (a search network, a final network, or any module built of rarts.ops) for their
    fast versions, in place, as far as `parts` goes (see the module docstring); returns `net`. Modules swapped
    already are left as they are."""
    parts = set(parts)
    unknown = parts - set(PARTS)
    if unknown:
        raise ValueError(f"unknown fast paths {sorted(unknown)}; known: {', '.join(PARTS)}")
    mixed = FastMixedOp if "lean_memory" in parts else SharedReLUMixedOp if "shared_relu" in parts else None
    for m in net.modules():
        if type(m) is MixedOp and mixed is not None:
            m.__class__ = mixed
        elif type(m) is nn.MaxPool2d and "lean_memory" in parts:
            m.__class__ = FastMaxPool2d
        elif isinstance(m, DilConv) and type(m[1]) is nn.Conv2d and "depthwise" in parts:
            m[1].__class__ = FastDepthwiseConv2d
    return net
