"""Which speed-ups of the DARTS 1st-order step pay on this device: each one switched on in turn, timed side by side.

    python benchmarks/search_speedups.py --out benchmarks/search_speedups_cpu.json
    python benchmarks/search_speedups.py --channels 8 --layers 5 --image-size 16 --rounds 3     # a quick look

Variants, each adding one change to the one before:
  straightforward   the textbook step: loss.backward() to every parameter in both halves (alpha's step also forms
                    weight gradients it throws away), torch.optim.SGD without foreach, every op applies its own ReLU,
                    default (NCHW) layout
  channels_last     network and inputs in NHWC
  alpha_only        the alpha step asks autograd for alpha's gradient only; the package's WeightSGD and clipping
  shared_relu       the mixed op computes the ReLU of its four convolution ops once
  fast_depthwise    depthwise convolutions with the CPU backward of rarts.fast.depthwise (5 x 5 and dilated
                    ones rewritten onto oneDNN's fast 3 x 3 kernel; stride-2 dilated ones as subsampling)
  lean_memory       less kept for the backward pass: weight x BatchNorm fused with the pools recomputed inside it
                    (rarts.fast.recompute.weighted_norm), the separable convolutions' inner BatchNorm-ReLU
                    recomputed, max pooling without int64 indices: the package's darts1 as `rarts search` runs it

The first three variants run the reference modules (rarts.ops, rarts.supernet); the last three turn on the parts
of rarts.fast.use_fast_paths their descriptions name, as `rarts search` turns all of them on.

Timing: the variants step in turn within each round (so a change in the machine's load hits all of them alike), the
median over rounds after one warm-up round. Peak memory: each variant again in a fresh process, one warm-up and one
step, its peak resident set size (VmHWM, CPU) or torch.cuda.max_memory_allocated (CUDA).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

VARIANTS = ("straightforward", "channels_last", "alpha_only", "shared_relu", "fast_depthwise", "lean_memory")
# The parts of rarts.fast.use_fast_paths each variant turns on (the others run the reference modules)
FAST_PATHS = {
    "shared_relu": ["shared_relu"],
    "fast_depthwise": ["shared_relu", "depthwise"],
    "lean_memory": ["shared_relu", "depthwise", "lean_memory"],
}


def build(variant: str, args, device):
    """A step function for `variant` on fresh networks and fixed synthetic batches."""
    from rarts.fast import use_fast_paths
    from rarts.search import METHODS, MethodSettings
    from rarts.supernet import Architecture, SearchNetwork

    torch.manual_seed(0)
    layout = torch.contiguous_format if variant == "straightforward" else torch.channels_last
    net = SearchNetwork(args.channels, 10, args.layers).to(device).to(memory_format=layout)
    if variant in FAST_PATHS:
        use_fast_paths(net, FAST_PATHS[variant])
    arch = Architecture().to(device)

    def batch():
        x = torch.randn(args.batch, 3, args.image_size, args.image_size, device=device)
        return x.contiguous(memory_format=layout), torch.randint(0, 10, (args.batch,), device=device)

    train, val = batch(), batch()
    if variant in ("straightforward", "channels_last"):
        w_opt = torch.optim.SGD(net.parameters(), 0.025, momentum=0.9, weight_decay=3e-4, foreach=False)
        a_opt = torch.optim.Adam(arch.parameters(), 3e-4, betas=(0.5, 0.999), weight_decay=1e-3)

        def step():
            a_opt.zero_grad()
            F.cross_entropy(net(val[0], arch), val[1]).backward()
            a_opt.step()
            w_opt.zero_grad()
            net.zero_grad()
            F.cross_entropy(net(train[0], arch.weights()), train[1]).backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0, foreach=False)
            w_opt.step()

        return step
    method = METHODS["darts1"](net, arch, MethodSettings())
    return lambda: method.step(train, val)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def memory_of(variant: str, args) -> int:
    """Peak memory of one warm-up and one step of `variant`, in a fresh process."""
    argv = [sys.executable, __file__, "--memory-of", variant] + [
        f"--{k.replace('_', '-')}={getattr(args, k)}" for k in ("channels", "layers", "image_size", "batch", "device")
    ]
    if args.threads:
        argv.append(f"--threads={args.threads}")
    out = subprocess.run(argv, capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--channels", type=int, default=16)
    p.add_argument(
        "--layers", "--cells", dest="layers", type=int, default=8, help="number of cells (--cells: older name)"
    )
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--no-memory", dest="memory", action="store_false")
    p.add_argument("--memory-only", action="store_true", help="only the peak memory of each variant")
    p.add_argument("--memory-of", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default=None)
    args = p.parse_args()

    from rarts.utils import environment_info, pick_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    if args.memory_of:
        step = build(args.memory_of, args, device)
        step()
        step()
        sync(device)
        if device.type == "cuda":
            print(torch.cuda.max_memory_allocated(device))
        else:
            from rarts.bench import _max_rss

            print(_max_rss())
        return

    variants = args.variants.split(",")
    if args.memory_only:
        for v in variants:
            print(json.dumps({"variant": v, "peak_memory_bytes": memory_of(v, args)}), flush=True)
        return
    steps = {v: build(v, args, device) for v in variants}
    times: dict[str, list[float]] = {v: [] for v in variants}
    for r in range(args.rounds + 1):
        for v in variants:
            sync(device)
            t0 = time.perf_counter()
            steps[v]()
            sync(device)
            if r:
                times[v].append(time.perf_counter() - t0)
        print(f"round {r}: " + ", ".join(f"{v} {times[v][-1]:.2f}s" for v in variants if times[v]), flush=True)
    del steps
    rows = []
    base = statistics.median(times[variants[0]])
    for v in variants:
        median = statistics.median(times[v])
        row = {"variant": v, "seconds_median": median, "seconds": times[v], "speedup_vs_first": base / median}
        if args.memory:
            row["peak_memory_bytes"] = memory_of(v, args)
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        out = {"settings": vars(args), "environment": environment_info(device), "results": rows}
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
