"""Timing: each part of the plans, or each whole network, run forward in eval mode on random inputs.

Every entry is a median over repeats that go round-robin over all parts in a fresh random order each round, so a
burst of load from another process spreads over all of them instead of inflating a few.
"""

from __future__ import annotations

import random
import statistics
import time
from typing import Any, Callable

import torch
from torch import nn

from rarts.errors import UsageError
from rarts.latency.plan import NetworkPlan, Probe
from rarts.latency.table import LatencyTable
from rarts.utils import device_name

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
