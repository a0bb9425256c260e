"""The lam x beta study behind RARTS's defaults: one RARTS search per pair, the supernet accuracies and genotypes.

    python benchmarks/search_lam_beta.py --out runs/study-lam-beta subset=600 epochs=5 threads=1

Every run uses the quick preset with the given key=value overrides and the same seed, so the runs differ only in
lam and beta. Writes <out>/<lam>-<beta>/ (a normal search run folder) for each pair, and <out>/study.json and
<out>/study.md: for each pair the final validation accuracy of w (on the validation half, which w never trains
on) and of y (which trains on it), the final training accuracy of w, the number of parametric ops (sep/dil
convolutions) and of skip connections in the genotype's normal cell, the search time, and the genotype.
A pair whose run folder already holds summary.json is read, not run again, so the study can be resumed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--lams", default="0.5,1,2")
    p.add_argument("--betas", default="0.1,1,10")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("overrides", nargs="*", metavar="key=value")
    args = p.parse_args()

    from rarts.config import parse_overrides
    from rarts.errors import RunFailed
    from rarts.search.config import make_config
    from rarts.search.loop import run_search

    out = Path(args.out)
    overrides = parse_overrides(args.overrides)
    rows = []
    for lam in args.lams.split(","):
        for beta in args.betas.split(","):
            run_dir = out / f"lam{lam}-beta{beta}"
            if (run_dir / "summary.json").is_file():
                summary = json.loads((run_dir / "summary.json").read_text())
            else:
                flags = {"method": "rarts", "seed": args.seed, "progress": False}
                cfg = make_config("quick", {**overrides, "lam": lam, "beta": beta}, flags)
                try:
                    summary = run_search(cfg, run_dir, resume=(run_dir / "checkpoint.pt").is_file(), quiet=True)
                except RunFailed as e:
                    rows.append({"lam": float(lam), "beta": float(beta), "failed": str(e)})
                    print(json.dumps(rows[-1]), flush=True)
                    continue
            normal = [op for op, _ in summary["genotype"]["normal"]]
            row = {
                "lam": float(lam),
                "beta": float(beta),
                "w_val_acc": summary["final_val_acc"],
                "y_val_acc": summary.get("final_y_val_acc"),
                "w_train_acc": summary["final_train_acc"],
                "normal_parametric_ops": sum(op.startswith(("sep", "dil")) for op in normal),
                "normal_skip_connects": normal.count("skip_connect"),
                "search_seconds": summary["search_seconds"],
                "search_cpu_seconds": summary.get("search_cpu_seconds"),
                "genotype": summary["genotype_string"],
            }
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "genotype"}), flush=True)
    (out / "study.json").write_text(json.dumps({"overrides": overrides, "seed": args.seed, "rows": rows}, indent=2))
    lines = [
        "| lam | beta | w val acc | y val acc | w train acc | normal cell: sep/dil convs, skips | search time |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "failed" in r:
            lines.append(f"| {r['lam']:g} | {r['beta']:g} | failed: {r['failed']} | | | | |")
            continue
        lines.append(
            f"| {r['lam']:g} | {r['beta']:g} | {100 * r['w_val_acc']:.1f}% | {100 * r['y_val_acc']:.1f}% | "
            f"{100 * r['w_train_acc']:.1f}% | {r['normal_parametric_ops']}, {r['normal_skip_connects']} | "
            f"{r['search_seconds'] / 60:.1f} min |"
        )
    (out / "study.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
