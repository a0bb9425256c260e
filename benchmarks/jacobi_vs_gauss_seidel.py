"""RARTS's Jacobi sweep against the paper's Gauss-Seidel sweep on real searches: genotype and supernet accuracy.

    python benchmarks/jacobi_vs_gauss_seidel.py --out runs/jacobi --seeds 0,1,2
    python benchmarks/jacobi_vs_gauss_seidel.py --out runs/jacobi --seeds 0 --overrides epochs=2    # a quick look

For each seed, `rarts search --method rarts --preset quick` once per sweep (same seed: same split, initial
weights, data order), then a table of the final supernet accuracy on the validation half (w's; y's too), the
seconds per step, the derived genotypes and the number of (edge, op) choices the two genotypes share.
Writes <out>/table.md and <out>/table.json. Runs that already have a summary.json are read, not repeated.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

SWEEPS = ("gauss-seidel", "jacobi")


def run(out: Path, seed: int, sweep: str, overrides: list[str], preset: str) -> dict:
    run_dir = out / f"{sweep}-seed{seed}"
    summary = run_dir / "summary.json"
    if not summary.exists():
        cmd = [sys.executable, "-m", "rarts", "search", "--method", "rarts", "--preset", preset, "--seed", str(seed)]
        cmd += ["--out", str(run_dir), "--quiet", f"sweep={sweep}", *overrides]
        print(" ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    return json.loads(summary.read_text())


def choices(genotype: dict) -> set[tuple[str, int, str, int]]:
    """The genotype's (cell, node, op, input) choices."""
    out = set()
    for cell in ("normal", "reduce"):
        for i, (op, j) in enumerate(genotype[cell]):
            out.add((cell, i // 2, op, j))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--preset", default="quick")
    p.add_argument("--overrides", nargs="*", default=["threads=1"], help="key=value settings for every run")
    args = p.parse_args()
    out = Path(args.out)
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        runs = {sweep: run(out, seed, sweep, args.overrides, args.preset) for sweep in SWEEPS}
        shared = len(choices(runs["gauss-seidel"]["genotype"]) & choices(runs["jacobi"]["genotype"]))
        for sweep in SWEEPS:
            s = runs[sweep]
            rows.append(
                {
                    "seed": seed,
                    "sweep": sweep,
                    "val_acc": s.get("final_val_acc"),
                    "y_val_acc": s.get("final_y_val_acc"),
                    "seconds_per_step": s.get("seconds_per_step"),
                    "genotype": s.get("genotype_string"),
                    "choices_shared_with_other_sweep": shared,
                    "choices": len(choices(s["genotype"])),
                }
            )
    lines = [
        "| seed | sweep | supernet val acc (w) | y val acc | s/step | choices shared | genotype |",
        "|---|---|---|---|---|---|---|",
    ]

    def pct(v):
        return "-" if v is None else f"{100 * v:.2f}%"

    for r in rows:
        lines.append(
            f"| {r['seed']} | {r['sweep']} | {pct(r['val_acc'])} | {pct(r['y_val_acc'])} | "
            f"{r['seconds_per_step']:.3f} | {r['choices_shared_with_other_sweep']}/{r['choices']} | `{r['genotype']}` |"
        )
    for sweep in SWEEPS:
        accs = [r["val_acc"] for r in rows if r["sweep"] == sweep and r["val_acc"] is not None]
        if accs:
            mean = sum(accs) / len(accs)
            std = (sum((a - mean) ** 2 for a in accs) / max(len(accs) - 1, 1)) ** 0.5
            lines.append(f"| mean | {sweep} | {100 * mean:.2f}% +- {100 * std:.2f} | | | | |")
    text = "\n".join(lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(text)
    (out / "table.json").write_text(json.dumps(rows, indent=2))
    print(text)


if __name__ == "__main__":
    main()
