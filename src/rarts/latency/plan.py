"""What a network is made of, for a latency table: its parts in forward order, each under a key naming its shape.

A network is read as a sum of parts, each timed on its own on the target device:

    latency = stem + sum over cells (preprocess0 + preprocess1 + the cell's ops + merge) + head

where merge is the 4 node sums and the concatenation of a cell, and head is global pooling plus the classifier.
A `NetworkPlan` lists the parts a network uses, read from the network itself by forward hooks, each under a
key that names its shape, e.g. `op:sep_conv_3x3:C16:32x32:s1:search`. Two variants of each op exist: `search`
(BatchNorm without affine, pools followed by a BatchNorm, as the search network builds them) and `final` (affine
BatchNorm, as the final networks build them). A plan of a final network covers every primitive at every edge of
it, so a table measured for it predicts the latency of any genotype in that network.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from rarts.errors import UsageError
from rarts.genotype import DEFAULT_CONCAT, KNOWN_GENOTYPES, Genotype
from rarts.ops import PRIMITIVES, make_op
from rarts.supernet import NUM_EDGES, NUM_NODES, MixedOp, SearchNetwork

VARIANTS = ("search", "final")
OP_NAMES = tuple(name for name in PRIMITIVES if name != "none")
# Input index j of each of the 14 edges: node i reads states 0 .. i+1 (0 = c_{k-2}, 1 = c_{k-1}, 2.. = nodes).
EDGE_INPUTS = tuple(j for i in range(NUM_NODES) for j in range(2 + i))
EDGE_OFFSETS = tuple(sum(2 + k for k in range(i)) for i in range(NUM_NODES))

Shape = tuple[int, int, int]  # (C, H, W) of one input, without the batch dimension


# --- keys --------------------------------------------------------------------------------------------------------


def op_key(name: str, C: int, H: int, W: int, stride: int, variant: str) -> str:
    """Key of primitive `name` applied to a (C, H, W) input with `stride`, as built by `variant`'s network."""
    return f"op:{name}:C{C}:{H}x{W}:s{stride}:{variant}"


def preprocess_key(kind: str, C_in: int, C_out: int, H: int, W: int, variant: str) -> str:
    """Key of a cell's input preprocessing (ReLUConvBN or FactorizedReduce) on a (C_in, H, W) input."""
    return f"pre:{kind}:{C_in}>{C_out}:{H}x{W}:{variant}"


def merge_key(C: int, H: int, W: int) -> str:
    """Key of a cell's node sums (two inputs per node) and the concatenation of its 4 nodes of (C, H, W)."""
    return f"merge:C{C}:{H}x{W}"


def stem_key(kind: str, H: int, W: int, C_out: int) -> str:
    return f"stem:{kind}:3x{H}x{W}>{C_out}"


def head_key(C: int, H: int, W: int, num_classes: int) -> str:
    return f"head:C{C}:{H}x{W}>{num_classes}"


# --- what a network is made of -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CellPlan:
    """One cell's parts: its two preprocessing keys, its merge key, and the shape every edge reads.

    C is the channel count of every node; (H_in, W_in) the size of the preprocessed inputs, (H_out, W_out)
    that of the nodes (half of it in a reduction cell). Edges reading input 0 or 1 of a reduction cell stride 2.
    """

    reduction: bool
    C: int
    H_in: int
    W_in: int
    H_out: int
    W_out: int
    pre0: str
    pre1: str
    merge: str
    variant: str

    def edge_op_key(self, edge: int, name: str) -> str:
        """Key of op `name` on edge `edge` (0..13) of this cell."""
        j = EDGE_INPUTS[edge]
        if j < 2:
            return op_key(name, self.C, self.H_in, self.W_in, 2 if self.reduction else 1, self.variant)
        return op_key(name, self.C, self.H_out, self.W_out, 1, self.variant)


@dataclass
class Probe:
    """How to time one key: a factory for the module and the shapes of its inputs (batch left out)."""

    build: Callable[[], nn.Module]
    inputs: tuple[Shape, ...]


@dataclass
class NetworkPlan:
    """The parts of one network, in forward order, with a description of the network they come from."""

    variant: str
    description: dict[str, Any]
    stem: str
    cells: list[CellPlan]
    head: str
    probes: dict[str, Probe] = field(default_factory=dict, repr=False, compare=False)

    def fixed_keys(self) -> list[str]:
        """Parts every genotype runs: stem, each cell's preprocessing and merge, head (with repeats)."""
        keys = [self.stem]
        for cell in self.cells:
            keys += [cell.pre0, cell.pre1, cell.merge]
        keys.append(self.head)
        return keys

    def op_keys(self) -> list[str]:
        """Every non-none primitive on every edge of every cell (with repeats)."""
        return [cell.edge_op_key(e, name) for cell in self.cells for e in range(NUM_EDGES) for name in OP_NAMES]

    def required_keys(self) -> list[str]:
        """The distinct keys a table needs to cover this network for any architecture, in forward order."""
        return list(dict.fromkeys(self.fixed_keys() + self.op_keys()))

    def genotype_keys(self, genotype: Genotype) -> list[str]:
        """The keys whose latencies add up to the discrete network of `genotype` (with repeats)."""
        for name in ("normal", "reduce"):
            gene, concat = getattr(genotype, name), getattr(genotype, f"{name}_concat")
            if len(gene) != 2 * NUM_NODES or tuple(concat) != DEFAULT_CONCAT:
                raise UsageError(
                    f"latency tables model cells of {NUM_NODES} nodes concatenated as {list(DEFAULT_CONCAT)}; "
                    f"the genotype's {name} cell has {len(gene) // 2} nodes and concat {list(concat)}"
                )
        keys = [self.stem]
        for cell in self.cells:
            gene = genotype.reduce if cell.reduction else genotype.normal
            keys += [cell.pre0, cell.pre1]
            for pos, (name, j) in enumerate(gene):
                keys.append(cell.edge_op_key(EDGE_OFFSETS[pos // 2] + j, name))
            keys.append(cell.merge)
        keys.append(self.head)
        return keys


class _Merge(nn.Module):
    """The cell's glue: node k is the sum of its two inputs, the output concatenates the 4 nodes."""

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        nodes = [xs[2 * i] + xs[2 * i + 1] for i in range(len(xs) // 2)]
        return torch.cat(nodes, dim=1)


class _Head(nn.Module):
    def __init__(self, pooling: nn.Module, classifier: nn.Module):
        super().__init__()
        self.pooling, self.classifier = pooling, classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pooling(x).flatten(1))


def _search_op(name: str, C: int, stride: int) -> nn.Module:
    """Primitive `name` exactly as the search network's MixedOp builds it (pools followed by a BatchNorm)."""
    mixed = MixedOp(C, stride)
    return mixed.ops[mixed.op_index.index(PRIMITIVES.index(name))]


def _op_factory(name: str, C: int, stride: int, variant: str) -> Callable[[], nn.Module]:
    if variant == "search":
        return lambda: _search_op(name, C, stride)
    return lambda: make_op(name, C, stride, affine=True)


def plan_network(model: nn.Module, image_size: int, description: dict[str, Any] | None = None) -> NetworkPlan:
    """The parts of `model` (a SearchNetwork, NetworkCIFAR or NetworkImageNet) on image_size x image_size inputs.

    Shapes are read by forward hooks during one forward pass of a single zero image, so the plan covers
    exactly what the network runs. Each key gets a probe that builds the part for timing: the fixed parts
    are copies of the network's own modules, the ops are built the way the network's kind builds them.
    """
    variant = "search" if isinstance(model, SearchNetwork) else "final"
    if not hasattr(model, "cells") or not hasattr(model, "classifier"):
        raise UsageError(f"cannot plan the latency of a {type(model).__name__}: expected a search or final network")
    seen: dict[str, Any] = {}
    handles = []

    def record(name: str, module: nn.Module) -> None:
        def hook(m: nn.Module, inputs: tuple, output: Any) -> None:
            seen[name] = ([tuple(t.shape[1:]) for t in inputs if isinstance(t, torch.Tensor)], tuple(output.shape[1:]))

        handles.append(module.register_forward_hook(hook))

    stems = [model.stem] if hasattr(model, "stem") else [model.stem0, model.stem1]
    record("stem_first", stems[0])
    record("stem_last", stems[-1])
    for i, cell in enumerate(model.cells):
        record(f"cell{i}", cell)
        record(f"cell{i}.pre0", cell.preprocess0)
        record(f"cell{i}.pre1", cell.preprocess1)
    record("pool", model.global_pooling)

    p = next(model.parameters())
    x = torch.zeros(1, 3, image_size, image_size, device=p.device, dtype=p.dtype)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            if variant == "search":
                uniform = torch.full(
                    (NUM_EDGES, len(PRIMITIVES)), 1.0 / len(PRIMITIVES), device=p.device, dtype=p.dtype
                )
                model(x, (uniform, uniform))
            else:
                model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()

    probes: dict[str, Probe] = {}
    _, (C_stem, H_stem, W_stem) = seen["stem_last"]
    stem_kind = "cifar" if len(stems) == 1 else "imagenet"
    stem = stem_key(stem_kind, image_size, image_size, C_stem)
    stem_module = stems[0] if len(stems) == 1 else nn.Sequential(*stems)
    probes[stem] = Probe(lambda m=stem_module: copy.deepcopy(m), ((3, image_size, image_size),))

    cells = []
    for i, cell in enumerate(model.cells):
        pre_keys = []
        for which in ("pre0", "pre1"):
            (shape_in,), shape_out = seen[f"cell{i}.{which}"]
            module = getattr(cell, "preprocess0" if which == "pre0" else "preprocess1")
            key = preprocess_key(type(module).__name__, shape_in[0], shape_out[0], *shape_in[1:], variant)
            probes.setdefault(key, Probe(lambda m=module: copy.deepcopy(m), (shape_in,)))
            pre_keys.append(key)
        _, H_in, W_in = seen[f"cell{i}.pre1"][1]
        _, (C_cell_out, H_out, W_out) = seen[f"cell{i}"]
        C = C_cell_out // NUM_NODES
        plan = CellPlan(
            bool(cell.reduction), C, H_in, W_in, H_out, W_out, *pre_keys, merge_key(C, H_out, W_out), variant
        )
        probes.setdefault(plan.merge, Probe(_Merge, ((C, H_out, W_out),) * (2 * NUM_NODES)))
        for e in range(NUM_EDGES):
            for name in OP_NAMES:
                key = plan.edge_op_key(e, name)
                if key not in probes:
                    shape = (C, H_in, W_in) if EDGE_INPUTS[e] < 2 else (C, H_out, W_out)
                    stride = 2 if plan.reduction and EDGE_INPUTS[e] < 2 else 1
                    probes[key] = Probe(_op_factory(name, C, stride, variant), (shape,))
        cells.append(plan)

    (pool_in,), _ = seen["pool"]
    head = head_key(*pool_in, model.classifier.out_features)
    probes[head] = Probe(
        lambda m=model: _Head(copy.deepcopy(m.global_pooling), copy.deepcopy(m.classifier)), (pool_in,)
    )
    desc = dict(description or {})
    desc.setdefault("kind", variant)
    desc.setdefault("image_size", image_size)
    desc.setdefault("layers", len(model.cells))
    desc.setdefault("num_classes", model.classifier.out_features)
    return NetworkPlan(variant, desc, stem, cells, head, probes)


def dataset_shape(dataset: str) -> tuple[int, int]:
    """(image size, classes) of the final network for `dataset`, matching rarts.network.build_network."""
    if dataset in ("imagenet", "folder"):
        return 224, 1000
    return 32, 100 if dataset == "cifar100" else 10


def search_plan(C: int, layers: int, image_size: int, num_classes: int = 10) -> NetworkPlan:
    """The plan of the search network with C channels and `layers` cells on image_size inputs."""
    net = SearchNetwork(C, num_classes, layers)
    desc = {"kind": "search", "C": C, "layers": layers, "image_size": image_size, "num_classes": num_classes}
    return plan_network(net, image_size, desc)


def final_plan(
    dataset: str, C: int | None = None, layers: int | None = None, num_classes: int | None = None
) -> NetworkPlan:
    """The plan of the final network for `dataset` (auxiliary head off), genotype-agnostic.

    The cells' shapes do not depend on the genotype, so any genotype gives the same plan; C and layers default
    to the paper's sizes (36 channels and 20 cells on CIFAR, 48 and 14 on ImageNet).
    """
    from rarts.network import build_network

    image_size, classes = dataset_shape(dataset)
    net = build_network(KNOWN_GENOTYPES["DARTS_V2"], dataset, C, layers, auxiliary=False, num_classes=num_classes)
    C = C or (48 if dataset == "imagenet" else 36)
    desc = {"kind": "final", "dataset": dataset, "C": C, "layers": len(net.cells), "image_size": image_size}
    desc["num_classes"] = num_classes or classes
    return plan_network(net, image_size, desc)
