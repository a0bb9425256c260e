"""The DARTS search network (the "supernet"), with the architecture kept outside the weight modules.

`Architecture` holds alpha_normal and alpha_reduce (14 x 8 each). `SearchNetwork(x, arch)` takes the
architecture as an argument, so RARTS's two weight sets w and y are two plain SearchNetwork instances that
share one Architecture, an optimiser over `net.parameters()` never sees alpha, and DDP wraps weights only.

The modules are the plain ones of the DARTS paper; rarts.fast swaps in faster CPU versions with the same values.
"""

from __future__ import annotations

from typing import Union

import torch
import torch.nn.functional as F
from torch import nn

from rarts.ops import PRIMITIVES, FactorizedReduce, ReLUConvBN, make_op

NUM_NODES = 4
NUM_EDGES = sum(2 + i for i in range(NUM_NODES))  # 14
NUM_OPS = len(PRIMITIVES)  # 8


class Architecture(nn.Module):
    """The architecture parameters alpha of the normal and the reduction cell, each (14, 8)."""

    def __init__(self, num_edges: int = NUM_EDGES, num_ops: int = NUM_OPS, init_scale: float = 1e-3):
        super().__init__()
        self.alpha_normal = nn.Parameter(init_scale * torch.randn(num_edges, num_ops))
        self.alpha_reduce = nn.Parameter(init_scale * torch.randn(num_edges, num_ops))

    def weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-edge softmax of alpha: the mixing weights (normal, reduce), each (14, 8)."""
        return F.softmax(self.alpha_normal, dim=-1), F.softmax(self.alpha_reduce, dim=-1)

    def alphas(self) -> list[nn.Parameter]:
        return [self.alpha_normal, self.alpha_reduce]


ArchLike = Union[Architecture, tuple[torch.Tensor, torch.Tensor]]


class MixedOp(nn.Module):
    """The mixed operation of one edge: the weighted sum of the primitives, sum_k w_k op_k(x).

    `none` contributes exactly zero, so its op is never run; its alpha still takes part in the softmax.
    Pools are followed by a BatchNorm without affine, as in DARTS.
    """

    def __init__(self, C: int, stride: int):
        super().__init__()
        self.stride = stride
        self.ops = nn.ModuleList()
        self.op_index: list[int] = []
        for k, name in enumerate(PRIMITIVES):
            if name == "none":
                continue
            op = make_op(name, C, stride, affine=False)
            if "pool" in name:
                op = nn.Sequential(op, nn.BatchNorm2d(C, affine=False))
            self.ops.append(op)
            self.op_index.append(k)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """x: (N, C, H, W); weights: (8,) mixing weights of this edge. Returns (N, C, H/stride, W/stride)."""
        out = None
        for k, op in zip(self.op_index, self.ops):
            term = weights[k] * op(x)
            out = term if out is None else out + term
        return out


class SearchCell(nn.Module):
    """A cell of 4 intermediate nodes; each node sums a MixedOp over every earlier state."""

    def __init__(self, C_prev_prev: int, C_prev: int, C: int, reduction: bool, reduction_prev: bool):
        super().__init__()
        self.reduction = reduction
        if reduction_prev:
            self.preprocess0 = FactorizedReduce(C_prev_prev, C, affine=False)
        else:
            self.preprocess0 = ReLUConvBN(C_prev_prev, C, 1, 1, 0, affine=False)
        self.preprocess1 = ReLUConvBN(C_prev, C, 1, 1, 0, affine=False)
        self.edges = nn.ModuleList()
        for i in range(NUM_NODES):
            for j in range(2 + i):
                stride = 2 if reduction and j < 2 else 1
                self.edges.append(MixedOp(C, stride))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """weights: (14, 8). Returns the concatenation of the 4 nodes, (N, 4C, H', W')."""
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        offset = 0
        for _ in range(NUM_NODES):
            s = None
            for j, h in enumerate(states):
                term = self.edges[offset + j](h, weights[offset + j])
                s = term if s is None else s + term
            offset += len(states)
            states.append(s)
        return torch.cat(states[-NUM_NODES:], dim=1)


class SearchNetwork(nn.Module):
    """Stem, `layers` search cells (reductions at layers//3 and 2*layers//3), global pooling, classifier."""

    def __init__(self, C: int = 16, num_classes: int = 10, layers: int = 8, stem_multiplier: int = 3):
        super().__init__()
        self.C, self.num_classes, self.layers = C, num_classes, layers
        C_curr = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(3, C_curr, 3, padding=1, bias=False), nn.BatchNorm2d(C_curr))
        C_prev_prev, C_prev, C_curr = C_curr, C_curr, C
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                C_curr *= 2
            self.cells.append(SearchCell(C_prev_prev, C_prev, C_curr, reduction, reduction_prev))
            reduction_prev = reduction
            C_prev_prev, C_prev = C_prev, NUM_NODES * C_curr
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, num_classes)

    def forward(self, x: torch.Tensor, arch: ArchLike) -> torch.Tensor:
        """x: (N, 3, H, W) images; arch: an Architecture, or mixing weights (normal, reduce) of shape (14, 8).

        Returns logits (N, num_classes).
        """
        w_normal, w_reduce = arch.weights() if isinstance(arch, Architecture) else arch
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, w_reduce if cell.reduction else w_normal)
        return self.classifier(self.global_pooling(s1).flatten(1))
