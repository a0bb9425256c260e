"""Step-time ratios of the search methods, with the methods' steps interleaved in one process.

    python benchmarks/search_ratios.py --rounds 6 --threads 1 --out benchmarks/search_ratios_cpu.json
    python benchmarks/search_ratios.py --processes --methods darts1,rarts,rarts:serial --rounds 6 --warmup 2 \
        --threads 2 --out benchmarks/search_ratios_cpu.json --note "what the run is"
    python benchmarks/search_ratios.py --part pairs --rounds 6 --threads 1 --out benchmarks/paired_passes_cpu.json

`rarts bench search` runs each method in its own process, one after the other (or, with --rounds, each several
times in turn), which its peak-memory figures need. On a machine whose speed drifts that still leaves a method's
steps in one stretch of time. Here every method is built once in this process and the rounds step them in turn,
one step each (after one warm-up round; every other round in reverse order), so the drift falls on all methods
alike; the ratios are those of the per-method medians, next to the ratio of their FLOPs (each method's `passes`).

--processes: every method in a Python process of its own, as in a real run (one method's allocations and caches
never slow another's), stepped in turn by this one over pipes; each step's time is the one its process measured,
and each process's peak resident set is reported. A method name ending in ":serial" runs its independent
passes one after the other where it would pair them (rarts.fast.paired, with 2+ threads).
--out appends the run, with --note, to the file's list of runs.

--part pairs: how much could running RARTS's w and y passes together save? An exact RARTS step (eq. 4) makes
darts1's passes twice over: a weight pass for w and one for y (both at the current alpha, independent of each
other), then an alpha-only pass at the new w and one at the new y. No pass can reuse another's work, so the ways
below 2x darts1's step are to run each pair at once on separate cores (what rarts.fast.paired does) or as one
larger computation (w and y stacked along the channels as grouped convolutions). The most stacking can gain is what
a larger batch gains with shared weights: one pass of one network at batch 2B against two passes at batch B.
Timed in turn, as above, the pairs one pass after the other:

  weight pair   RARTS's update_wy at batch B (two forward + backward passes to weights and inputs)
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
from pathlib import Path
from typing import Callable

import torch


def interleave(variants: dict[str, Callable[[], object]], rounds: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds of each variant per round: `warmup` rounds, then `rounds` rounds that run every variant in turn.

    Odd rounds run the variants in reverse order, so that a steady drift of the machine's speed within a round
    (slowing or speeding up) weighs on the first and the last variant alike over each pair of rounds. A variant
    that returns a float has timed itself (a step in another process): that float is its time."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(rounds + warmup):
        order = list(variants.items())
        for name, run in order[::-1] if r % 2 else order:
            t0 = time.perf_counter()
            reported = run()
            seconds = reported if isinstance(reported, float) else time.perf_counter() - t0
            if r >= warmup:
                times[name].append(seconds)
        print(f"round {r}: " + ", ".join(f"{n} {v[-1]:.2f}s" for n, v in times.items() if v), flush=True)
    return times


def build_step(m: str, args, device: torch.device):
    """(step, forward mult-adds, paired-pass threads, (weight passes, alpha passes)) of method `m` ("rarts", or
    "rarts:serial" for its passes one after the other where it would pair them) as `rarts bench search` builds it."""
    from rarts.bench import BenchSpec, _search_step
    from rarts.utils import seed_everything

    seed_everything(0)
    spec = BenchSpec(m.removesuffix(":serial"), args.batch, args.channels, args.layers, args.image_size, device="cpu")
    spec.paired_passes = not m.endswith(":serial")
    step, mult_adds, _, paired, passes = _search_step(spec, device)
    return step, mult_adds, paired, passes


class MethodProcess:
    """A method in a Python process of its own (its own allocator and caches, as in a real run), stepped on
    request: calling it runs one step there and returns the seconds that process measured."""

    def __init__(self, m: str, args):
        import subprocess
        import sys

        cmd = [sys.executable, __file__, "--serve", m, "--batch", str(args.batch), "--channels", str(args.channels)]
        cmd += ["--layers", str(args.layers), "--image-size", str(args.image_size), "--threads", str(args.threads)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        ready = json.loads(self._read())
        self.mult_adds, self.paired, self.passes = ready["mult_adds"], ready["paired"], tuple(ready["passes"])

    def _read(self) -> str:
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"a method process ended early (exit code {self.proc.wait()})")
        return line

    def __call__(self) -> float:
        self.proc.stdin.write("step\n")
        return float(self._read())

    def close(self) -> int:
        """Ends the process; returns its peak resident set size in bytes."""
        self.proc.stdin.write("quit\n")
        peak = int(self._read())
        self.proc.wait()
        return peak


def serve(m: str, args) -> None:
    """The other end of MethodProcess: build method `m`, then one step per "step" line, until "quit"."""
    import sys

    from rarts.bench import _max_rss

    step, mult_adds, paired, passes = build_step(m, args, torch.device("cpu"))
    print(json.dumps({"mult_adds": mult_adds, "paired": paired, "passes": passes}), flush=True)
    for line in sys.stdin:
        if line.strip() == "quit":
            break
        t0 = time.perf_counter()
        step()
        print(time.perf_counter() - t0, flush=True)
    print(_max_rss() or 0, flush=True)


def method_ratios(args, device: torch.device) -> list[dict]:
    from rarts.bench import SEARCH_METHODS, step_flops

    methods = args.methods.split(",")
    unknown = [m for m in methods if m.removesuffix(":serial") not in SEARCH_METHODS]
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; known: {', '.join(SEARCH_METHODS)}, each also with :serial")
    steps, mult_adds, paired, passes, peaks = {}, 0, {}, {}, {}
    if args.processes:
        for m in methods:
            steps[m] = MethodProcess(m, args)
            mult_adds, paired[m], passes[m] = steps[m].mult_adds, steps[m].paired, steps[m].passes
    else:
        for m in methods:
            steps[m], mult_adds, paired[m], passes[m] = build_step(m, args, device)
    times = interleave(steps, args.rounds, args.warmup)
    if args.processes:
        peaks = {m: steps[m].close() for m in methods}
    medians = {m: statistics.median(v) for m, v in times.items()}
    rows = []
    for m in methods:
        row = {"method": m, "seconds_median": medians[m], "seconds": times[m], "paired_passes_threads": paired[m]}
        if m in peaks:
            row["peak_memory_bytes"] = peaks[m]
        for ref in ("darts1", "darts2"):
            if ref in medians:
                row[f"vs_{ref}"] = medians[m] / medians[ref]
                flops = step_flops(passes[m], mult_adds, args.batch) / step_flops(passes[ref], mult_adds, args.batch)
                row[f"flops_vs_{ref}"] = flops
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def paired_passes(args, device: torch.device) -> dict:
    from rarts.bench import BenchSpec, search_method
    from rarts.utils import seed_everything

    seed_everything(0)
    spec = BenchSpec("rarts", args.batch, args.channels, args.layers, args.image_size, device="cpu")
    spec.paired_passes = False  # the pairs one pass after the other, against one pass at batch 2B
    method, train, val = search_method(spec, device)
    both = (torch.cat([train[0], val[0]]), torch.cat([train[1], val[1]]))

    def weight_pair():
        method.update_wy(train, val)

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
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=("methods", "pairs"), default="methods")
    p.add_argument("--methods", default="darts1,darts2,milenas,rarts,rarts-jacobi", help="--part methods only")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument(
        "--layers", "--cells", dest="layers", type=int, default=8, help="number of cells (--cells: older name)"
    )
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--warmup", type=int, default=1, help="unmeasured rounds first")
    p.add_argument(
        "--processes", action="store_true", help="--part methods: each method in a process of its own, stepped in turn"
    )
    p.add_argument("--serve", help=argparse.SUPPRESS)  # a MethodProcess's end
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="append the run to this JSON file's list of runs")
    p.add_argument("--note", default="", help="what the run is, stored with it in --out")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.serve:
        serve(args.serve, args)
        return
    if args.processes and args.part != "methods":
        raise SystemExit("--processes is for --part methods")
    device = torch.device("cpu")
    results = method_ratios(args, device) if args.part == "methods" else paired_passes(args, device)
    if args.out:
        append_run(args, results)


def append_run(args, results) -> None:
    """Append a run (its settings: the arguments but --out and --note; the machine; `results`; --note) to the
    list of runs in the JSON file --out, written whole or not at all."""
    from rarts.utils import environment_info, write_json

    out = Path(args.out)
    record = json.loads(out.read_text(encoding="utf-8")) if out.is_file() else {"runs": []}
    if "runs" not in record:  # a file of one run, from before runs were appended
        record = {"runs": [record]}
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "note")}
    env = environment_info(torch.device("cpu"))
    record["runs"].append({"settings": settings, "environment": env, "results": results, "note": args.note})
    write_json(out, record)


if __name__ == "__main__":
    main()
