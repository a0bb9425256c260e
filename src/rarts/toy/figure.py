"""Figure 1 of the paper: RARTS trajectories on the solvable model in the (alpha, w) plane, beside DARTS 1st order.

Three panels vary lam, beta and y0 in turn; each trajectory's closed-form limit is marked. The end points are also
written as a table (CSV and Markdown), so the figure's claims can be read off without the picture.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Optional

from rarts.toy.iterate import ToyRun, run
from rarts.toy.limits import equilibrium
from rarts.toy.model import ToySettings

FIGURE_PANELS = (
    ("lam", "lambda varied, beta = 10, y0 = 0", [{"lam": v, "beta": 10.0, "y0": 0.0} for v in (1.0, 2.0, 10.0, 40.0)]),
    (
        "beta",
        "beta varied, lambda = 10, y0 = 0",
        [{"lam": 10.0, "beta": v, "y0": 0.0} for v in (1.0, 2.0, 10.0, 100.0)],
    ),
    ("y0", "y0 varied, lambda = beta = 10", [{"lam": 10.0, "beta": 10.0, "y0": v} for v in (-2.0, 0.0, 2.0, 4.0)]),
)
TABLE_COLUMNS = ("panel", "method", "lam", "beta", "y0", "alpha", "w", "y", "alpha_eq", "w_eq", "y_eq", "steps")


def figure1(out_dir: str | Path, lr: float = 0.01, steps: int = 20000) -> list[Path]:
    """Figure 1: RARTS trajectories in the (alpha, w) plane, three panels; PNG, SVG and the endpoint table (CSV, MD)."""
    from rarts.utils import atomic_write_text
    from rarts.viz import pyplot, save_figure

    plt = pyplot()
    out_dir = Path(out_dir)
    darts = run(ToySettings(method="darts1", lr=lr, steps=steps))
    rows = []
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.4), constrained_layout=True)
    for ax, (key, title, cases) in zip(axes, FIGURE_PANELS):
        ax.plot(darts.alpha, darts.w, color="0.35", ls="--", lw=1.4, label="DARTS 1st order")
        ax.plot([2.0], [2.0], "s", color="0.35", ms=8, mfc="none", mew=1.5, label="DARTS limit (2, 2)")
        rows.append(_table_row(key, darts))
        colors = plt.cm.viridis([0.0, 0.3, 0.6, 0.85])
        for color, case in zip(colors, cases):
            r = run(ToySettings(method="rarts", lr=lr, steps=steps, **case))
            eq = equilibrium("rarts", case["lam"], case["beta"])
            label = f"{'lambda' if key == 'lam' else key} = {case[key]:g}" + (" (diverged)" if r.diverged else "")
            ax.plot(r.alpha, r.w, color=color, lw=1.4, label=label)
            if eq is not None:
                ax.plot([eq["alpha"]], [eq["w"]], "x", color=color, ms=10, mew=2.2, zorder=6)
            rows.append(_table_row(key, r))
        ax.plot([1.0], [1.0], "*", color="crimson", ms=16, label="bilevel optimum (1, 1)", zorder=5)
        ax.plot([2.0], [-2.0], "o", color="black", ms=6, label="start (2, -2)", zorder=5)
        ax.plot([], [], "x", color="0.2", ms=9, mew=2, label="equilibrium (closed form)")
        ax.set_title(title, fontsize=12)
        ax.set_xlabel("alpha", fontsize=11)
        ax.set_ylabel("w", fontsize=11)
        ax.grid(alpha=0.3)
        ax.set_ylim(-2.4, 5.0)  # the room above w = 3 holds the legend, clear of every trajectory
        ax.legend(fontsize=9, loc="upper left", ncol=2)
    fig.suptitle(f"Solvable model: RARTS trajectories (lr = {lr:g}, {steps} steps) vs DARTS 1st order", fontsize=13)
    paths = [save_figure(fig, out_dir / f"figure1.{ext}", dpi=130, fmt=ext) for ext in ("png", "svg")]
    plt.close(fig)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=TABLE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out_dir / "figure1_endpoints.csv", text.getvalue())
    paths.append(out_dir / "figure1_endpoints.csv")
    atomic_write_text(out_dir / "figure1_endpoints.md", endpoint_markdown(rows))
    paths.append(out_dir / "figure1_endpoints.md")
    return paths


def _table_row(panel: str, r: ToyRun) -> dict:
    s = r.settings
    eq = equilibrium(s.method, s.lam, s.beta, s.xi_value) or {"alpha": None, "w": None, "y": None}
    final = r.final
    rarts_only = s.method == "rarts"
    return {
        "panel": panel,
        "method": s.method,
        "lam": s.lam if rarts_only else "",
        "beta": s.beta if rarts_only else "",
        "y0": s.y0 if rarts_only else "",
        "alpha": round(final[0], 6),
        "w": round(final[1], 6),
        "y": round(final[2], 6) if rarts_only else "",
        "alpha_eq": _fmt(eq["alpha"]),
        "w_eq": _fmt(eq["w"]),
        "y_eq": _fmt(eq["y"]),
        "steps": f"{r.steps} (diverged)" if r.diverged else r.steps,
    }


def _fmt(value: Optional[float]) -> object:
    return "" if value is None else round(value, 6)


def endpoint_markdown(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(str(row[c]) for c in TABLE_COLUMNS) + " |")
    return "\n".join(lines) + "\n"
