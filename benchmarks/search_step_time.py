"""Seconds per search step and peak memory of every search method, on one device, at one network size.

    python benchmarks/search_step_time.py --device cuda --out search_step_time.json
    python benchmarks/search_step_time.py --device cpu --channels 8 --layers 5 --image-size 16 --batch-size 32

Each method steps on real images of the bundled CIFAR-10 subset (both halves of a search split), after warm-up
steps; CUDA timings synchronise before reading the clock. The paper-preset estimate multiplies the measured step
time by the paper's step count (50 epochs of 391 steps: 25,000 images per half at batch 64); it leaves out the
per-epoch evaluation of the validation half (forward passes only).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--methods", default="darts1,darts2,milenas,rarts,random")
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--out", default=None)
    args = p.parse_args()

    from rarts.search.base import METHODS, MethodSettings
    from rarts.search.config import SearchConfig
    from rarts.search.loop import prepare_data
    from rarts.supernet import Architecture, SearchNetwork
    from rarts.utils import device_name, environment_info, pick_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    cfg = SearchConfig(
        dataset="cifar10-mini",
        image_size=args.image_size,
        batch_size=args.batch_size,
        channels_last=args.channels_last,
        device=str(device),
    )
    data = prepare_data(cfg, device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    results = []
    for name in args.methods.split(","):
        torch.manual_seed(0)
        net = SearchNetwork(args.channels, 10, args.layers).to(device)
        if args.channels_last:
            net = net.to(memory_format=torch.channels_last)
        method = METHODS[name](net, Architecture().to(device), MethodSettings())
        method.start_epoch(0)
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        times = []
        for i in range(args.warmup + args.steps):
            batches = data.train.next_batch(), data.val.next_batch()
            sync()
            t0 = time.perf_counter()
            method.step(*batches)
            sync()
            if i >= args.warmup:
                times.append(time.perf_counter() - t0)
        row = {
            "method": name,
            "seconds_per_step": statistics.mean(times),
            "std": statistics.stdev(times) if len(times) > 1 else 0.0,
            "paper_preset_search_days": statistics.mean(times) * 391 * 50 / 86400,
        }
        if device.type == "cuda":
            row["peak_memory_bytes"] = torch.cuda.max_memory_allocated(device)
        results.append(row)
        print(json.dumps(row), flush=True)
        del method, net
    out = {
        "device": device_name(device),
        "settings": {k: getattr(args, k) for k in ("channels", "layers", "image_size", "batch_size", "steps")},
        "environment": environment_info(device),
        "results": results,
    }
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
