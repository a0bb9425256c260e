"""Hand-made run folders for the report and compare tests: the files a finished search or training run leaves."""

from __future__ import annotations

import json
import random
from pathlib import Path

from rarts.genotype import KNOWN_GENOTYPES


def write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")


def make_search_run(
    folder,
    method: str,
    seed: int,
    seconds: float = 100.0,
    steps: int = 10,
    genotype: str = "DARTS_V2",
    epochs: int = 3,
    device: str = "cpu",
    summary_extra: dict | None = None,
    config_extra: dict | None = None,
    alphas: bool = True,
    metrics: bool = True,
) -> Path:
    """A finished search run folder: summary.json, genotype.json, config.json, environment.json, metrics, alphas."""
    folder = Path(folder)
    g = KNOWN_GENOTYPES[genotype]
    summary = {
        "method": method,
        "seed": seed,
        "genotype": g.to_dict(),
        "epochs": epochs,
        "search_seconds": seconds,
        "steps": steps,
        "peak_memory_bytes": 2**30,
    }
    summary.update(summary_extra or {})
    write(folder / "summary.json", summary)
    write(folder / "genotype.json", g.to_dict())
    write(
        folder / "config.json",
        {"method": method, "seed": seed, "epochs": epochs, "batch_size": 8, **(config_extra or {})},
    )
    name = "cpu (x86_64, 2 threads)" if device == "cpu" else "NVIDIA H200"
    env = {
        "torch": "2.13.0",
        "rarts": "0.1.0",
        "device": device,
        "device_name": name,
        "git_revision": "0123456789abcdef",
    }
    write(folder / "environment.json", {**env, "command": f"rarts search --method {method} --seed {seed}"})
    rng = random.Random(seed)
    if metrics:
        rows = [
            {"epoch": e, "train_loss": 2.0 - 0.1 * e, "train_acc": 0.2 + 0.1 * e, "val_acc": 0.15 + 0.1 * e}
            for e in range(epochs)
        ]
        (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if alphas:
        lines = []
        for e in range(epochs):
            row = {"epoch": e}
            for cell in ("normal", "reduce"):
                edges = []
                for _ in range(14):
                    w = [rng.random() for _ in range(8)]
                    edges.append([x / sum(w) for x in w])
                row[cell] = edges
            lines.append(json.dumps(row) + "\n")
        (folder / "alphas.jsonl").write_text("".join(lines))
    return folder


def make_train_run(folder, search_dir, seed: int, error: float, epochs: int = 2) -> Path:
    """A finished training run folder of the genotype in `search_dir`."""
    folder = Path(folder)
    result = {
        "test_top1_error": error,
        "test_top5_error": error / 4,
        "params": 123456,
        "dataset": "cifar10-mini",
        "epochs": epochs,
        "seed": seed,
        "train_time_s": 50.0,
        "device": "cpu (x86_64, 2 threads)",
    }
    write(folder / "result.json", result)
    write(folder / "config.json", {"genotype": str(search_dir), "seed": seed, "init_channels": 4, "layers": 3})
    write(folder / "environment.json", {"torch": "2.13.0", "command": f"rarts train --genotype {search_dir}"})
    rows = [{"epoch": e, "train_top1": 30.0 + 10 * e, "test_top1": 25.0 + 10 * e} for e in range(epochs)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder
