"""Genotypes: the DARTS derivation rule, JSON and DARTS-string round trips, loading, and rejected input."""

import json

import numpy as np
import pytest
import torch

from rarts.errors import UsageError
from rarts.genotype import (
    DEFAULT_CONCAT,
    KNOWN_GENOTYPES,
    Genotype,
    derive_genotype,
    describe_genotype,
    load_genotype,
    parse_genotype_string,
)
from rarts.ops import PRIMITIVES

NONE = PRIMITIVES.index("none")

# DARTS_V2 exactly as DARTS' genotypes.py prints it.
DARTS_V2_TEXT = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], "
    "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
    "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])"
)


def reference_gene(alpha: np.ndarray) -> list[tuple[str, int]]:
    """The rule written out plainly: softmax rows; per node, the two rows with the largest non-none maximum."""
    w = np.exp(alpha - alpha.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    gene, start = [], 0
    for node in range(4):
        rows = w[start : start + node + 2]
        strength = [max(r[k] for k in range(len(r)) if k != NONE) for r in rows]
        order = sorted(range(node + 2), key=lambda j: (-strength[j], j))[:2]
        for j in order:
            ks = [k for k in range(len(rows[j])) if k != NONE]
            best = max(ks, key=lambda k: (rows[j][k], -k))
            gene.append((PRIMITIVES[best], j))
        start += node + 2
    return gene


@pytest.mark.parametrize("seed", range(10))
def test_derivation_matches_the_rule_written_out(seed):
    rng = np.random.default_rng(seed)
    an, ar = rng.normal(size=(14, 8)), rng.normal(size=(14, 8))
    g = derive_genotype(torch.tensor(an), torch.tensor(ar))
    assert list(g.normal) == reference_gene(an)
    assert list(g.reduce) == reference_gene(ar)
    assert g.normal_concat == g.reduce_concat == DEFAULT_CONCAT


def test_none_is_never_chosen_even_when_strongest():
    alpha = torch.zeros(14, 8)
    alpha[:, NONE] = 10.0
    alpha[:, PRIMITIVES.index("sep_conv_5x5")] = 0.5
    alpha[2, :] = torch.tensor([50.0, 0, 0, 0, 0, 0, 0, 0])  # node 1, input 0: all weight on none
    g = derive_genotype(alpha, alpha)
    assert all(op != "none" for op, _ in g.normal + g.reduce)
    assert set(g.normal[2:4]) == {("sep_conv_5x5", 1), ("sep_conv_5x5", 2)}  # the none-heavy edge is dropped


def test_edges_are_ranked_on_softmax_not_raw_alpha():
    """Node 1's edges: A has raw alpha 2 on 7 ops (softmax max 0.14), B has 1.5 on one op (0.39),
    D has 1.0 on one op (0.28). The softmax picks B and D; ranking raw alpha would pick A and B."""
    alpha = torch.zeros(14, 8)
    alpha[2, 1:] = 2.0  # A: node 1, input 0
    alpha[3, PRIMITIVES.index("max_pool_3x3")] = 1.5  # B: node 1, input 1
    alpha[4, PRIMITIVES.index("sep_conv_3x3")] = 1.0  # D: node 1, input 2
    g = derive_genotype(alpha, alpha)
    assert g.normal[2:4] == (("max_pool_3x3", 1), ("sep_conv_3x3", 2))


def test_ties_are_broken_stably():
    """All-equal alpha: the lower edge index and the first non-none op win."""
    g = derive_genotype(torch.zeros(14, 8), torch.zeros(14, 8))
    assert g.normal == (("max_pool_3x3", 0), ("max_pool_3x3", 1)) * 4
    assert g == derive_genotype(torch.zeros(14, 8), torch.zeros(14, 8))


def test_derivation_rejects_bad_alpha():
    with pytest.raises(ValueError, match="shape"):
        derive_genotype(torch.zeros(14, 7), torch.zeros(14, 8))
    with pytest.raises(ValueError, match="non-finite"):
        derive_genotype(torch.full((14, 8), float("nan")), torch.zeros(14, 8))


def random_genotypes(n=5):
    gen = torch.Generator().manual_seed(1)
    return [derive_genotype(torch.randn(14, 8, generator=gen), torch.randn(14, 8, generator=gen)) for _ in range(n)]


@pytest.mark.parametrize("g", list(KNOWN_GENOTYPES.values()) + random_genotypes())
def test_json_and_string_round_trips(g):
    assert Genotype.from_dict(json.loads(g.to_json())) == g
    assert parse_genotype_string(g.to_darts_string()) == g
    assert hash(Genotype.from_dict(g.to_dict())) == hash(g)


def test_known_genotypes_are_the_darts_ones():
    assert parse_genotype_string(DARTS_V2_TEXT) == KNOWN_GENOTYPES["DARTS_V2"] == KNOWN_GENOTYPES["DARTS"]
    assert KNOWN_GENOTYPES["DARTS_V1"].normal[:2] == (("sep_conv_3x3", 1), ("sep_conv_3x3", 0))


def test_string_forms_range_nested_and_spacing():
    g = KNOWN_GENOTYPES["DARTS_V2"]
    assert parse_genotype_string(DARTS_V2_TEXT.replace("[2, 3, 4, 5]", "range(2, 6)")) == g

    def per_node(gene):  # the pt.darts form: one list of pairs per node
        nodes = [", ".join(f"('{op}', {i})" for op, i in gene[2 * n : 2 * n + 2]) for n in range(4)]
        return "[" + ", ".join(f"[{node}]" for node in nodes) + "]"

    nested = f"Genotype(normal={per_node(g.normal)}, normal_concat=range(2, 6), reduce={per_node(g.reduce)}, "
    nested += "reduce_concat=range(2,6),)"
    assert parse_genotype_string(nested) == g
    assert parse_genotype_string("  " + DARTS_V2_TEXT.replace(", ", ",\n   ") + "\n") == g


def test_genotype_accepts_lists_and_stores_tuples():
    g = KNOWN_GENOTYPES["DARTS_V2"]
    h = Genotype([list(p) for p in g.normal], [2, 3, 4, 5], [list(p) for p in g.reduce], range(2, 6))
    assert h == g and isinstance(h.normal, tuple) and isinstance(h.reduce_concat, tuple)


def test_load_genotype_from_every_source(tmp_path):
    g = KNOWN_GENOTYPES["DARTS_V1"]
    (tmp_path / "g.json").write_text(g.to_json())
    (tmp_path / "g.txt").write_text(g.to_darts_string() + "\n")
    run = tmp_path / "run"
    run.mkdir()
    (run / "genotype.json").write_text(json.dumps({"genotype": g.to_dict(), "epoch": 49}))
    assert load_genotype("DARTS_V1") == g
    assert load_genotype(str(tmp_path / "g.json")) == g
    assert load_genotype(str(tmp_path / "g.txt")) == g
    assert load_genotype(str(run)) == g
    assert load_genotype(g.to_darts_string()) == g
    assert load_genotype(json.dumps(g.to_dict())) == g


def test_a_line_copied_from_darts_genotypes_py_is_read(tmp_path):
    g = KNOWN_GENOTYPES["DARTS_V2"]
    line = "DARTS_V2 = " + DARTS_V2_TEXT
    assert parse_genotype_string(line) == g
    assert load_genotype(line) == g  # over 255 characters: once an OSError from probing it as a path
    assert load_genotype("  PC_DARTS_cifar=" + DARTS_V2_TEXT + "\n") == g
    (tmp_path / "genotypes.py").write_text(line + "\n")
    (tmp_path / "wrapped.py").write_text("\n  my_cell  =  " + DARTS_V2_TEXT.replace(", ", ",\n    ") + "\n\n")
    assert load_genotype(str(tmp_path / "genotypes.py")) == g
    assert load_genotype(str(tmp_path / "wrapped.py")) == g
    (tmp_path / "bad.py").write_text(line.replace("'dil_conv_3x3', 2", "'dil_conv_3x3' 2") + "\n")
    with pytest.raises(UsageError, match=r"bad.py: genotype string: expected ',', found 2 at position \d+"):
        load_genotype(str(tmp_path / "bad.py"))


@pytest.mark.parametrize(
    "text", ["x" * 300, "Genotyp(" + "x" * 300, "a/" + "x" * 300], ids=["plain", "near-miss", "with-slash"]
)
def test_long_text_that_is_no_genotype_is_a_usage_error_not_an_os_error(text):
    with pytest.raises(UsageError) as info:
        load_genotype(text)
    message = str(info.value)
    assert ("unknown genotype" in message or "not found" in message) and "\n" not in message


def test_describe_names_inputs_and_nodes():
    text = describe_genotype(KNOWN_GENOTYPES["DARTS_V2"])
    assert "node 3 = skip_connect(c_{k-2}) + dil_conv_3x3(node 0)" in text
    assert "reduction cell" in text


BAD_STRINGS = [
    (DARTS_V2_TEXT.replace("'sep_conv_3x3', 0", "'sep_conv_7x7', 0", 1), "unknown op 'sep_conv_7x7'"),
    (DARTS_V2_TEXT.replace("('dil_conv_3x3', 2)", "('none', 2)"), "unknown op 'none'"),
    (DARTS_V2_TEXT.replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', 5)"), "node 3 takes input 5"),
    (DARTS_V2_TEXT.replace("('sep_conv_3x3', 1)", "('sep_conv_3x3', -1)", 1), "node 0 takes input -1"),
    (DARTS_V2_TEXT[:-1], "end of text"),
    (DARTS_V2_TEXT + " extra", "'extra'"),
    (DARTS_V2_TEXT.replace("normal_concat", "normal_concatenation"), "unknown field 'normal_concatenation'"),
    (DARTS_V2_TEXT.replace("('sep_conv_3x3', 0), ", "('sep_conv_3x3' 0), ", 1), "found 0"),
    (DARTS_V2_TEXT.replace("[2, 3, 4, 5]", "range(2, 9)", 1), "normal_concat"),
    (DARTS_V2_TEXT.replace("('sep_conv_3x3', 0)", "(sep_conv_3x3, 0)", 1), "'sep_conv_3x3'"),
    (DARTS_V2_TEXT.replace(", reduce_concat=[2, 3, 4, 5]", ""), "missing field(s) reduce_concat"),
    (DARTS_V2_TEXT.replace("('skip_connect', 0), ('dil_conv_3x3', 2)", "('skip_connect', 0)"), "pairs"),
    ("Genotype(normal=[('sep_conv_3x3', 1.5)])", "'.5"),
    ("__import__('os').system('true')", "unknown genotype"),
    ("V2 = " + DARTS_V2_TEXT.replace("'sep_conv_3x3', 0", "'sep_conv_7x7', 0", 1), "'sep_conv_7x7' at position 23"),
    ("V2 = " + DARTS_V2_TEXT[:-1], "end of text"),
    ("V2 = Genotype = " + DARTS_V2_TEXT, 'unknown genotype "V2 = Genotype = Genotype('),
    ("import os = Genotype(", "unknown genotype"),
]


@pytest.mark.parametrize("text, fragment", BAD_STRINGS)
def test_malformed_strings_are_one_line_errors_naming_the_problem(text, fragment):
    with pytest.raises(UsageError) as info:
        load_genotype(text)
    message = str(info.value)
    assert fragment in message and "\n" not in message


BAD_JSON = [
    ("[1, 2]", "expected an object"),
    ('{"normal": []}', "missing key(s) reduce"),
    ('{"normal": [["sep_conv_3x3", 0]], "reduce": [["max_pool_3x3", 0], ["max_pool_3x3", 1]]}', "two (op, input)"),
    (
        '{"normal": [["conv_9x9", 0], ["max_pool_3x3", 1]], "reduce": [["max_pool_3x3", 0], ["max_pool_3x3", 1]]}',
        "unknown op 'conv_9x9'",
    ),
    (
        '{"normal": [["skip_connect", 0], ["max_pool_3x3", 2]], "reduce": [["max_pool_3x3", 0], ["max_pool_3x3", 1]]}',
        "node 0 takes input 2",
    ),
    (
        '{"normal": [["skip_connect", "0"], ["max_pool_3x3", 1]], '
        '"reduce": [["max_pool_3x3", 0], ["max_pool_3x3", 1]]}',
        "takes input '0'",
    ),
    ('{"normal": "sep_conv_3x3", "reduce": []}', "list of [op, input] pairs"),
    ("{not json", "neither JSON nor a DARTS genotype string"),
]


@pytest.mark.parametrize("text, fragment", BAD_JSON)
def test_malformed_json_files_are_errors_naming_the_file(tmp_path, text, fragment):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(UsageError) as info:
        load_genotype(str(path))
    message = str(info.value)
    assert fragment in message and str(path) in message and "\n" not in message


def test_unknown_name_missing_file_and_folder_without_genotype(tmp_path):
    with pytest.raises(UsageError, match="unknown genotype 'DARTS_V9'"):
        load_genotype("DARTS_V9")
    with pytest.raises(UsageError, match="not found"):
        load_genotype(str(tmp_path / "missing.json"))
    with pytest.raises(UsageError, match="without genotype.json"):
        load_genotype(str(tmp_path))
