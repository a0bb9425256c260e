"""Step-time ratios of the search methods, with the methods' steps interleaved in one process.

    python benchmarks/search_ratios.py --rounds 6 --threads 1 --out benchmarks/search_ratios_cpu.json

`rarts bench search` runs each method in its own process, one after the other (or, with --rounds, each several
times in turn), which its peak-memory figures need. On a machine whose speed drifts that still leaves a method's
steps in one stretch of time. Here every method is built once in this process and the rounds step them in turn,
one step each (after one warm-up round), so the drift falls on all methods alike; the ratios are those of the
per-method medians, next to the ratio of their FLOPs (rarts.bench.PASSES).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch


def main() -> None:
    from rarts.bench import SEARCH_METHODS, BenchSpec, _search_step, step_flops
    from rarts.utils import environment_info, seed_everything

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", default="darts1,darts2,milenas,rarts,rarts-jacobi")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--cells", type=int, default=8)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    methods = args.methods.split(",")
    unknown = [m for m in methods if m not in SEARCH_METHODS]
    if unknown:
        p.error(f"unknown methods {unknown}; known: {', '.join(SEARCH_METHODS)}")
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    steps, mult_adds = {}, 0
    for m in methods:
        seed_everything(0)
        spec = BenchSpec(m, args.batch, args.channels, args.cells, args.image_size, device="cpu")
        steps[m], mult_adds, _ = _search_step(spec, device)
    times: dict[str, list[float]] = {m: [] for m in methods}
    for r in range(args.rounds + 1):
        for m in methods:
            t0 = time.perf_counter()
            steps[m]()
            if r:
                times[m].append(time.perf_counter() - t0)
        print(f"round {r}: " + ", ".join(f"{m} {times[m][-1]:.2f}s" for m in methods if times[m]), flush=True)
    medians = {m: statistics.median(v) for m, v in times.items()}
    rows = []
    for m in methods:
        row = {"method": m, "seconds_median": medians[m], "seconds": times[m]}
        for ref in ("darts1", "darts2"):
            if ref in medians:
                row[f"vs_{ref}"] = medians[m] / medians[ref]
                flops = step_flops(m, mult_adds, args.batch) / step_flops(ref, mult_adds, args.batch)
                row[f"flops_vs_{ref}"] = flops
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump({"settings": vars(args), "environment": environment_info(device), "results": rows}, f, indent=2)


if __name__ == "__main__":
    main()
