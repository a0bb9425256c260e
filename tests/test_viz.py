"""Cell diagrams: the graph, the DOT source, the matplotlib drawing (always) and Graphviz (when installed)."""

import shutil

import pytest
import torch
from PIL import Image

from rarts import viz
from rarts.errors import UsageError
from rarts.genotype import KNOWN_GENOTYPES, derive_genotype

V2 = KNOWN_GENOTYPES["DARTS_V2"]


def test_cell_graph_has_an_edge_per_pair_and_per_concat_state():
    g = viz.cell_graph(V2.normal, V2.normal_concat)
    assert g.steps == 4 and g.output == 6
    assert [e for e in g.edges if e[2] is not None][7] == (2, 5, "dil_conv_3x3")
    assert [e for e in g.edges if e[2] is None] == [(s, 6, None) for s in (2, 3, 4, 5)]
    assert [g.label(s) for s in range(7)] == ["c_{k-2}", "c_{k-1}", "0", "1", "2", "3", "c_{k}"]


def test_dot_source_is_left_to_right_with_labelled_edges():
    src = viz.cell_dot_source(V2.normal, V2.normal_concat, title="normal cell")
    assert "rankdir=LR" in src and 'label="normal cell"' in src
    assert src.count('label="sep_conv_3x3"') == 5 and 'label="dil_conv_3x3"' in src
    assert "c<SUB>k-2</SUB>" in src and src.count("{") == src.count("}")


def layout_is_left_to_right(gene, concat):
    g = viz.cell_graph(gene, concat)
    lay = viz._layout(g)
    assert lay.layer[0] == lay.layer[1] == 0 and lay.y[0] > lay.y[1]  # c_{k-2} above c_{k-1}
    assert lay.layer[g.output] == max(lay.layer.values())
    for path in lay.paths:
        assert all(lay.layer[b] == lay.layer[a] + 1 for a, b in zip(path, path[1:]))


def random_genotypes(n):
    gen = torch.Generator().manual_seed(0)
    return [derive_genotype(torch.randn(14, 8, generator=gen), torch.randn(14, 8, generator=gen)) for _ in range(n)]


CELLS = [(g.normal, g.normal_concat) for g in KNOWN_GENOTYPES.values()] + [
    (g.reduce, g.reduce_concat) for g in [V2] + random_genotypes(3)
]


@pytest.mark.parametrize("gene, concat", CELLS)
def test_matplotlib_drawing_is_clean(tmp_path, gene, concat):
    """Edges run left to right, one layer at a time, and no op label overlaps another label or a node box."""
    layout_is_left_to_right(gene, concat)
    paths, labels, boxes = viz._draw_with_matplotlib(gene, concat, tmp_path / "cell", ["png"], "cell")
    assert len(labels) == len(gene)
    for i, a in enumerate(labels):
        assert all(viz._overlap(a, b) == 0 for b in labels[i + 1 :])
        assert all(viz._overlap(a, b) == 0 for b in boxes)
    with Image.open(paths[0]) as im:
        assert im.width > im.height > 200


def test_plot_genotype_with_matplotlib_when_dot_is_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    paths, engine = viz.plot_genotype(V2, tmp_path / "cells")
    assert engine == "matplotlib"
    assert sorted(p.name for p in paths) == sorted(f"{c}.{f}" for c in ("normal", "reduce") for f in viz.FORMATS)
    assert all(p.stat().st_size > 1000 for p in paths)
    svg = (tmp_path / "cells" / "normal.svg").read_text()
    assert "sep_conv_3x3" in svg and "dil_conv_3x3" in svg  # text kept as text
    assert (tmp_path / "cells" / "reduce.pdf").read_bytes().startswith(b"%PDF")
    with pytest.raises(UsageError, match="dot"):
        viz.plot_genotype(V2, tmp_path / "x", engine="dot")


def test_bad_format_or_engine(tmp_path):
    with pytest.raises(UsageError, match="'jpg'"):
        viz.plot_cell(V2.normal, V2.normal_concat, tmp_path / "c", formats=["jpg"])
    with pytest.raises(UsageError, match="'tikz'"):
        viz.plot_cell(V2.normal, V2.normal_concat, tmp_path / "c", engine="tikz")


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz dot not installed")
def test_plot_genotype_with_graphviz(tmp_path):
    paths, engine = viz.plot_genotype(V2, tmp_path, engine="dot")
    assert engine == "dot" and len(paths) == 6
    assert "sep_conv_3x3" in (tmp_path / "normal.svg").read_text()
    with Image.open(tmp_path / "reduce.png") as im:
        assert im.width > 200
