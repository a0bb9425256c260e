"""The alpha heatmap: softmax(alpha) of the normal and the reduction cell, edges by operations."""

from __future__ import annotations

from pathlib import Path

import torch

from rarts.genotype import derive_gene
from rarts.ops import PRIMITIVES
from rarts.supernet import NUM_NODES
from rarts.viz import pyplot


def edge_labels(num_nodes: int = NUM_NODES) -> list[str]:
    """'c_{k-2} -> 0', 'c_{k-1} -> 0', 'c_{k-2} -> 1', ..., '2 -> 3': the 14 edges in alpha's row order."""
    names = ["c_{k-2}", "c_{k-1}"] + [str(i) for i in range(num_nodes)]
    return [f"{names[j]} -> {i}" for i in range(num_nodes) for j in range(i + 2)]


def plot_alpha_heatmap(alpha_normal: torch.Tensor, alpha_reduce: torch.Tensor, path: str | Path) -> Path:
    """Draw softmax(alpha) per edge for both cells side by side, each (14, 8), to `path` (.png, .svg or .pdf).

    Each square shows its weight; the ops the DARTS rule keeps for the genotype are outlined. Returns the path.
    """
    plt = pyplot()
    from matplotlib.patches import Rectangle

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    labels = edge_labels()
    fig, axes = plt.subplots(1, 2, figsize=(13, 6.5), constrained_layout=True)
    for ax, alpha, title in zip(axes, (alpha_normal, alpha_reduce), ("normal cell", "reduction cell")):
        weights = torch.softmax(alpha.detach().double().cpu(), dim=-1)
        # The colour scale spans this cell's own range: early in a search all weights sit near 1/8.
        low, high = float(weights.min()), float(weights.max())
        image = ax.imshow(weights.numpy(), cmap="viridis", vmin=low, vmax=max(high, low + 1e-9), aspect="auto")
        for i in range(weights.shape[0]):
            for k in range(weights.shape[1]):
                value = float(weights[i, k])
                colour = "black" if value > (low + high) / 2 else "white"
                ax.text(k, i, f"{value:.3f}", ha="center", va="center", fontsize=7, color=colour)
        start = 0
        for node, pairs in enumerate(zip(*[iter(derive_gene(weights))] * 2)):
            for op, j in pairs:
                ax.add_patch(Rectangle((PRIMITIVES.index(op) - 0.5, start + j - 0.5), 1, 1, fill=False, lw=2, ec="red"))
            start += node + 2
        ax.set_xticks(range(len(PRIMITIVES)), PRIMITIVES, rotation=45, ha="right")
        ax.set_yticks(range(len(labels)), labels)
        ax.set_title(f"{title}: softmax(alpha), kept ops outlined")
        fig.colorbar(image, ax=ax, shrink=0.8)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
