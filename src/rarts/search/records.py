"""What a search leaves in its run folder: per epoch its metrics row, its alphas.jsonl line and the line it
prints; at the end genotype.json, alpha.json, the plots and summary.json.
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path
from typing import Any

import torch

from rarts.genotype import derive_genotype
from rarts.ops import PRIMITIVES
from rarts.search.base import SearchMethod
from rarts.search.config import SearchConfig
from rarts.supernet import Architecture
from rarts.utils import atomic_write_text, device_name, write_json

SUMMARY_NAME = "summary.json"
FORMAT_VERSION = 2  # of summary.json (2: accuracies in percent)


# --- every epoch ------------------------------------------------------------------------------------------------------


def _alpha_row(epoch: int, arch: Architecture) -> dict:
    w_normal, w_reduce = arch.weights()
    return {"epoch": epoch, "normal": w_normal.detach().cpu().tolist(), "reduce": w_reduce.detach().cpu().tolist()}


def log_epoch(logger, alphas_path: Path, row: dict[str, Any], arch: Architecture) -> None:
    """The lines an epoch leaves in the run folder: its metrics row, and softmax(alpha) as the epoch left it."""
    logger.log(row)
    with open(alphas_path, "a", encoding="utf-8") as f:
        f.write(json.dumps(_alpha_row(row["epoch"], arch)) + "\n")


def keep_alpha_rows(path: Path, before_epoch: int) -> None:
    """Rewrite alphas.jsonl with the rows of epochs before `before_epoch` (a resumed run repeats the others)."""
    rows = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a kill
                continue
            if isinstance(row, dict) and isinstance(row.get("epoch"), int) and row["epoch"] < before_epoch:
                rows.append(line + "\n")
    atomic_write_text(path, "".join(rows))


def short_means(means: dict[str, float]) -> list[tuple[str, float]]:
    """The few means the progress bar shows, under short names."""
    keys = ("train_loss", "train_acc", "arch_loss", "y_loss")
    return [(k.replace("_", ""), means[k]) for k in keys if k in means]


def epoch_line(row: dict[str, Any], epochs: int) -> str:
    parts = [f"epoch {row['epoch'] + 1}/{epochs}"]
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "y_val_acc"):
        if key in row:
            parts.append(f"{key} {row[key]:.4f}")
    if "latency_genotype_ms" in row:
        parts.append(f"genotype latency {row['latency_genotype_ms']:.3f} ms")
    parts.append(f"{row['seconds']:.1f} s")
    return "  ".join(parts)


# --- the end of the run -----------------------------------------------------------------------------------------------


def peak_memory_bytes(device: torch.device) -> tuple[int, str]:
    """CUDA: the most memory tensors held (max_memory_allocated); CPU: the process's peak resident set size."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "cuda max_memory_allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024), "process peak RSS"


def _draw(cfg: SearchConfig, run_dir: Path, arch: Architecture, genotype) -> tuple[list[str], list[str]]:
    """The alpha heatmap and the cell diagrams; returns (files written, errors). A failed figure is reported,
    not raised: a finished search is not lost over a plot."""
    plots, errors = [], []
    try:
        from rarts.search.plots import plot_alpha_heatmap

        plot_alpha_heatmap(arch.alpha_normal, arch.alpha_reduce, run_dir / "alpha.png")
        plots.append("alpha.png")
    except Exception as e:
        errors.append(f"alpha heatmap: {type(e).__name__}: {e}")
    try:
        from rarts.viz import plot_genotype

        paths, _ = plot_genotype(genotype, run_dir / "cells")
        plots.extend(str(Path(p).relative_to(run_dir)) for p in paths)
    except Exception as e:
        errors.append(f"cell diagrams: {type(e).__name__}: {e}")
    return plots, errors


def finish_search(cfg: SearchConfig, run_dir: Path, method: SearchMethod, state: Any, device, say) -> dict[str, Any]:
    """The end of a search: genotype.json, alpha.json, the plots and summary.json. Rank 0 alone writes them and
    returns the summary; the other processes of a distributed run return an empty dict. state: where the loop
    stands (world, global_step, search_seconds, search_cpu_seconds, peak, last_row); its peak is brought up to date."""
    if not state.world.is_main:
        return {}
    arch = method.arch
    genotype = derive_genotype(arch.alpha_normal, arch.alpha_reduce)
    write_json(run_dir / "genotype.json", genotype.to_dict())
    w_normal, w_reduce = arch.weights()
    write_json(
        run_dir / "alpha.json",
        {
            "primitives": list(PRIMITIVES),
            "alpha_normal": arch.alpha_normal.detach().cpu().tolist(),
            "alpha_reduce": arch.alpha_reduce.detach().cpu().tolist(),
            "softmax_normal": w_normal.detach().cpu().tolist(),
            "softmax_reduce": w_reduce.detach().cpu().tolist(),
        },
    )
    plots, plot_errors = _draw(cfg, run_dir, arch, genotype) if cfg.plots else ([], [])
    for err in plot_errors:
        say(f"warning: could not draw the {err}")

    state.peak = max(state.peak, peak_memory_bytes(device)[0])
    row = state.last_row
    on_gpu = device.type == "cuda"
    summary = {
        "format_version": FORMAT_VERSION,
        "method": cfg.method,
        "seed": cfg.seed,
        "dataset": cfg.dataset,
        "genotype": genotype.to_dict(),
        "genotype_string": genotype.to_darts_string(),
        "epochs": cfg.epochs,
        "steps": state.global_step,
        "search_seconds": state.search_seconds,
        "seconds_per_step": state.search_seconds / max(state.global_step, 1),
        "search_cpu_seconds": state.search_cpu_seconds,
        "threads": torch.get_num_threads(),
        "search_cost": state.search_seconds * state.world.world_size / (86400.0 if on_gpu else 3600.0),
        "world_size": state.world.world_size,  # processes (GPUs); search_cost counts all of them
        "search_cost_unit": "GPU-days" if on_gpu else "CPU-hours",
        "device_type": device.type,
        "device_name": device_name(device),
        "peak_memory_bytes": state.peak,
        "peak_memory_kind": peak_memory_bytes(device)[1],
        "final_train_loss": row.get("train_loss"),
        "final_train_acc": row.get("train_acc"),
        "final_val_loss": row.get("val_loss"),
        "final_val_acc": row.get("val_acc"),
    }
    for key in ("y_val_loss", "y_val_acc", "latency_expected_ms", "latency_genotype_ms"):
        if key in row:
            summary[f"final_{key}"] = row[key]
    summary["plots"] = plots
    if plot_errors:
        summary["plot_errors"] = plot_errors
    write_json(run_dir / SUMMARY_NAME, summary)
    return summary
