"""Does the latency table predict real networks? And does the latency weight buy faster cells?

    python benchmarks/latency_validation.py --out benchmarks/latency_validation.json
    python benchmarks/latency_validation.py --part genotypes --genotypes 30 --threads 2
    python benchmarks/latency_validation.py --part search --weight 0.05

Part `genotypes`: measures a genotype-agnostic table for the final network (--dataset, --channels, --layers),
then `--genotypes` random genotypes' final networks as whole forward passes, and compares the table's
prediction with the measurement: Spearman rank correlation, and the spread of measured / predicted.
Part `search`: measures a table for the search network of `--preset`, runs `rarts search` on that preset twice
with the same seed, with latency weight 0 and `--weight`, and measures the final networks of the two derived
genotypes. Prints the results and writes them as JSON with --out.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from rarts.genotype import DEFAULT_CONCAT, Genotype, load_genotype
from rarts.latency import (
    LatencyTable,
    dataset_shape,
    final_plan,
    measure_networks,
    network_calls,
    network_summary,
    part_calls,
    table_from_samples,
    time_calls,
)
from rarts.network import build_network
from rarts.ops import PRIMITIVES
from rarts.utils import environment_info, pick_device

OPS = [name for name in PRIMITIVES if name != "none"]


def random_genotype(rng: random.Random) -> Genotype:
    """Each node takes two distinct earlier states, each through a uniformly drawn non-none op."""

    def gene() -> tuple:
        pairs = []
        for node in range(4):
            for j in sorted(rng.sample(range(node + 2), 2)):
                pairs.append((rng.choice(OPS), j))
        return tuple(pairs)

    return Genotype(gene(), DEFAULT_CONCAT, gene(), DEFAULT_CONCAT)


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation (no ties expected among millisecond timings)."""
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    return float(np.corrcoef(ra, rb)[0, 1])


def timing(args: argparse.Namespace) -> dict:
    return {
        "batch": args.batch,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "threads": args.threads,
        "clock": args.clock,
    }


def part_genotypes(args: argparse.Namespace, device: torch.device) -> dict:
    """The table's parts and the random genotypes' networks are timed in the same round-robin rounds, so that
    a change of load on a shared machine falls on both alike."""
    rng = random.Random(args.seed)
    genotypes = [random_genotype(rng) for _ in range(args.genotypes)]
    plan = final_plan(args.dataset, args.channels, args.layers)
    image_size, _ = dataset_shape(args.dataset)
    dtype = torch.float32
    calls = part_calls([plan], device, dtype, args.batch, args.seed)
    models = [build_network(g, args.dataset, args.channels, args.layers, auxiliary=False) for g in genotypes]
    for i, call in enumerate(network_calls(models, image_size, device, dtype, args.batch, args.seed)):
        calls[f"network{i}"] = call
    start = time.perf_counter()
    samples, conditions = time_calls(calls, device, dtype, **timing(args), seed=args.seed)
    seconds = time.perf_counter() - start
    table = table_from_samples([plan], samples, conditions)
    predicted = [table.predict(plan, g) for g in genotypes]
    measured = [network_summary(samples[f"network{i}"], conditions) for i in range(len(genotypes))]
    ms = [m["median_ms"] for m in measured]
    ratio = [m / p for m, p in zip(ms, predicted)]
    return {
        "network": plan.description,
        "genotypes": args.genotypes,
        "conditions": conditions,
        "seconds": round(seconds, 1),
        "spearman": spearman(predicted, ms),
        "ratio_mean": statistics.mean(ratio),
        "ratio_std": statistics.stdev(ratio),
        "ratio_min": min(ratio),
        "ratio_max": max(ratio),
        "predicted_ms": predicted,
        "measured_ms": ms,
        "measured_spread": [m["spread"] for m in measured],
        "table_median_spread": statistics.median(table.spread.values()),
        "fastest_run_statistic": _fastest(plan, genotypes, samples),
        "genotype_list": [g.to_dict() for g in genotypes],
    }


def _fastest(plan, genotypes: list[Genotype], samples: dict) -> dict:
    """The same comparison with each entry and network taken as its fastest run instead of the median."""
    table = LatencyTable({key: min(samples[key]) for key in plan.required_keys()})
    predicted = [table.predict(plan, g) for g in genotypes]
    ms = [min(samples[f"network{i}"]) for i in range(len(genotypes))]
    ratio = [m / p for m, p in zip(ms, predicted)]
    return {
        "spearman": spearman(predicted, ms),
        "ratio_mean": statistics.mean(ratio),
        "ratio_std": statistics.stdev(ratio),
    }


def part_search(args: argparse.Namespace, device: torch.device) -> dict:
    from rarts.cli import main as rarts_main

    work = Path(args.work or tempfile.mkdtemp(prefix="latency_validation_"))
    table_path = work / "search_table.json"
    common = ["--device", str(device), "--batch", str(args.batch), "--threads", str(args.threads)]
    common += ["--warmup", str(args.warmup), "--repeats", str(args.repeats), "--clock", args.clock]
    if rarts_main(["latency", "measure", "--preset", args.preset, "--out", str(table_path)] + common) != 0:
        raise SystemExit("measuring the search table failed")
    runs = {}
    for weight in (0.0, args.weight):
        out = work / f"search_w{weight:g}"
        cmd = ["search", "--preset", args.preset, "--method", args.method, "--out", str(out), "--quiet"]
        cmd += ["--seed", str(args.seed), "--epochs", str(args.search_epochs), "--device", str(device)]
        cmd += ["progress=false"]
        cmd += ["--latency-table", str(table_path), "--latency-weight", str(weight)]
        start = time.perf_counter()
        if rarts_main(cmd) != 0:
            raise SystemExit(f"rarts search with latency weight {weight} failed")
        runs[weight] = {"seconds": round(time.perf_counter() - start, 1), "genotype": load_genotype(str(out))}
        metrics = out / "metrics.jsonl"
        if metrics.exists():
            lines = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
            runs[weight]["last_epoch"] = lines[-1]
    image_size, _ = dataset_shape(args.dataset)
    models = [
        build_network(r["genotype"], args.dataset, args.channels, args.layers, auxiliary=False) for r in runs.values()
    ]
    measured = measure_networks(models, image_size, device, **timing(args), seed=args.seed)
    result = {
        "preset": args.preset,
        "epochs": args.search_epochs,
        "method": args.method,
        "seed": args.seed,
        "final_network": {"dataset": args.dataset, "C": args.channels, "layers": args.layers},
        "search_table": str(table_path),
    }
    for (weight, run), m in zip(runs.items(), measured):
        result[f"w={weight:g}"] = {
            "search_seconds": run["seconds"],
            "genotype": run["genotype"].to_darts_string(),
            "final_measured_ms": m["median_ms"],
            "final_measured_spread": m["spread"],
            "latency_genotype_ms": (run.get("last_epoch") or {}).get("latency_genotype_ms"),
            "latency_expected_ms": (run.get("last_epoch") or {}).get("latency_expected_ms"),
            "last_epoch": run.get("last_epoch"),
        }
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--part", choices=("all", "genotypes", "search"), default="all")
    p.add_argument("--genotypes", type=int, default=24, help="random genotypes to compare (default: 24)")
    p.add_argument("--dataset", default="cifar10", help="final network form (default: cifar10)")
    p.add_argument("--channels", type=int, default=36, help="final network channels (default: 36)")
    p.add_argument(
        "--layers",
        "--cells",
        dest="layers",
        type=int,
        default=20,
        help="final network cells (default: 20; --cells: older name)",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=1, help="intra-op threads (default: 1, robust on a shared CPU)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=21)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--clock", choices=("wall", "cpu"), default="cpu", help="default cpu; see rarts latency measure")
    p.add_argument("--preset", default="quick", help="search preset of part `search` (default: quick)")
    p.add_argument("--method", default="rarts", help="search method of part `search` (default: rarts)")
    p.add_argument("--weight", type=float, default=0.05, help="latency weight of part `search`, per ms")
    p.add_argument("--search-epochs", dest="search_epochs", type=int, default=3, help="epochs of each search")
    p.add_argument("--work", help="folder for part `search`'s table and runs (default: a temporary folder)")
    p.add_argument("--out", help="write the results here as JSON")
    args = p.parse_args()
    device = pick_device(args.device)
    torch.set_num_threads(args.threads)  # the searches too: tiny ops with two threads thrash on a busy machine
    results = {"environment": environment_info(device)}
    if args.part in ("all", "genotypes"):
        g = part_genotypes(args, device)
        results["genotypes"] = g
        print(
            f"{g['genotypes']} random genotypes, final network {g['network']['dataset']} C={g['network']['C']} "
            f"layers={g['network']['layers']}, batch {args.batch}, {g['conditions']['threads']} thread(s), "
            f"{args.clock} clock: "
            f"Spearman {g['spearman']:.3f}; measured / predicted {g['ratio_mean']:.3f} +- {g['ratio_std']:.3f} "
            f"(min {g['ratio_min']:.3f}, max {g['ratio_max']:.3f}); measured {min(g['measured_ms']):.1f}.."
            f"{max(g['measured_ms']):.1f} ms; {g['seconds']} s"
        )
    if args.part in ("all", "search"):
        s = part_search(args, device)
        results["search"] = s
        for key in (k for k in s if k.startswith("w=")):
            r = s[key]
            print(
                f"{args.preset} search ({args.search_epochs} epochs, {args.method}, seed {args.seed}), {key}: "
                f"derived genotype {r['latency_genotype_ms']:.2f} ms by the search table, final network "
                f"{r['final_measured_ms']:.1f} ms measured; {r['genotype']}"
            )
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
