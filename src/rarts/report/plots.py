"""The report's plots: architecture weights per epoch of one search, and accuracy curves of many runs.

Each run's line is coloured by its method, in the paper's order of methods, so a method keeps its colour across
the plots of one report. Accuracies are in percent, as run folders hold them (rarts.report.runs rescales the
fractions of searches written before that).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Optional

from rarts.ops import PRIMITIVES
from rarts.report.results import METHOD_LABELS
from rarts.report.runs import SearchRun, method_rank
from rarts.report.stats import finite
from rarts.viz import pyplot, save_figure

DPI = 110


def _epoch_axis(ax: Any, title: str) -> None:
    """Title a panel whose x axis counts epochs, ticked at whole epochs only."""
    from matplotlib.ticker import MaxNLocator

    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _method_colors(methods: Iterable[str]) -> dict[str, Any]:
    plt = pyplot()
    palette = plt.get_cmap("tab10")
    return {m: palette(i % 10) for i, m in enumerate(sorted(set(methods), key=method_rank))}


def plot_alpha_evolution(run: SearchRun, path: Path) -> Optional[Path]:
    """softmax(alpha) per op, averaged over the 14 edges, against the epoch: normal and reduction cell."""
    if not run.alphas:
        return None
    plt = pyplot()
    epochs = [row.get("epoch", i) for i, row in enumerate(run.alphas)]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    fig.subplots_adjust(left=0.07, right=0.83, bottom=0.14, top=0.84, wspace=0.08)
    colors = plt.get_cmap("tab10")
    for ax, cell in zip(axes, ("normal", "reduce")):
        for k, op in enumerate(PRIMITIVES):
            means = []
            for row in run.alphas:
                edges = row[cell]
                means.append(sum(edge[k] for edge in edges) / len(edges))
            ax.plot(epochs, means, marker="o" if len(epochs) < 12 else None, ms=3, color=colors(k), label=op)
        _epoch_axis(ax, f"{'normal' if cell == 'normal' else 'reduction'} cell")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("softmax(alpha), mean over edges")
    axes[1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.suptitle(f"{METHOD_LABELS.get(run.method, run.method)}, seed {run.seed}: architecture weights per epoch")
    save_figure(fig, path, dpi=DPI)
    plt.close(fig)
    return path


def plot_curves(
    runs: list[SearchRun], keys: Sequence[tuple[str, str]], path: Path, title: str, train_runs: bool = False
) -> Optional[Path]:
    """One panel per (metric key, panel title): a line per run, coloured by method, accuracies in percent.

    train_runs: plot the paired training runs' metrics instead of the searches'.
    """
    plotted = False
    plt = pyplot()
    colors = _method_colors(r.method for r in runs)
    fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 3.8), constrained_layout=True, squeeze=False)
    for ax, (key, panel) in zip(axes[0], keys):
        labelled: set[str] = set()
        for run in runs:
            rows = (run.train.metrics if run.train is not None else []) if train_runs else run.metrics
            points = [(row["epoch"], row[key]) for row in rows if len(finite([row.get(key), row.get("epoch")])) == 2]
            if not points:
                continue
            xs, ys = zip(*points)
            label = METHOD_LABELS.get(run.method, run.method) if run.method not in labelled else None
            labelled.add(run.method)
            ax.plot(xs, ys, marker="o" if len(xs) < 12 else None, ms=3, lw=1.3, color=colors[run.method], label=label)
            plotted = True
        _epoch_axis(ax, panel)
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
        if labelled:
            ax.legend(fontsize=8)
    fig.suptitle(title)
    if plotted:
        save_figure(fig, path, dpi=DPI)
    plt.close(fig)
    return path if plotted else None
