"""Figures: cell diagrams of a genotype (the paper's Figures 2 and 3), and the matplotlib helpers of every figure.

A cell is drawn left to right: the inputs c_{k-2} and c_{k-1}, the intermediate nodes 0..3, and the output
c_{k}, the concatenation of the nodes in `concat`; each edge is labelled with its op and coloured by op.
Graphviz `dot` draws it when the binary is on the PATH (the field's convention); otherwise matplotlib does,
with a small layered layout of its own, so diagrams work after a plain pip install.

matplotlib is imported inside the drawing functions (with the Agg backend, by `pyplot`), so importing rarts.viz
is cheap. `save_figure` writes a figure atomically, so a reader never finds half an image.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rarts.errors import RunFailed, UsageError
from rarts.genotype import Gene, Genotype
from rarts.utils import atomic_write_bytes

FORMATS = ("svg", "png", "pdf")
ENGINES = ("auto", "dot", "matplotlib")

OP_COLORS = {
    "max_pool_3x3": "#1f77b4",
    "avg_pool_3x3": "#9467bd",
    "skip_connect": "#6b6b6b",
    "sep_conv_3x3": "#d62728",
    "sep_conv_5x5": "#e6780b",
    "dil_conv_3x3": "#2ca02c",
    "dil_conv_5x5": "#8c564b",
}
INPUT_COLOR = "#b4eeb4"  # graphviz darkseagreen2, as in the DARTS figures
NODE_COLOR = "#add8e6"  # lightblue
OUTPUT_COLOR = "#eee8aa"  # palegoldenrod

# --- matplotlib ---------------------------------------------------------------------------------------------


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend: figures are written to files, never shown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path, dpi: int, fmt: str = "png") -> Path:
    """Write `fig` to `path` as `fmt` at `dpi`, atomically; returns the path."""
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi)
    atomic_write_bytes(path, buf.getvalue())
    return path


# --- cell diagrams: the graph --------------------------------------------------------------------------------


@dataclass
class CellGraph:
    """States 0..steps+1 (0 = c_{k-2}, 1 = c_{k-1}, 2.. = nodes) and `output` = steps + 2; edges (src, dst, op)."""

    steps: int
    edges: list[tuple[int, int, str | None]]

    @property
    def output(self) -> int:
        return self.steps + 2

    def label(self, state: int) -> str:
        if state < 2:
            return ("c_{k-2}", "c_{k-1}")[state]
        return "c_{k}" if state == self.output else str(state - 2)


def cell_graph(gene: Gene, concat: Sequence[int]) -> CellGraph:
    """The diagram's graph: an edge per (op, input) pair, and an unlabelled edge from each concat state to c_{k}."""
    steps = len(gene) // 2
    edges: list[tuple[int, int, str | None]] = [(idx, 2 + pos // 2, op) for pos, (op, idx) in enumerate(gene)]
    edges += [(c, steps + 2, None) for c in concat]
    return CellGraph(steps, edges)


# --- cell diagrams: Graphviz ---------------------------------------------------------------------------------


def cell_dot_source(gene: Gene, concat: Sequence[int], title: str | None = None) -> str:
    """A Graphviz DOT description of the cell (left to right, edges labelled and coloured by op)."""
    g = cell_graph(gene, concat)

    def node_id(state: int) -> str:
        return f"s{state}"

    def html(state: int) -> str:
        text = g.label(state)
        if text.startswith("c_{"):
            return f"<c<SUB>{text[3:-1]}</SUB>>"
        return f'"{text}"'

    lines = [
        "digraph cell {",
        "  rankdir=LR;",
        '  graph [fontname="Helvetica", nodesep=0.35, ranksep=0.9'
        + (f', label="{title}", labelloc=t, fontsize=18' if title else "")
        + "];",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=16, penwidth=1.5, '
        "height=0.45, width=0.45];",
        '  edge [fontname="Helvetica", fontsize=12, penwidth=1.5, arrowsize=0.8];',
    ]
    for state in range(g.output + 1):
        color = INPUT_COLOR if state < 2 else OUTPUT_COLOR if state == g.output else NODE_COLOR
        lines.append(f'  {node_id(state)} [label={html(state)}, fillcolor="{color}"];')
    # c_{k-2} above c_{k-1}, the nodes in order: invisible edges inside a rank fix the order dot keeps.
    lines.append(f"  {{rank=same; {node_id(0)} -> {node_id(1)} [style=invis];}}")
    for src, dst, op in g.edges:
        if op is None:
            lines.append(f'  {node_id(src)} -> {node_id(dst)} [color="#444444"];')
        else:
            color = OP_COLORS.get(op, "#000000")
            lines.append(f'  {node_id(src)} -> {node_id(dst)} [label="{op}", color="{color}", fontcolor="{color}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _draw_with_dot(dot: str, source: str, stem: Path, formats: Iterable[str]) -> list[Path]:
    paths = []
    for fmt in formats:
        path = stem.with_suffix(f".{fmt}")
        try:
            proc = subprocess.run(
                [dot, f"-T{fmt}", *(["-Gdpi=200"] if fmt == "png" else []), "-o", str(path)],
                input=source,
                text=True,
                capture_output=True,
                timeout=60,
            )
        except (OSError, subprocess.SubprocessError) as e:
            raise RunFailed(f"graphviz dot failed on {path.name}: {e}") from None
        if proc.returncode != 0:
            message = (proc.stderr.strip().splitlines() or ["no message"])[-1]
            raise RunFailed(f"graphviz dot failed on {path.name}: {message}")
        paths.append(path)
    return paths


# --- cell diagrams: matplotlib ---------------------------------------------------------------------------------

BOX_W, BOX_H = 1.15, 0.62  # node box size, in layout units (1 unit = INCH_PER_UNIT inches)
LAYER_DX = 4.2  # horizontal distance between layers
NODE_SEP, DUMMY_SEP = 1.7, 0.9  # minimum vertical distance between slots of one layer
INCH_PER_UNIT = 0.5
Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in layout units


@dataclass
class _Layout:
    """Positions of states and of the waypoints (dummy slots) of edges that skip layers."""

    layer: dict[Any, int] = field(default_factory=dict)
    y: dict[Any, float] = field(default_factory=dict)
    paths: list[list[Any]] = field(default_factory=list)  # per edge: source, dummies..., target

    def x(self, v: Any) -> float:
        return self.layer[v] * LAYER_DX


def _layout(g: CellGraph) -> _Layout:
    """A small Sugiyama layout: layers by longest path, dummies on long edges, barycentre ordering, then a
    relaxation that straightens edges while keeping the order and the spacing of each layer."""
    lay = _Layout()
    rank = {0: 0, 1: 0}
    for s in range(2, g.output):
        rank[s] = 1 + max(rank[src] for src, dst, _ in g.edges if dst == s)
    rank[g.output] = 1 + max((rank[src] for src, dst, _ in g.edges if dst == g.output), default=0)
    lay.layer.update(rank)
    layers: list[list[Any]] = [[] for _ in range(rank[g.output] + 1)]
    for s in sorted(rank):
        layers[rank[s]].append(s)
    for e, (src, dst, _) in enumerate(g.edges):
        path = [src]
        for level in range(rank[src] + 1, rank[dst]):
            dummy = ("dummy", e, level)
            lay.layer[dummy] = level
            layers[level].append(dummy)
            path.append(dummy)
        path.append(dst)
        lay.paths.append(path)
    pred: dict[Any, list[Any]] = {v: [] for v in lay.layer}
    succ: dict[Any, list[Any]] = {v: [] for v in lay.layer}
    for path in lay.paths:
        for a, b in zip(path, path[1:]):
            succ[a].append(b)
            pred[b].append(a)

    # Order within layers by the barycentre of the neighbours, sweeping down and up; c_{k-2} stays above c_{k-1}.
    pos = {v: i for level in layers for i, v in enumerate(level)}

    def tie(v: Any) -> tuple:
        return (0, v, 0) if isinstance(v, int) else (1, v[1], v[2])

    for sweep in range(6):
        down = sweep % 2 == 0
        order = range(1, len(layers)) if down else range(len(layers) - 2, 0, -1)
        for level in order:
            nbrs = pred if down else succ

            def key(v: Any, nbrs: dict = nbrs) -> tuple:
                near = [pos[u] for u in nbrs[v]]
                return (sum(near) / len(near) if near else pos[v], tie(v))

            layers[level].sort(key=key)
            pos.update({v: i for i, v in enumerate(layers[level])})

    def sep(a: Any, b: Any) -> float:
        return NODE_SEP if isinstance(a, int) and isinstance(b, int) else DUMMY_SEP

    for level in layers:  # start evenly spaced, centred on 0, top (first) at the largest y
        ys = [0.0]
        for a, b in zip(level, level[1:]):
            ys.append(ys[-1] - sep(a, b))
        shift = (ys[0] + ys[-1]) / 2
        lay.y.update({v: yv - shift for v, yv in zip(level, ys)})
    for _ in range(60):
        for level in layers[1:]:
            for v in level:
                near = pred[v] + succ[v]
                lay.y[v] = 0.5 * lay.y[v] + 0.5 * sum(lay.y[u] for u in near) / len(near)
            for _ in range(len(level)):  # push neighbours apart until the spacing holds
                for a, b in zip(level, level[1:]):
                    gap = lay.y[a] - lay.y[b]
                    if gap < sep(a, b):
                        push = (sep(a, b) - gap) / 2
                        lay.y[a] += push
                        lay.y[b] -= push
        # The inputs stay wide apart, at the span of the tallest layer, so that their edges fan out.
        top = max(lay.y[v] for level in layers[1:] for v in level)
        bottom = min(lay.y[v] for level in layers[1:] for v in level)
        half = max(NODE_SEP, 0.75 * (top - bottom)) / 2
        mid = (top + bottom) / 2
        lay.y[0], lay.y[1] = mid + half, mid - half
    return lay


def _bezier(p0: tuple[float, float], p1: tuple[float, float], n: int = 24) -> list[tuple[float, float]]:
    """Points of the cubic with horizontal tangents at both ends, from p0 to p1."""
    (x0, y0), (x1, y1) = p0, p1
    cx = (x1 - x0) * 0.5
    c0, c1 = (x0 + cx, y0), (x1 - cx, y1)
    pts = []
    for i in range(n + 1):
        t = i / n
        a, b, c, d = (1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t**2, t**3
        pts.append((a * x0 + b * c0[0] + c * c1[0] + d * x1, a * y0 + b * c0[1] + c * c1[1] + d * y1))
    return pts


def _edge_points(g: CellGraph, lay: _Layout) -> list[list[tuple[float, float]]]:
    """The anchor points of every edge: out of the source's right side, through its dummies, into the target's
    left side. Edges leaving (entering) one box get separate ports, ordered by where they go (come from)."""
    out_ports: dict[int, list[int]] = {}
    in_ports: dict[int, list[int]] = {}
    for e, path in enumerate(lay.paths):
        out_ports.setdefault(path[0], []).append(e)
        in_ports.setdefault(path[-1], []).append(e)

    def port_offsets(edges: list[int], other_end: int) -> dict[int, float]:
        edges = sorted(edges, key=lambda e: (-lay.y[lay.paths[e][other_end]], e))
        span = BOX_H * 0.55
        n = len(edges)
        return {e: (span / 2 - span * i / (n - 1)) if n > 1 else 0.0 for i, e in enumerate(edges)}

    out_off: dict[int, float] = {}
    in_off: dict[int, float] = {}
    for edges in out_ports.values():
        out_off.update(port_offsets(edges, 1))
    for edges in in_ports.values():
        in_off.update(port_offsets(edges, -2))
    anchors = []
    for e, path in enumerate(lay.paths):
        src, dst = path[0], path[-1]
        pts = [(lay.x(src) + BOX_W / 2, lay.y[src] + out_off[e])]
        pts += [(lay.x(d), lay.y[d]) for d in path[1:-1]]
        pts.append((lay.x(dst) - BOX_W / 2, lay.y[dst] + in_off[e]))
        anchors.append(pts)
    return anchors


def _overlap(a: Box, b: Box) -> float:
    """Overlap area of two boxes (x0, y0, x1, y1)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0


def _draw_with_matplotlib(
    gene: Gene, concat: Sequence[int], stem: Path, formats: Iterable[str], title: str | None
) -> tuple[list[Path], list[Box], list[Box]]:
    """Draw with matplotlib; returns the written paths and the boxes of the op labels and of the nodes."""
    plt = pyplot()
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
    from matplotlib.path import Path as MplPath

    g = cell_graph(gene, concat)
    lay = _layout(g)
    anchors = _edge_points(g, lay)
    real = [v for v in lay.layer if isinstance(v, int)]
    xs = [lay.x(v) for v in lay.layer]
    ys = list(lay.y.values())
    margin = 0.45
    x0, x1 = min(xs) - BOX_W / 2 - margin, max(xs) + BOX_W / 2 + margin
    y0, y1 = min(ys) - BOX_H / 2 - margin, max(ys) + BOX_H / 2 + margin
    title_h = 0.6 if title else 0.0
    # SVG text stays text (searchable, editable); a fixed hash salt keeps the SVG the same from run to run.
    with plt.rc_context({"svg.hashsalt": "rarts", "svg.fonttype": "none", "font.family": "DejaVu Sans"}):
        fig = plt.figure(figsize=((x1 - x0) * INCH_PER_UNIT, (y1 - y0 + title_h) * INCH_PER_UNIT))
        ax = fig.add_axes((0, 0, 1, 1))
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1 + title_h)
        ax.axis("off")
        if title:
            ax.text((x0 + x1) / 2, y1 + title_h / 2, title, ha="center", va="center", fontsize=13)

        boxes = {}
        for v in real:
            cx, cy = lay.x(v), lay.y[v]
            color = INPUT_COLOR if v < 2 else OUTPUT_COLOR if v == g.output else NODE_COLOR
            ax.add_patch(
                FancyBboxPatch(
                    (cx - BOX_W / 2, cy - BOX_H / 2),
                    BOX_W,
                    BOX_H,
                    boxstyle="round,pad=0,rounding_size=0.12",
                    facecolor=color,
                    edgecolor="#333333",
                    linewidth=1.3,
                    zorder=3,
                )
            )
            text = g.label(v)
            text = f"${text[:1]}_{text[2:]}$" if text.startswith("c_") else text
            ax.text(cx, cy, text, ha="center", va="center", fontsize=13, zorder=4)
            boxes[v] = (cx - BOX_W / 2, cy - BOX_H / 2, cx + BOX_W / 2, cy + BOX_H / 2)

        curves: list[list[list[tuple[float, float]]]] = []  # per edge, per segment, sampled points
        for e, pts in enumerate(anchors):
            op = g.edges[e][2]
            color = OP_COLORS.get(op, "#000000") if op else "#444444"
            segments = [_bezier(a, b) for a, b in zip(pts, pts[1:])]
            curves.append(segments)
            verts = [pts[0]]
            codes = [MplPath.MOVETO]
            for a, b in zip(pts, pts[1:]):
                cx = (b[0] - a[0]) * 0.5
                verts += [(a[0] + cx, a[1]), (b[0] - cx, b[1]), b]
                codes += [MplPath.CURVE4] * 3
            ax.add_patch(
                FancyArrowPatch(
                    path=MplPath(verts, codes),
                    arrowstyle="-|>,head_length=0.55,head_width=0.28",
                    mutation_scale=14,
                    color=color,
                    linewidth=1.6,
                    zorder=2,
                )
            )
        labels = _place_labels(fig, ax, g, curves, list(boxes.values()))
        paths = []
        for fmt in formats:
            path = stem.with_suffix(f".{fmt}")
            metadata = {"Date": None} if fmt == "svg" else {"CreationDate": None} if fmt == "pdf" else None
            fig.savefig(path, format=fmt, dpi=200, metadata=metadata, facecolor="white")
            paths.append(path)
        plt.close(fig)
    return paths, labels, list(boxes.values())


def _place_labels(fig: Any, ax: Any, g: CellGraph, curves: list, boxes: list[Box]) -> list[Box]:
    """Put each op label on its own edge where it overlaps the fewest boxes, labels and other edges.

    Returns the boxes of the placed labels."""
    renderer = fig.canvas.get_renderer()
    to_data = ax.transData.inverted()
    placed: list[Box] = []
    for e, segments in enumerate(curves):
        op = g.edges[e][2]
        if op is None:
            continue
        color = OP_COLORS.get(op, "#000000")
        text = ax.text(
            0,
            0,
            op,
            ha="center",
            va="center",
            fontsize=9.5,
            color=color,
            zorder=5,
            bbox={"boxstyle": "round,pad=0.18", "facecolor": "white", "edgecolor": color, "linewidth": 0.8},
        )
        ext = text.get_window_extent(renderer)
        (ax0, ay0), (ax1, ay1) = to_data.transform([(ext.x0, ext.y0), (ext.x1, ext.y1)])
        w, h = abs(ax1 - ax0) + 0.12, abs(ay1 - ay0) + 0.12  # plus the bbox padding
        best: tuple[float, float, float] | None = None
        n_seg = len(segments)
        for s, pts in enumerate(segments):
            for i in range(4, len(pts) - 4):
                px, py = pts[i]
                t = i / (len(pts) - 1)
                box = (px - w / 2, py - h / 2, px + w / 2, py + h / 2)
                cost = sum(_overlap(box, b) for b in boxes) * 50
                cost += sum(_overlap(box, b) for b in placed) * 50
                for f, other in enumerate(curves):
                    if f != e:
                        cost += 0.02 * sum(
                            1 for seg in other for qx, qy in seg if box[0] < qx < box[2] and box[1] < qy < box[3]
                        )
                cost += 0.05 * abs(t - 0.5) + 0.02 * (n_seg - 1 - s)
                if best is None or cost < best[0] - 1e-9:
                    best = (cost, px, py)
        assert best is not None
        text.set_position((best[1], best[2]))
        placed.append((best[1] - w / 2, best[2] - h / 2, best[1] + w / 2, best[2] + h / 2))
    return placed


# --- cell diagrams: entry points ------------------------------------------------------------------------------


def plot_cell(
    gene: Gene,
    concat: Sequence[int],
    stem: str | Path,
    formats: Iterable[str] = FORMATS,
    engine: str = "auto",
    title: str | None = None,
) -> tuple[list[Path], str]:
    """Draw one cell to `stem`.{svg,png,pdf}. engine: auto (dot when on the PATH, else matplotlib), dot or
    matplotlib. Returns the written paths and the engine that drew them."""
    formats = list(formats)
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise UsageError(f"unknown figure format {bad[0]!r}; known: {', '.join(FORMATS)}")
    if engine not in ENGINES:
        raise UsageError(f"unknown drawing engine {engine!r}; known: {', '.join(ENGINES)}")
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    dot = shutil.which("dot") if engine in ("auto", "dot") else None
    if engine == "dot" and dot is None:
        raise UsageError("--engine dot needs Graphviz's dot on the PATH (e.g. apt-get install graphviz)")
    if dot is not None:
        return _draw_with_dot(dot, cell_dot_source(gene, concat, title), stem, formats), "dot"
    return _draw_with_matplotlib(gene, concat, stem, formats, title)[0], "matplotlib"


def plot_genotype(
    genotype: Genotype, out_dir: str | Path, formats: Iterable[str] = FORMATS, engine: str = "auto"
) -> tuple[list[Path], str]:
    """Draw the normal and the reduction cell to out_dir/normal.* and out_dir/reduce.*."""
    out_dir = Path(out_dir)
    formats = list(formats)
    paths, used = plot_cell(genotype.normal, genotype.normal_concat, out_dir / "normal", formats, engine, "normal cell")
    more, _ = plot_cell(genotype.reduce, genotype.reduce_concat, out_dir / "reduce", formats, engine, "reduction cell")
    return paths + more, used
