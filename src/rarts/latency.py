"""Latency lookup tables and the expected-latency penalty (the paper adopts FasterSeg's).

A network is read as a sum of parts, each timed on its own on the target device:

    latency = stem + sum over cells (preprocess0 + preprocess1 + the cell's ops + merge) + head

where merge is the 4 node sums and the concatenation of a cell, and head is global pooling plus the classifier.
A `NetworkPlan` lists the parts a network uses, read from the network itself by forward hooks, each under a
key that names its shape, e.g. `op:sep_conv_3x3:C16:32x32:s1:search`. A `LatencyTable` maps such keys to
median milliseconds and records the conditions of the measurement (device, dtype, batch, threads, torch).

The search objective gets the expected latency of the relaxed network,

    E[latency](alpha) = sum over cells c, edges e, ops o of softmax(alpha_c)[e, o] * latency(o at e's shape in c),

with `none` at zero (the search network never runs it). It is differentiable in alpha; `LatencyPenalty` holds
the per-edge latencies of all normal cells and of all reduction cells summed into two (14, 8) matrices, so
evaluating it is two weighted sums. Two variants of each op exist: `search` (BatchNorm without affine, pools
followed by a BatchNorm, as the search network builds them) and `final` (affine BatchNorm, as the final
networks build them). A table measured for a final network covers every primitive at every edge of it, so
it predicts the latency of any genotype in that network.
"""

from __future__ import annotations

import copy
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Union

import torch
from torch import nn

from rarts.errors import UsageError
from rarts.genotype import DEFAULT_CONCAT, KNOWN_GENOTYPES, Genotype
from rarts.ops import PRIMITIVES, make_op
from rarts.supernet import NUM_EDGES, NUM_NODES, Architecture, MixedOp, SearchNetwork

TABLE_FORMAT = "rarts-latency-table"
TABLE_VERSION = 1
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


# --- the table ---------------------------------------------------------------------------------------------------


@dataclass
class LatencyTable:
    """Median latency in milliseconds per key, with the conditions it was measured under.

    `spread` holds each entry's interquartile range relative to its median; `networks` describes the
    networks whose parts were measured; `source` names the file it was read from, for error messages.
    """

    entries: dict[str, float]
    conditions: dict[str, Any] = field(default_factory=dict)
    networks: list[dict[str, Any]] = field(default_factory=list)
    spread: dict[str, float] = field(default_factory=dict)
    source: str = "latency table"

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def __getitem__(self, key: str) -> float:
        if key not in self.entries:
            raise self._missing([key])
        return self.entries[key]

    def _missing(self, keys: list[str]) -> UsageError:
        covered = "; ".join(describe_network(n) for n in self.networks) or "no network recorded"
        more = f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""
        return UsageError(
            f"{self.source} has no entry {keys[0]}{more}: it covers {covered}; "
            "measure a table for this network with `rarts latency measure`"
        )

    def check_covers(self, plan: NetworkPlan) -> None:
        """Raise a UsageError naming the first missing entry if the table does not cover `plan`."""
        missing = [k for k in plan.required_keys() if k not in self.entries]
        if missing:
            raise self._missing(missing)

    def total(self, keys: list[str]) -> float:
        """Sum of the entries of `keys` (with repeats), in milliseconds."""
        missing = list(dict.fromkeys(k for k in keys if k not in self.entries))
        if missing:
            raise self._missing(missing)
        return float(sum(self.entries[k] for k in keys))

    def predict(self, plan: NetworkPlan, genotype: Genotype) -> float:
        """The table's latency estimate (ms) of `plan`'s network built from `genotype`."""
        return self.total(plan.genotype_keys(genotype))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": TABLE_FORMAT,
            "version": TABLE_VERSION,
            "unit": "ms",
            "conditions": self.conditions,
            "networks": self.networks,
            "entries": self.entries,
            "spread": self.spread,
        }

    def save(self, path: str | Path) -> None:
        from rarts.utils import write_json

        write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, data: Any, source: str = "latency table") -> LatencyTable:
        if not isinstance(data, dict) or data.get("format") != TABLE_FORMAT:
            raise UsageError(f"{source} is not a rarts latency table (made by `rarts latency measure`)")
        if data.get("version") != TABLE_VERSION:
            raise UsageError(
                f"{source}: latency table version {data.get('version')!r}, this rarts reads {TABLE_VERSION}"
            )
        entries = data.get("entries")
        if not isinstance(entries, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in entries.values()
        ):
            raise UsageError(f"{source}: entries must map keys to non-negative milliseconds")
        return cls(
            {str(k): float(v) for k, v in entries.items()},
            dict(data.get("conditions") or {}),
            list(data.get("networks") or []),
            {str(k): float(v) for k, v in (data.get("spread") or {}).items()},
            source,
        )

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        from rarts.utils import read_json

        return cls.from_dict(read_json(path), source=str(path))


def describe_network(desc: dict[str, Any]) -> str:
    """One line naming a network a table was measured for, e.g. 'final network cifar10 C=36 layers=20 32px'."""
    parts = [f"{desc.get('kind', '?')} network"]
    if desc.get("dataset"):
        parts.append(str(desc["dataset"]))
    parts.append(f"C={desc.get('C', '?')} layers={desc.get('layers', '?')} {desc.get('image_size', '?')}px")
    if desc.get("num_classes"):
        parts.append(f"{desc['num_classes']} classes")
    return " ".join(parts)


# --- timing ------------------------------------------------------------------------------------------------------

DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}


CLOCKS = ("wall", "cpu")


def _time_once(fn: Callable[[], Any], device: torch.device, clock: str = "wall") -> float:
    """Milliseconds of one call; on CUDA the queue is drained before and after (both are sync points).

    clock "wall" is elapsed time. clock "cpu" is the CPU time of this process: on a CPU shared with other jobs
    it leaves out the time the process waited for a core, which would otherwise inflate long runs (a whole
    network) more than short ones (one op). It equals latency only with one thread; with more it sums them.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    now = time.perf_counter if clock == "wall" else time.process_time
    start = now()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (now() - start) * 1e3


def _summary(samples: list[float]) -> tuple[float, float]:
    """Median and interquartile range relative to the median."""
    median = statistics.median(samples)
    if len(samples) < 4:
        return median, 0.0
    q = statistics.quantiles(samples, n=4)
    return median, (q[2] - q[0]) / median if median > 0 else 0.0


class _ThreadCount:
    """Run a block with `threads` intra-op threads (None: as set), restoring the old count afterwards."""

    def __init__(self, threads: int | None):
        self.threads, self.old = threads, torch.get_num_threads()

    def __enter__(self) -> int:
        if self.threads:
            torch.set_num_threads(self.threads)
        return torch.get_num_threads()

    def __exit__(self, *exc: Any) -> None:
        torch.set_num_threads(self.old)


def _check_timing(device: torch.device, batch: int, warmup: int, repeats: int, clock: str) -> None:
    if batch < 1 or warmup < 0 or repeats < 1:
        raise UsageError(f"need batch >= 1, warmup >= 0 and repeats >= 1; got {batch}, {warmup}, {repeats}")
    if clock not in CLOCKS:
        raise UsageError(f"unknown clock {clock!r}; known: {', '.join(CLOCKS)}")
    if clock == "cpu" and device.type != "cpu":
        raise UsageError("clock 'cpu' times CPU work only; use the wall clock on CUDA")


def measurement_conditions(
    device: torch.device, dtype: torch.dtype, batch: int, warmup: int, repeats: int, clock: str = "wall"
) -> dict:
    from rarts.utils import device_name

    return {
        "device": device.type,
        "device_name": device_name(device),
        "dtype": str(dtype).replace("torch.", ""),
        "batch": batch,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "warmup": warmup,
        "repeats": repeats,
        "clock": clock,
        "mode": "forward, eval mode, inference_mode",
        "statistic": "median",
    }


def part_calls(
    plans: list[NetworkPlan], device: torch.device, dtype: torch.dtype, batch: int, seed: int = 0
) -> dict[str, Callable[[], Any]]:
    """One call per distinct part of the plans: the part's module (eval mode) on random inputs of `batch` images."""
    probes: dict[str, Probe] = {}
    for plan in plans:
        for key in plan.required_keys():
            probes.setdefault(key, plan.probes[key])
    gen = torch.Generator().manual_seed(seed)
    calls: dict[str, Callable[[], Any]] = {}
    for key, probe in probes.items():
        module = probe.build().to(device=device, dtype=dtype).eval()
        inputs = [torch.randn(batch, *s, generator=gen).to(device=device, dtype=dtype) for s in probe.inputs]
        calls[key] = lambda m=module, xs=inputs: m(*xs)
    return calls


def network_calls(
    models: list[nn.Module], image_size: int, device: torch.device, dtype: torch.dtype, batch: int, seed: int = 0
) -> list[Callable[[], Any]]:
    """One call per network: a forward pass (eval mode) on `batch` random images."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, image_size, image_size, generator=gen).to(device=device, dtype=dtype)
    models = [model.to(device=device, dtype=dtype).eval() for model in models]
    return [lambda m=model: m(x) for model in models]


def time_calls(
    calls: dict[Any, Callable[[], Any]],
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    batch: int = 1,
    warmup: int = 5,
    repeats: int = 30,
    threads: int | None = None,
    seed: int = 0,
    clock: str = "wall",
    progress: Callable[[int, int], None] | None = None,
) -> tuple[dict[Any, list[float]], dict[str, Any]]:
    """Milliseconds of each call, `repeats` times, and the conditions (dtype and batch are recorded only).

    Each call runs `warmup` times first. Then the repeats go round-robin over all calls, in a fresh random
    order each round, so that a burst of load from another process spreads over all of them instead of
    inflating a few. Everything runs under inference_mode with `threads` intra-op threads.
    """
    _check_timing(device, batch, warmup, repeats, clock)
    samples: dict[Any, list[float]] = {key: [] for key in calls}
    with _ThreadCount(threads), torch.inference_mode():
        conditions = measurement_conditions(device, dtype, batch, warmup, repeats, clock)
        for call in calls.values():
            for _ in range(warmup):
                call()
        order = list(calls)
        rng = random.Random(seed)
        for r in range(repeats):
            rng.shuffle(order)
            for key in order:
                samples[key].append(_time_once(calls[key], device, clock))
            if progress is not None:
                progress(r + 1, repeats)
    return samples, conditions


def table_from_samples(
    plans: list[NetworkPlan], samples: dict[str, list[float]], conditions: dict[str, Any]
) -> LatencyTable:
    """The table of the plans' parts: the median of each part's samples, and its relative interquartile range."""
    entries, spread = {}, {}
    for plan in plans:
        for key in plan.required_keys():
            entries[key], spread[key] = _summary(samples[key])
    return LatencyTable(entries, conditions, [dict(p.description) for p in plans], spread)


def measure_table(
    plans: list[NetworkPlan],
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    batch: int = 1,
    warmup: int = 5,
    repeats: int = 30,
    threads: int | None = None,
    seed: int = 0,
    clock: str = "wall",
    progress: Callable[[int, int], None] | None = None,
) -> LatencyTable:
    """Time every part of every plan (forward, eval mode, `batch` random images); each entry is a median.

    See `time_calls` for the order of the runs.
    """
    _check_timing(device, batch, warmup, repeats, clock)
    calls = part_calls(plans, device, dtype, batch, seed)
    samples, conditions = time_calls(calls, device, dtype, batch, warmup, repeats, threads, seed, clock, progress)
    return table_from_samples(plans, samples, conditions)


def network_summary(samples: list[float], conditions: dict[str, Any]) -> dict[str, Any]:
    median, spread = _summary(samples)
    return {"median_ms": median, "spread": spread, "min_ms": min(samples), "conditions": conditions}


def measure_networks(
    models: list[nn.Module],
    image_size: int,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    batch: int = 1,
    warmup: int = 5,
    repeats: int = 30,
    threads: int | None = None,
    seed: int = 0,
    clock: str = "wall",
) -> list[dict[str, Any]]:
    """Measured forward latency of whole networks (eval mode, called as `model(x)`), one dict per model.

    Each dict has the median, the interquartile range relative to it, the fastest run and the conditions.
    The repeats go round-robin over the models, as in `time_calls`.
    """
    _check_timing(device, batch, warmup, repeats, clock)
    calls = dict(enumerate(network_calls(models, image_size, device, dtype, batch, seed)))
    samples, conditions = time_calls(calls, device, dtype, batch, warmup, repeats, threads, seed, clock)
    return [network_summary(samples[i], conditions) for i in range(len(models))]


def measure_network(model: nn.Module, image_size: int, device: torch.device, **kwargs: Any) -> dict[str, Any]:
    """Measured forward latency of one network; keyword arguments as in `measure_networks`."""
    return measure_networks([model], image_size, device, **kwargs)[0]


# --- the penalty -------------------------------------------------------------------------------------------------

ArchLike = Union[Architecture, tuple[torch.Tensor, torch.Tensor]]


class LatencyPenalty:
    """Expected latency of the search network under the softmax of alpha, differentiable in alpha.

    `penalty(arch)` is sum over cells, edges and ops of softmax(alpha)[e, o] * latency(o at edge e of the cell),
    a scalar tensor in milliseconds on alpha's device. `arch` is an Architecture, or a pair (normal, reduce) of
    (14, 8) mixing weights, softmax(alpha) already taken (what `Architecture.weights()` returns), not raw alphas.
    The fixed parts (stem, preprocessing, merges, head) do not depend on alpha; they are in `fixed_ms`, and
    `expected_latency_ms` adds them for logging.
    `genotype_latency(genotype)` is the table's estimate for the discrete network of the search network's
    shape; `predict_final(genotype, dataset, C, layers)` that for a final network, if the table covers it.
    """

    def __init__(self, table: LatencyTable, network: SearchNetwork | NetworkPlan, image_size: int | None = None):
        self.table = table
        if isinstance(network, NetworkPlan):
            self.plan = network
        else:
            if image_size is None:
                image_size = _table_image_size(table, network)
            self.plan = plan_network(network, image_size, {"kind": "search", "C": network.C, "image_size": image_size})
        if self.plan.variant != "search":
            raise UsageError("LatencyPenalty needs the plan of a search network, not of a final network")
        table.check_covers(self.plan)
        # (14, 8) per cell type, summed over the cells of that type; `none` stays at zero.
        self.latency_normal = torch.zeros(NUM_EDGES, len(PRIMITIVES), dtype=torch.float64)
        self.latency_reduce = torch.zeros(NUM_EDGES, len(PRIMITIVES), dtype=torch.float64)
        for cell in self.plan.cells:
            target = self.latency_reduce if cell.reduction else self.latency_normal
            for e in range(NUM_EDGES):
                for k, name in enumerate(PRIMITIVES):
                    if name != "none":
                        target[e, k] += table[cell.edge_op_key(e, name)]
        self.fixed_ms = table.total(self.plan.fixed_keys())
        self._final_plans: dict[tuple, NetworkPlan] = {}

    def __call__(self, arch: ArchLike) -> torch.Tensor:
        w_normal, w_reduce = arch.weights() if isinstance(arch, Architecture) else arch
        return (w_normal * self.latency_normal.to(w_normal)).sum() + (w_reduce * self.latency_reduce.to(w_reduce)).sum()

    def expected_latency_ms(self, arch: ArchLike) -> float:
        """The expected latency with the fixed parts, as a float for logs."""
        with torch.no_grad():
            return float(self(arch)) + self.fixed_ms

    def genotype_latency(self, genotype: Genotype) -> float:
        """The table's estimate (ms) of the discrete network of `genotype` at the search network's shape."""
        return self.table.predict(self.plan, genotype)

    def predict_final(
        self, genotype: Genotype, dataset: str = "cifar10", C: int | None = None, layers: int | None = None
    ) -> float:
        """The table's estimate (ms) of the final network of `genotype`; the table must cover that network."""
        key = (dataset, C, layers)
        if key not in self._final_plans:
            self._final_plans[key] = final_plan(dataset, C, layers)
        return self.table.predict(self._final_plans[key], genotype)


def _table_image_size(table: LatencyTable, network: SearchNetwork) -> int:
    """The image size of the table's search network matching `network`'s channels and cells."""
    for desc in table.networks:
        if desc.get("kind") == "search" and desc.get("C") == network.C and desc.get("layers") == network.layers:
            return int(desc["image_size"])
    raise UsageError(
        f"{table.source} covers no search network with C={network.C} and {network.layers} cells; "
        "measure one with `rarts latency measure --network search`"
    )
