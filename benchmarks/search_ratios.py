"""Step-time ratios of the search methods, with the methods' steps interleaved in one process.

    python benchmarks/search_ratios.py --rounds 6 --threads 1 --out benchmarks/search_ratios_cpu.json
    python benchmarks/search_ratios.py --part pairs --rounds 6 --threads 1 --out benchmarks/paired_passes_cpu.json

`rarts bench search` runs each method in its own process, one after the other (or, with --rounds, each several
times in turn), which its peak-memory figures need. On a machine whose speed drifts that still leaves a method's
steps in one stretch of time. Here every method is built once in this process and the rounds step them in turn,
one step each (after one warm-up round; every other round in reverse order), so the drift falls on all methods
alike; the ratios are those of the per-method medians, next to the ratio of their FLOPs (rarts.bench.PASSES).

--part pairs: how much could running RARTS's w and y passes together save? An exact RARTS step (eq. 4) makes
darts1's passes twice over: a weight pass for w and one for y (both at the current alpha, independent of each
other), then an alpha-only pass at the new w and one at the new y. No pass can reuse another's work, so the only
way below 2x darts1's step is to run each pair as one larger computation (w and y stacked along the channels as
grouped convolutions, or side by side). The most that can gain is what a larger batch gains with shared weights:
one pass of one network at batch 2B against two passes at batch B. Timed in turn, as above:

  weight pair   RARTS's update_w and update_y at batch B (two forward + backward passes to weights and inputs)
  weight 2B     update_w at batch 2B (the training and validation batches concatenated)
  alpha pair    RARTS's update_alpha at batch B (two forward + alpha-only backward passes)
  alpha 2B      one forward + alpha-only backward pass of w at batch 2B

A ratio "2B / pair" near 1 means a stacked execution of w and y would run at the speed of the two passes it replaces.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Callable

import torch


def interleave(variants: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Seconds of each variant per round: one warm-up round, then `rounds` rounds that run every variant in turn.

    Odd rounds run the variants in reverse order, so that a steady drift of the machine's speed within a round
    (slowing or speeding up) weighs on the first and the last variant alike over each pair of rounds."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(rounds + 1):
        order = list(variants.items())
        for name, run in order[::-1] if r % 2 else order:
            t0 = time.perf_counter()
            run()
            if r:
                times[name].append(time.perf_counter() - t0)
        print(f"round {r}: " + ", ".join(f"{n} {v[-1]:.2f}s" for n, v in times.items() if v), flush=True)
    return times


def method_ratios(args, device: torch.device) -> list[dict]:
    from rarts.bench import SEARCH_METHODS, BenchSpec, _search_step, step_flops
    from rarts.utils import seed_everything

    methods = args.methods.split(",")
    unknown = [m for m in methods if m not in SEARCH_METHODS]
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; known: {', '.join(SEARCH_METHODS)}")
    steps, mult_adds = {}, 0
    for m in methods:
        seed_everything(0)
        spec = BenchSpec(m, args.batch, args.channels, args.cells, args.image_size, device="cpu")
        steps[m], mult_adds, _ = _search_step(spec, device)
    times = interleave(steps, args.rounds)
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
    return rows


def paired_passes(args, device: torch.device) -> dict:
    from rarts.bench import BenchSpec, search_method
    from rarts.utils import seed_everything

    seed_everything(0)
    spec = BenchSpec("rarts", args.batch, args.channels, args.cells, args.image_size, device="cpu")
    method, train, val = search_method(spec, device)
    both = (torch.cat([train[0], val[0]]), torch.cat([train[1], val[1]]))

    def weight_pair():
        method.update_w(train, val)
        method.update_y(train, val)

    def alpha_double():
        loss, _ = method.loss(method.w, both, method.mixing(), update_stats=False, weight_grads=False)
        method.alpha_gradient(loss)

    variants = {
        "weight pair": weight_pair,
        "weight 2B": lambda: method.update_w(both, both),
        "alpha pair": lambda: method.update_alpha(train, val),
        "alpha 2B": alpha_double,
    }
    times = interleave(variants, args.rounds)
    medians = {name: statistics.median(v) for name, v in times.items()}
    result = {name: {"seconds_median": medians[name], "seconds": times[name]} for name in variants}
    result["weight_ratio_2B_to_pair"] = medians["weight 2B"] / medians["weight pair"]
    result["alpha_ratio_2B_to_pair"] = medians["alpha 2B"] / medians["alpha pair"]
    print(json.dumps(result, indent=2), flush=True)
    return result


def main() -> None:
    from rarts.utils import environment_info

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=("methods", "pairs"), default="methods")
    p.add_argument("--methods", default="darts1,darts2,milenas,rarts,rarts-jacobi", help="--part methods only")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--cells", type=int, default=8)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    results = method_ratios(args, device) if args.part == "methods" else paired_passes(args, device)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            record = {"settings": vars(args), "environment": environment_info(device), "results": results}
            json.dump(record, f, indent=2)


if __name__ == "__main__":
    main()
