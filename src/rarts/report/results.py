"""What the report says about each run and each method: the flat rows of results.csv and table1.csv.

A run's row holds its search cost (GPU-days on a GPU, CPU-hours on a CPU), time per step, supernet accuracy (%),
the found cell's parameters at the paper's size, and its training run's test errors. A method's row holds the
mean and sample standard deviation over its seeds of each, beside the paper's Table 1 figures.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from rarts.report.runs import SearchRun, method_rank, step_seconds
from rarts.report.stats import div, finite, mean_std
from rarts.runs.resume import resume_free_settings

METHOD_LABELS = {
    "darts1": "DARTS (1st order)",
    "darts2": "DARTS (2nd order)",
    "milenas": "MiLeNAS",
    "rarts": "RARTS",
    "random": "Random",
}
# The RARTS paper's Table 1 (CIFAR-10): test error % (mean, std), params in millions, search cost in GPU-days.
PAPER_TABLE1 = {
    "darts1": {"error": (3.00, 0.14), "params_m": 3.3, "gpu_days": 0.7},
    "darts2": {"error": (2.76, 0.09), "params_m": 3.3, "gpu_days": 3.1},
    "rarts": {"error": (2.65, 0.07), "params_m": 3.2, "gpu_days": 1.1},
}
BASELINE_METHOD = "darts2"  # step times are reported relative to DARTS 2nd order
PAPER_SIZE = {"channels": 36, "layers": 20}  # the CIFAR-10 network whose parameters Table 1 counts

# Settings that may differ between runs of one fair comparison: the run's identity, and every setting a resumed run
# may change (where the data lie and how the run reports, not what it computes).
FREE_SETTINGS = frozenset({"method", "seed"}) | resume_free_settings("search") | resume_free_settings("train")


def device_of(run: SearchRun) -> tuple[str, str]:
    """(device type 'cuda' or 'cpu', readable device name) of a search run, from its summary or environment."""
    for source in (run.summary, run.environment):
        kind = str(source.get("device_type") or source.get("device") or "").lower()
        name = str(source.get("device_name") or source.get("device") or "")
        if not kind and not name:
            continue
        if not kind.startswith(("cuda", "cpu")):
            kind = "cpu" if "cpu" in name.lower() else "cuda"
        return ("cuda" if kind.startswith("cuda") else "cpu"), name or kind
    return "cpu", "unknown device"


def search_cost(run: SearchRun) -> tuple[Optional[float], str]:
    """Search cost in GPU-days on CUDA, in CPU-hours on a CPU: (value, unit)."""
    kind, _ = device_of(run)
    seconds = run.summary.get("search_seconds")
    unit = "GPU-days" if kind == "cuda" else "CPU-hours"
    if not finite([seconds]):
        return None, unit
    return float(seconds) / (86400.0 if kind == "cuda" else 3600.0), unit


_PARAMS_CACHE: dict[str, int] = {}


def paper_size_params(genotype: Any) -> int:
    """Parameters (auxiliary head excluded) of the genotype's CIFAR-10 network at the paper's size (36 ch, 20 cells)."""
    from rarts.network import build_network, count_params

    key = genotype.to_darts_string()
    if key not in _PARAMS_CACHE:
        net = build_network(genotype, "cifar10", PAPER_SIZE["channels"], PAPER_SIZE["layers"], auxiliary=False)
        _PARAMS_CACHE[key] = count_params(net)
    return _PARAMS_CACHE[key]


def supernet_accuracy(run: SearchRun, split: str) -> Optional[float]:
    """Final supernet accuracy (%) on `split` ('train' or 'val'): from summary.json, else the last metrics row."""
    for key in (f"final_{split}_acc", f"{split}_acc"):
        if finite([run.summary.get(key)]):
            return float(run.summary[key])
    for row in reversed(run.metrics):
        if finite([row.get(f"{split}_acc")]):
            return float(row[f"{split}_acc"])
    return None


def run_row(run: SearchRun) -> dict[str, Any]:
    """One run as a flat dict (the columns of results.csv)."""
    cost, unit = search_cost(run)
    kind, device = device_of(run)
    t = run.train.result if run.train is not None else {}
    return {
        "method": run.method,
        "seed": run.seed,
        "search_run": str(run.path),
        "train_run": str(run.train.path) if run.train is not None else "",
        "genotype": run.genotype.to_darts_string(),
        "search_epochs": run.summary.get("epochs"),
        "search_seconds": run.summary.get("search_seconds"),
        "seconds_per_step": step_seconds(run.summary),
        "search_cost": cost,
        "search_cost_unit": unit,
        "search_device": device,
        "peak_memory_bytes": run.summary.get("peak_memory_bytes"),
        "supernet_train_acc": supernet_accuracy(run, "train"),
        "supernet_val_acc": supernet_accuracy(run, "val"),
        "params_paper_size": paper_size_params(run.genotype),
        "test_top1_error": t.get("test_top1_error"),
        "test_top5_error": t.get("test_top5_error"),
        "train_dataset": t.get("dataset"),
        "train_epochs": t.get("epochs"),
        "params_trained": t.get("params"),
        "mult_adds_trained": t.get("mult_adds"),
        "train_seconds": t.get("train_time_s"),
        "train_device": t.get("device"),
    }


def method_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per method: means and sample standard deviations over seeds, the paper's figures, step time vs DARTS-2."""
    methods: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        methods.setdefault(row["method"], []).append(row)
    baseline, _ = mean_std(r["seconds_per_step"] for r in methods.get(BASELINE_METHOD, []))
    out = []
    for method in sorted(methods, key=method_rank):
        group = methods[method]
        paper = PAPER_TABLE1.get(method, {})
        err_mean, err_std = mean_std(r["test_top1_error"] for r in group)
        cost_mean, cost_std = mean_std(r["search_cost"] for r in group)
        step_mean, step_std = mean_std(r["seconds_per_step"] for r in group)
        units = sorted({r["search_cost_unit"] for r in group})
        out.append(
            {
                "method": method,
                "label": METHOD_LABELS.get(method, method),
                "runs": len(group),
                "seeds": [r["seed"] for r in group],
                "trained": sum(r["test_top1_error"] is not None for r in group),
                "test_error_mean": err_mean,
                "test_error_std": err_std,
                "test_top5_error_mean": mean_std(r["test_top5_error"] for r in group)[0],
                "params_m_mean": div(mean_std(r["params_paper_size"] for r in group)[0], 1e6),
                "params_trained_m_mean": div(mean_std(r["params_trained"] for r in group)[0], 1e6),
                "search_cost_mean": cost_mean,
                "search_cost_std": cost_std,
                "search_cost_unit": "/".join(units),
                "devices": sorted({r["search_device"] for r in group}),
                "seconds_per_step_mean": step_mean,
                "seconds_per_step_std": step_std,
                "step_time_vs_darts2": div(step_mean, baseline),
                "supernet_val_acc_mean": mean_std(r["supernet_val_acc"] for r in group)[0],
                "supernet_val_acc_std": mean_std(r["supernet_val_acc"] for r in group)[1],
                "paper_test_error": paper.get("error"),
                "paper_test_error_mean": paper["error"][0] if paper else None,
                "paper_test_error_std": paper["error"][1] if paper else None,
                "paper_params_m": paper.get("params_m"),
                "paper_gpu_days": paper.get("gpu_days"),
                "_group": group,
            }
        )
    return out


def settings_differences(runs: list[SearchRun]) -> list[str]:
    """Config keys (other than method, seed, paths and reporting) whose values differ between the runs."""
    keys = sorted({k for r in runs for k in r.config} - FREE_SETTINGS)
    differing = []
    for key in keys:
        values = {json.dumps(r.config.get(key), sort_keys=True) for r in runs if r.config}
        if len(values) > 1:
            differing.append(f"{key} ({', '.join(sorted(values))})")
    return differing
