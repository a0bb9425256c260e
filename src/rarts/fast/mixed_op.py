"""The search network's mixed op, sum_k w_k op_k(x), computed with less time and memory and the same values.

`SharedReLUMixedOp` computes the ReLU that its four convolution ops (two separable, two dilated) begin with once
and runs each op's remainder on it: three activations per edge less, in time and in memory kept for the backward
pass, on every device. `FastMixedOp` also fuses each op's closing BatchNorm (without affine parameters) with the
op's weight (`weighted_norm`, its pools recomputed inside it) and recomputes the separable convolutions' inner
BatchNorm-ReLU (`NormReLUConvFunction`) where the fast paths apply; elsewhere it is `SharedReLUMixedOp`.

Both are rarts.supernet.MixedOp with another forward (no parameters or buffers of their own); they read the
structure of the primitives of rarts.ops, which know nothing of them.
"""

from __future__ import annotations

import torch
from torch import nn

from rarts.fast.policy import applies
from rarts.fast.recompute import NormReLUConvFunction, norm_arguments, weighted_norm
from rarts.ops import DilConv, FactorizedReduce, SepConv
from rarts.supernet import MixedOp

_CONV_OPS = (DilConv, SepConv)  # the ops that begin with a ReLU of the edge's input


def _leading_relu(op: nn.Module) -> nn.Module:
    """The ReLU a DilConv (its first module) or a SepConv (its first block's first) begins with."""
    return op[0] if isinstance(op, DilConv) else op[0][0]


def _after_relu(op: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """op(x') for x' = relu(x), given x: the op without its leading ReLU."""
    if isinstance(op, DilConv):
        return op[3](op[2](op[1](x)))
    return op[1](_after_relu(op[0], x))


def _closing_norm(op: nn.Module) -> nn.Module:
    """The BatchNorm a DilConv or a SepConv ends with."""
    return op[3] if isinstance(op, DilConv) else op[1][3]


def _before_norm(op: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """_after_relu(op, x) without the closing BatchNorm. In a separable convolution the middle (the first block's
    BatchNorm, the second block's ReLU and depthwise convolution) is `NormReLUConvFunction` when its shapes allow:
    the ReLU's output is recomputed in the backward pass instead of kept."""
    if isinstance(op, DilConv):
        return op[2](op[1](x))
    first, second = op[0], op[1]
    hidden = _before_norm(first, x)
    norm, conv = first[3], second[1]
    fused = not norm.affine and type(second[0]) is nn.ReLU
    if fused and conv.stride[0] == 1 and conv.dilation[0] == 1 and 2 * conv.padding[0] == conv.kernel_size[0] - 1:
        hidden = NormReLUConvFunction.apply(hidden, conv.weight, conv.padding[0], *norm_arguments(norm))
    else:
        hidden = conv(second[0](norm(hidden)))
    return second[2](hidden)


def _reduce_before_norm(op: FactorizedReduce, x: torch.Tensor) -> torch.Tensor:
    """A FactorizedReduce without its closing BatchNorm: op(x) == op.bn(this)."""
    x = op.relu(x)
    shifted = x[:, :, 1:, 1:]
    if x.shape[2] % 2 or x.shape[3] % 2:
        shifted = nn.functional.pad(shifted, (0, x.shape[3] % 2, 0, x.shape[2] % 2))
    return torch.cat([op.conv_1(x), op.conv_2(shifted)], dim=1)


def _is_pool_and_norm(op: nn.Module) -> bool:
    return isinstance(op, nn.Sequential) and isinstance(op[0], (nn.MaxPool2d, nn.AvgPool2d))


class SharedReLUMixedOp(MixedOp):
    """MixedOp with one ReLU of the input for all its convolution ops (the same arithmetic)."""

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        out = None
        activated = None
        for k, op in zip(self.op_index, self.ops):
            if isinstance(op, _CONV_OPS):
                if activated is None:
                    activated = _leading_relu(op)(x)
                term = weights[k] * _after_relu(op, activated)
            else:
                term = weights[k] * op(x)
            out = term if out is None else out + term
        return out


class FastMixedOp(SharedReLUMixedOp):
    """SharedReLUMixedOp whose ops' closing BatchNorms are fused with their weights where the fast paths apply."""

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        if not applies(x):
            return super().forward(x, weights)
        out = None
        activated = None
        for k, op in zip(self.op_index, self.ops):
            if isinstance(op, _CONV_OPS):
                if activated is None:
                    activated = _leading_relu(op)(x)
                term = weighted_norm(_before_norm(op, activated), _closing_norm(op), weights[k])
            elif isinstance(op, FactorizedReduce):
                term = weighted_norm(_reduce_before_norm(op, x), op.bn, weights[k])
            elif _is_pool_and_norm(op):
                term = weighted_norm(x, op[1], weights[k], before=op[0])  # the pool is recomputed in the backward
            else:
                term = weights[k] * op(x)
            out = term if out is None else out + term
        return out
