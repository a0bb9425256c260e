"""Speed and memory of one search step of every method, and of one training step of a final network.

    result = bench(["darts1", "rarts"], batches=[32], device=torch.device("cpu"))
    print(format_report(result))

What is measured, per (method, batch):
- seconds per step: `steps` steps after `warmup` unmeasured ones, on synthetic batches (normal images, uniform
  labels; the cost of a step does not depend on the pixel values); median, min and max. On CUDA the clock is read
  after a synchronisation.
- peak memory: on CUDA torch.cuda.max_memory_allocated; on the CPU the peak resident set size (VmHWM) of a
  fresh Python process that runs nothing but this one measurement (`isolate=True`, the default there), so one
  method's allocations never count against another's. The process's baseline (torch, the networks, the batches)
  is reported beside it.
- FLOPs of one step, by formula from the passes the method makes (its `passes`, which tests check against the
  forward passes a step makes): a forward pass costs F = 2 x mult-adds (convolutions and linear layers,
  rarts.flops, depthwise convolutions counted per group), a backward pass to weights and inputs 2F, a backward pass
  to alpha only F (input gradients, no weight gradients). torch's FlopCounterMode is not used: it counts the
  backward of depthwise convolutions `groups` times too high.
- achieved GFLOP/s and its fraction of the fp32 matmul peak measured in the same run (`matmul_peak`).

Networks run with the fast paths on (rarts.fast.use_fast_paths) and the pairs of passes paired, as `rarts search`
and `rarts train` run them.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Optional

import torch

from rarts.errors import UsageError
from rarts.search import METHODS

# Every method at its default sweep by its name, at another sweep as "name-sweep" (rarts-jacobi).
SEARCH_METHODS = tuple(
    name if sweep == cls.sweeps[0] else f"{name}-{sweep}" for name, cls in METHODS.items() for sweep in cls.sweeps
)
TRAIN_NAME = "train"  # the row of a training step of a final network
TRAIN_PASSES = (1, 0)  # a training step: one forward and one backward to the weights and inputs


@dataclass
class BenchSpec:
    """One measurement: a search method's step (or, with method="train", a final network's training step)."""

    method: str = "darts1"
    batch: int = 32
    channels: int = 16
    layers: int = 8
    image_size: int = 32
    steps: int = 3
    warmup: int = 1
    device: str = "cpu"
    channels_last: bool = True
    threads: Optional[int] = None
    paired_passes: bool = True  # rarts, milenas on the CPU with 2+ threads: independent passes at once (fast.paired)
    seed: int = 0
    genotype: str = "DARTS_V2"  # the final network of method="train"

    def validate(self) -> None:
        if self.method not in SEARCH_METHODS and self.method != TRAIN_NAME:
            raise UsageError(f"--methods: unknown method {self.method!r}; known: {', '.join(SEARCH_METHODS)}")
        for name in ("batch", "channels", "layers", "steps"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name}: must be at least 1, got {getattr(self, name)}")
        if self.warmup < 0:
            raise UsageError(f"--warmup: must not be negative, got {self.warmup}")
        if self.image_size < 8:
            raise UsageError(f"--image-size: must be at least 8, got {self.image_size}")
        if self.method == TRAIN_NAME and self.layers < 3:
            raise UsageError(f"--layers: a final network needs at least 3 cells, got {self.layers}")


@dataclass
class Measurement:
    spec: BenchSpec
    seconds: list[float] = field(default_factory=list)
    peak_memory_bytes: Optional[int] = None
    baseline_memory_bytes: Optional[int] = None
    forward_mult_adds: int = 0  # per image
    parameters: int = 0
    paired_threads: Optional[list[int]] = None  # torch threads of the two workers running a method's pairs of passes
    passes: tuple[int, int] = TRAIN_PASSES  # (weight passes, alpha passes) of one step


# ---- the matmul peak ----------------------------------------------------------------------------------------------


def matmul_peak(device: torch.device, n: int = 2048, repeats: int = 7) -> float:
    """The best fp32 GFLOP/s of an n x n matmul over `repeats` timed runs (after one warm-up) on `device`."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    c = torch.empty(n, n, device=device)
    best = float("inf")
    for i in range(repeats + 1):
        _sync(device)
        t0 = time.perf_counter()
        torch.mm(a, b, out=c)
        _sync(device)
        if i:
            best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---- one measurement in this process ------------------------------------------------------------------------------


def _batch(spec: BenchSpec, device: torch.device, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(spec.batch, 3, spec.image_size, spec.image_size, device=device)
    if spec.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, torch.randint(0, classes, (spec.batch,), device=device)


def search_method(spec: BenchSpec, device: torch.device):
    """The search method `spec` names on the paper's search network as the benchmark builds it (channels_last as
    the spec says), started at epoch 0, with a synthetic training and validation batch: (method, train, val)."""
    from rarts.fast import paired, use_fast_paths
    from rarts.search import MethodSettings
    from rarts.supernet import Architecture, SearchNetwork

    net = SearchNetwork(spec.channels, 10, spec.layers).to(device)
    if spec.channels_last:
        net = net.to(memory_format=torch.channels_last)
    use_fast_paths(net)  # as `rarts search` does
    arch = Architecture().to(device)
    name, _, sweep = spec.method.partition("-")
    settings = MethodSettings(sweep=sweep) if sweep else MethodSettings()
    method = METHODS[name](net, arch, settings)
    paired.pair(method, device, spec.paired_passes)  # as `rarts search` does
    method.start_epoch(0)
    return method, _batch(spec, device, 10), _batch(spec, device, 10)


def _search_step(spec: BenchSpec, device: torch.device):
    from rarts.flops import count_mult_adds

    method, train, val = search_method(spec, device)
    net = method.w
    mult_adds = count_mult_adds(net, (3, spec.image_size, spec.image_size), method.arch.weights())
    params = sum(p.numel() for p in net.parameters())
    paired_threads = list(method.executor.threads) if method.executor.at_once else None
    passes = (method.passes.weight, method.passes.alpha)
    return (lambda: method.step(train, val)), mult_adds, params, paired_threads, passes


def _train_step(spec: BenchSpec, device: torch.device):
    """One training step of the final network as DARTS trains it: cross-entropy plus 0.4 x the auxiliary head's
    (32 x 32 inputs only), drop-path 0.2, SGD with momentum 0.9 and weight decay 3e-4, gradient clipping at norm 5.
    The auxiliary head's few mult-adds are left out of the FLOP count."""
    import torch.nn.functional as F

    from rarts.fast import use_fast_paths
    from rarts.flops import count_mult_adds
    from rarts.genotype import load_genotype
    from rarts.network import build_network, count_params

    # The auxiliary head is built for the 8 x 8 maps that 32 x 32 images give at two thirds of the depth.
    auxiliary = spec.image_size == 32
    model = build_network(load_genotype(spec.genotype), "cifar10", spec.channels, spec.layers, auxiliary=auxiliary)
    model = model.to(device)
    if spec.channels_last:
        model = model.to(memory_format=torch.channels_last)
    use_fast_paths(model)  # as `rarts train` does
    model.drop_path_prob = 0.2
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4, foreach=True)
    mult_adds = count_mult_adds(model, (3, spec.image_size, spec.image_size))
    x, target = _batch(spec, device, 10)

    def step():
        logits, logits_aux = model(x)
        loss = F.cross_entropy(logits, target)
        if logits_aux is not None:
            loss = loss + 0.4 * F.cross_entropy(logits_aux, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0, foreach=True)
        optimizer.step()
        return loss.detach()

    return step, mult_adds, count_params(model), None, TRAIN_PASSES


def measure(spec: BenchSpec) -> Measurement:
    """Time `spec` in this process; peak memory only on CUDA (see `measure_isolated` for the CPU)."""
    from rarts.utils import pick_device, seed_everything

    spec.validate()
    if spec.threads:
        torch.set_num_threads(spec.threads)
    device = pick_device(spec.device)
    seed_everything(spec.seed)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    build = _train_step if spec.method == TRAIN_NAME else _search_step
    step, mult_adds, params, paired_threads, passes = build(spec, device)
    out = Measurement(
        spec, forward_mult_adds=mult_adds, parameters=params, paired_threads=paired_threads, passes=passes
    )
    out.baseline_memory_bytes = torch.cuda.memory_allocated(device) if device.type == "cuda" else _max_rss()
    for i in range(spec.warmup + spec.steps):
        _sync(device)
        t0 = time.perf_counter()
        step()
        _sync(device)
        if i >= spec.warmup:
            out.seconds.append(time.perf_counter() - t0)
    if device.type == "cuda":
        out.peak_memory_bytes = torch.cuda.max_memory_allocated(device)
    return out


def _pooled(a: Measurement, b: Measurement) -> Measurement:
    """Two measurements of one spec as one: all their steps, the larger peak and baseline memory."""

    def larger(x: Optional[int], y: Optional[int]) -> Optional[int]:
        return None if x is None and y is None else max(v for v in (x, y) if v is not None)

    return Measurement(
        spec=a.spec,
        seconds=a.seconds + b.seconds,
        peak_memory_bytes=larger(a.peak_memory_bytes, b.peak_memory_bytes),
        baseline_memory_bytes=larger(a.baseline_memory_bytes, b.baseline_memory_bytes),
        forward_mult_adds=a.forward_mult_adds,
        parameters=a.parameters,
        paired_threads=a.paired_threads,
        passes=a.passes,
    )


def _max_rss() -> Optional[int]:
    """Peak resident set size of this process in bytes, None where unknown.

    Linux's VmHWM belongs to the process's own address space; ru_maxrss (the fallback) carries the parent's peak
    over fork and exec, so a child started by a large parent would report the parent's figure.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import resource
    except ImportError:
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


def measure_isolated(spec: BenchSpec, timeout: float = 3600.0) -> Measurement:
    """`measure` in a fresh Python process, so its peak resident set size belongs to this measurement alone."""
    spec.validate()
    cmd = [sys.executable, "-m", "rarts.bench", json.dumps(asdict(spec))]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=dict(os.environ))
    if proc.returncode != 0:
        from rarts.errors import RunFailed

        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        raise RunFailed(f"benchmark of {spec.method} at batch {spec.batch} failed: {tail[0]}")
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    row.pop("spec")
    row["passes"] = tuple(row["passes"])
    return Measurement(spec=spec, **row)


def _worker(spec_json: str) -> None:
    m = measure(BenchSpec(**json.loads(spec_json)))
    if m.peak_memory_bytes is None:
        m.peak_memory_bytes = _max_rss()
    print(json.dumps(asdict(m)))


# ---- FLOPs and the report -----------------------------------------------------------------------------------------


def step_flops(passes: tuple[int, int], forward_mult_adds: int, batch: int) -> float:
    """FLOPs of one step of (weight passes, alpha passes): F = 2 x mult-adds x batch per forward; a weight pass
    (a training step's one among them) 3F, an alpha pass 2F."""
    forward = 2.0 * forward_mult_adds * batch
    weight_passes, alpha_passes = passes
    return forward * (3.0 * weight_passes + 2.0 * alpha_passes)


def summarise(m: Measurement, peak_gflops: float) -> dict:
    """The JSON row of one measurement."""
    median = statistics.median(m.seconds)
    flops = step_flops(m.passes, m.forward_mult_adds, m.spec.batch)
    return {
        "method": m.spec.method,
        "batch": m.spec.batch,
        "seconds_per_step": {"median": median, "min": min(m.seconds), "max": max(m.seconds), "all": m.seconds},
        "images_per_second": m.spec.batch / median,
        "peak_memory_bytes": m.peak_memory_bytes,
        "baseline_memory_bytes": m.baseline_memory_bytes,
        "gflops_per_step": flops / 1e9,
        "achieved_gflops_per_second": flops / 1e9 / median,
        "achieved_fraction_of_matmul_peak": flops / 1e9 / median / peak_gflops,
        "forward_mult_adds_per_image": m.forward_mult_adds,
        "parameters": m.parameters,
        "paired_passes_threads": m.paired_threads,
    }


def ratios(rows: list[dict]) -> list[dict]:
    """Each search method's median step over darts1's and darts2's at the same batch (None where absent)."""
    medians = {(r["method"], r["batch"]): r["seconds_per_step"]["median"] for r in rows}
    out = []
    for r in rows:
        if r["method"] == TRAIN_NAME:
            continue
        row = {"method": r["method"], "batch": r["batch"]}
        for ref in ("darts1", "darts2"):
            base = medians.get((ref, r["batch"]))
            row[f"vs_{ref}"] = r["seconds_per_step"]["median"] / base if base else None
        out.append(row)
    return out


def bench(
    methods: list[str],
    batches: list[int],
    device: torch.device,
    channels: int = 16,
    layers: int = 8,
    image_size: int = 32,
    steps: int = 3,
    warmup: int = 1,
    rounds: int = 1,
    channels_last: Optional[bool] = None,
    threads: Optional[int] = None,
    paired_passes: bool = True,
    isolate: Optional[bool] = None,
    train_channels: int = 36,
    train_layers: int = 20,
    genotype: str = "DARTS_V2",
    progress=None,
) -> dict:
    """Measure every (method, batch) pair; "train" in `methods` is a training step of the final network `genotype`
    at train_channels and train_layers. The matmul peak is measured before and after; the larger one is the peak.

    channels_last: None turns it on (it pays on the CPU and on recent GPUs). isolate: None isolates on the CPU.
    rounds: measure every (method, batch) this many times, the methods in turn within each round, and pool the
        measured steps (the median is over all of them; peak memory is the largest): a slow spell of a shared
        machine then falls on all methods alike instead of on whichever ran during it.
    """
    from rarts.utils import device_name, environment_info

    if threads:
        torch.set_num_threads(threads)
    channels_last = True if channels_last is None else channels_last
    isolate = device.type == "cpu" if isolate is None else isolate
    specs = []
    for batch in batches:
        for method in methods:
            train = method == TRAIN_NAME
            specs.append(
                BenchSpec(
                    method=method,
                    batch=batch,
                    channels=train_channels if train else channels,
                    layers=train_layers if train else layers,
                    image_size=image_size,
                    steps=steps,
                    warmup=warmup,
                    device=str(device),
                    channels_last=channels_last,
                    threads=threads or torch.get_num_threads(),
                    paired_passes=paired_passes,
                    genotype=genotype,
                )
            )
    if rounds < 1:
        raise UsageError(f"--rounds: must be at least 1, got {rounds}")
    for spec in specs:
        spec.validate()
    if TRAIN_NAME in methods:
        from rarts.genotype import load_genotype

        load_genotype(genotype)  # a bad name fails here, before anything is measured
    peaks = [matmul_peak(device)]
    rows: list[Measurement] = []
    for r in range(rounds):
        for i, spec in enumerate(specs):
            m = measure_isolated(spec) if isolate else measure(spec)
            if r == 0:
                rows.append(m)
            else:
                rows[i] = _pooled(rows[i], m)
            if progress is not None:
                where = f" (round {r + 1}/{rounds})" if rounds > 1 else ""
                progress(f"{spec.method} batch {spec.batch}{where}: median {statistics.median(m.seconds):.3f} s/step")
    peaks.append(matmul_peak(device))
    peak = max(peaks)
    summary = [summarise(m, peak) for m in rows]
    return {
        "device": device_name(device),
        "matmul_peak_gflops": peak,
        "matmul_peak_runs_gflops": peaks,
        "settings": {
            "channels": channels,
            "layers": layers,
            "image_size": image_size,
            "steps": steps,
            "warmup": warmup,
            "rounds": rounds,
            "channels_last": channels_last,
            "threads": threads or torch.get_num_threads(),
            "paired_passes": paired_passes,
            "isolated_processes": isolate,
            "train_network": {"genotype": genotype, "channels": train_channels, "layers": train_layers},
        },
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "environment": environment_info(device),
        "results": summary,
        "ratios": ratios(summary),
    }


def _gb(value: Optional[int]) -> str:
    return "-" if value is None else f"{value / 1e9:.2f}"


def format_report(result: dict) -> str:
    """The figures table and the ratio table, as Markdown."""
    lines = [
        f"device: {result['device']}; fp32 matmul peak {result['matmul_peak_gflops']:.1f} GFLOP/s",
        "",
        "| method | batch | s/step median (min-max) | images/s | peak memory GB | GFLOP/step | GFLOP/s | of peak |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["results"]:
        s = r["seconds_per_step"]
        pairs = r.get("paired_passes_threads")
        method = r["method"] + (f" (paired passes, {pairs[0]}+{pairs[1]} threads)" if pairs else "")
        lines.append(
            f"| {method} | {r['batch']} | {s['median']:.3f} ({s['min']:.3f}-{s['max']:.3f}) "
            f"| {r['images_per_second']:.1f} | {_gb(r['peak_memory_bytes'])} | {r['gflops_per_step']:.1f} "
            f"| {r['achieved_gflops_per_second']:.1f} | {100 * r['achieved_fraction_of_matmul_peak']:.1f}% |"
        )
    if result["ratios"]:
        lines += ["", "| method | batch | step / darts1 | step / darts2 |", "|---|---|---|---|"]
        for r in result["ratios"]:
            cells = ["-" if r[k] is None else f"{r[k]:.2f}" for k in ("vs_darts1", "vs_darts2")]
            lines.append(f"| {r['method']} | {r['batch']} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


if __name__ == "__main__":
    _worker(sys.argv[1])
