"""What running two passes at once costs on this CPU: why the paired RARTS step sits near 1.8x darts1's.

    python benchmarks/core_sharing.py --rounds 6 --out benchmarks/core_sharing_cpu.json

An exact RARTS step does twice darts1's arithmetic. darts1 runs each of its passes on all the torch threads
(intra-op parallelism); RARTS with `paired_passes` runs its pairs of independent passes side by side, one thread
each (rarts.fast.paired). Its step over darts1's is therefore about

    (pair of weight passes + pair of alpha passes) / (weight pass on 2 threads + alpha pass on 2 threads)

and each term is timed here, on the paper's search network (the passes RARTS's step makes: `weight_pass` and
`alpha_pass` of w and y), together with two kernels that show where the cores stop being independent:

  matmul       a 512 x 512 fp32 matmul (compute-bound): one alone, then one on each worker at once
  add          an elementwise add of 2 MB tensors (memory-bound, as the search network's ops mostly are)

Every variant is timed in turn within each round (every other round in reverse), so a drift of the machine's
speed falls on all alike; the figures are medians over the rounds. "slowdown" is a pair's wall time over the same
work alone on one thread (1.00: the two cores do not get in each other's way); "speed-up" is one thread's time
over two intra-op threads'.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search_ratios import append_run, interleave  # noqa: E402  (the same rounds and files as the ratio benchmark)


def kernel_variants(runner, reps: int) -> dict:
    a, b = torch.randn(512, 512), torch.randn(512, 512)
    x, y = torch.randn(2**19), torch.randn(2**19)  # 2 MB each
    z1, z2 = torch.empty_like(x), torch.empty_like(x)

    def matmul():
        for _ in range(reps):
            torch.mm(a, b)

    def add(out):
        def run():
            for _ in range(reps * 20):
                torch.add(x, y, out=out)

        return run

    return {
        "matmul alone": lambda: runner.run(matmul, lambda: None),
        "matmul pair": lambda: runner.run(matmul, matmul),
        "add alone": lambda: runner.run(add(z1), lambda: None),
        "add pair": lambda: runner.run(add(z1), add(z2)),
    }


def pass_variants(method, runner, train, val) -> dict:
    def on_threads(n, fn):
        def run():
            torch.set_num_threads(n)
            fn()

        return run

    weight_w = lambda: method.weight_pass("w", train)  # noqa: E731
    weight_y = lambda: method.weight_pass("y", val)  # noqa: E731
    alpha_w = lambda: method.alpha_pass(method.w, train)  # noqa: E731
    alpha_y = lambda: method.alpha_pass(method.y, val)  # noqa: E731
    return {
        "weight pass, 1 thread": on_threads(1, weight_w),
        "weight pass, 2 threads": on_threads(2, weight_w),
        "weight pair": lambda: runner.run(weight_w, weight_y),
        "alpha pass, 1 thread": on_threads(1, alpha_w),
        "alpha pass, 2 threads": on_threads(2, alpha_w),
        "alpha pair": lambda: runner.run(alpha_w, alpha_y),
    }


def main() -> None:
    from rarts.bench import BenchSpec, search_method
    from rarts.utils import seed_everything

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument(
        "--layers", "--cells", dest="layers", type=int, default=8, help="number of cells (--cells: older name)"
    )
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--reps", type=int, default=200, help="matmuls per kernel variant (adds: 20 times as many)")
    p.add_argument("--out", default=None, help="append the run to this JSON file's list of runs")
    p.add_argument("--note", default="")
    args = p.parse_args()

    torch.set_num_threads(2)
    seed_everything(0)
    spec = BenchSpec("rarts", args.batch, args.channels, args.layers, args.image_size, device="cpu")
    method, train, val = search_method(spec, torch.device("cpu"))  # pairs its passes: two workers, 1 thread each
    runner = method.executor
    if not runner.at_once or runner.threads != (1, 1):
        got = getattr(runner, "threads", None)
        raise SystemExit(f"needs a CPU with 2 torch threads for the pair (got workers {got})")
    seen = runner.run(torch.get_num_threads, torch.get_num_threads)
    if seen != (1, 1):
        raise SystemExit(f"the workers run with {seen} torch threads, not 1 each")

    variants = {**kernel_variants(runner, args.reps), **pass_variants(method, runner, train, val)}
    times = interleave(variants, args.rounds, args.warmup)
    torch.set_num_threads(2)
    med = {name: statistics.median(v) for name, v in times.items()}
    derived = {
        "matmul_pair_slowdown": med["matmul pair"] / med["matmul alone"],
        "add_pair_slowdown": med["add pair"] / med["add alone"],
        "weight_pair_slowdown": med["weight pair"] / med["weight pass, 1 thread"],
        "alpha_pair_slowdown": med["alpha pair"] / med["alpha pass, 1 thread"],
        "weight_two_thread_speedup": med["weight pass, 1 thread"] / med["weight pass, 2 threads"],
        "alpha_two_thread_speedup": med["alpha pass, 1 thread"] / med["alpha pass, 2 threads"],
        # the paired RARTS step's passes over darts1's (each step's small serial parts left out)
        "passes_ratio_rarts_paired_to_darts1": (med["weight pair"] + med["alpha pair"])
        / (med["weight pass, 2 threads"] + med["alpha pass, 2 threads"]),
    }
    result = {"seconds_median": med, "seconds": times, **derived}
    for name, value in med.items():
        print(f"{name:24s} {value:8.3f} s")
    for name, value in derived.items():
        print(f"{name:40s} {value:6.2f}")
    if args.out:
        append_run(args, result)


if __name__ == "__main__":
    main()
