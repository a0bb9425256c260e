"""The eight primitives of the DARTS cell search space, in a registry keyed by name.

Every factory has the signature `(C, stride, affine) -> nn.Module`, maps C channels to C channels,
and divides the spatial size by `stride`. The search network builds them with affine=False
(BatchNorm without learnable scale and shift), the final networks with affine=True.

They are the plain modules the DARTS paper describes. Faster CPU versions with the same values, parameters and
state dicts are in rarts.fast, which swaps them in when a run asks for it (`rarts.fast.use_fast_paths`).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

PRIMITIVES: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)

OpFactory = Callable[[int, int, bool], nn.Module]
OPS: dict[str, OpFactory] = {}


def register_op(name: str) -> Callable[[OpFactory], OpFactory]:
    def decorator(factory: OpFactory) -> OpFactory:
        OPS[name] = factory
        return factory

    return decorator


class ReLUConvBN(nn.Sequential):
    """ReLU, k x k convolution, BatchNorm: the 1x1 preprocessing of cell inputs."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, affine: bool = True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )


class DilConv(nn.Sequential):
    """ReLU, depthwise k x k dilated convolution, pointwise 1x1, BatchNorm."""

    def __init__(
        self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, dilation: int, affine: bool = True
    ):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, kernel_size, stride, padding, dilation, groups=C_in, bias=False),
            nn.Conv2d(C_in, C_out, 1, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two DilConv blocks without dilation; only the first depthwise convolution is strided."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, affine: bool = True):
        super().__init__(
            DilConv(C_in, C_in, kernel_size, stride, padding, dilation=1, affine=affine),
            DilConv(C_in, C_out, kernel_size, 1, padding, dilation=1, affine=affine),
        )


class Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Zero(nn.Module):
    """The `none` op: zeros of the output shape (subsampled when strided)."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class FactorizedReduce(nn.Module):
    """Halve the spatial size with two 1x1 stride-2 convolutions, the second shifted by one pixel."""

    def __init__(self, C_in: int, C_out: int, affine: bool = True):
        super().__init__()
        if C_out % 2:
            raise ValueError(f"FactorizedReduce needs an even number of output channels, got {C_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        # The shifted path sees pixels (1, 1), (1, 3), ...; pad so odd sizes keep the shape of the first path.
        shifted = x[:, :, 1:, 1:]
        if x.shape[2] % 2 or x.shape[3] % 2:
            shifted = nn.functional.pad(shifted, (0, x.shape[3] % 2, 0, x.shape[2] % 2))
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


@register_op("none")
def _none(C: int, stride: int, affine: bool) -> nn.Module:
    return Zero(stride)


@register_op("max_pool_3x3")
def _max_pool(C: int, stride: int, affine: bool) -> nn.Module:
    return nn.MaxPool2d(3, stride=stride, padding=1)


@register_op("avg_pool_3x3")
def _avg_pool(C: int, stride: int, affine: bool) -> nn.Module:
    return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)


@register_op("skip_connect")
def _skip(C: int, stride: int, affine: bool) -> nn.Module:
    return Identity() if stride == 1 else FactorizedReduce(C, C, affine=affine)


@register_op("sep_conv_3x3")
def _sep3(C: int, stride: int, affine: bool) -> nn.Module:
    return SepConv(C, C, 3, stride, 1, affine=affine)


@register_op("sep_conv_5x5")
def _sep5(C: int, stride: int, affine: bool) -> nn.Module:
    return SepConv(C, C, 5, stride, 2, affine=affine)


@register_op("dil_conv_3x3")
def _dil3(C: int, stride: int, affine: bool) -> nn.Module:
    return DilConv(C, C, 3, stride, 2, 2, affine=affine)


@register_op("dil_conv_5x5")
def _dil5(C: int, stride: int, affine: bool) -> nn.Module:
    return DilConv(C, C, 5, stride, 4, 2, affine=affine)


def make_op(name: str, C: int, stride: int, affine: bool) -> nn.Module:
    """Build primitive `name`; an unknown name is a ValueError listing the known ones."""
    try:
        factory = OPS[name]
    except KeyError:
        raise ValueError(f"unknown op {name!r}; known: {', '.join(PRIMITIVES)}") from None
    return factory(C, stride, affine)
