"""Genotypes: the discrete cells a search ends with.

A Genotype lists, for each of the 4 nodes of the normal and the reduction cell, two (op, input) pairs,
where input 0 is c_{k-2}, 1 is c_{k-1} and 2..5 are earlier nodes. It is derived from alpha by the DARTS
rule, stored as JSON, and read back from JSON or from the DARTS string form (parsed, never eval'ed).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from rarts.errors import UsageError
from rarts.ops import PRIMITIVES

NUM_NODES = 4
DEFAULT_CONCAT = (2, 3, 4, 5)

Gene = tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Genotype:
    normal: Gene
    normal_concat: tuple[int, ...]
    reduce: Gene
    reduce_concat: tuple[int, ...]

    def __post_init__(self) -> None:
        # Accept lists too (e.g. Genotype(normal=[...], ...)) but store tuples, so genotypes hash and compare.
        for cell in ("normal", "reduce"):
            try:
                object.__setattr__(self, cell, tuple((op, idx) for op, idx in getattr(self, cell)))
                object.__setattr__(self, f"{cell}_concat", tuple(getattr(self, f"{cell}_concat")))
            except (TypeError, ValueError):
                raise UsageError(f"genotype {cell} cell must be a list of (op, input) pairs") from None
        for cell in ("normal", "reduce"):
            gene = getattr(self, cell)
            if len(gene) % 2 or not gene:
                raise UsageError(f"genotype {cell} cell needs two (op, input) pairs per node, got {len(gene)} pairs")
            for pos, (op, idx) in enumerate(gene):
                if op not in PRIMITIVES or op == "none":
                    raise UsageError(f"genotype {cell} cell: unknown op {op!r}; known: {', '.join(PRIMITIVES[1:])}")
                node = pos // 2
                if not isinstance(idx, int) or isinstance(idx, bool) or not 0 <= idx < node + 2:
                    raise UsageError(
                        f"genotype {cell} cell: node {node} takes input {idx!r}, but only 0..{node + 1} exist"
                    )
            concat = getattr(self, f"{cell}_concat")
            steps = len(gene) // 2
            if not concat or any(not isinstance(c, int) or not 0 <= c < steps + 2 for c in concat):
                raise UsageError(f"genotype {cell}_concat {list(concat)} must name states 0..{steps + 1}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "normal": [[op, idx] for op, idx in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": [[op, idx] for op, idx in self.reduce],
            "reduce_concat": list(self.reduce_concat),
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "genotype") -> Genotype:
        if not isinstance(data, dict):
            raise UsageError(f"{source}: expected an object with normal, normal_concat, reduce, reduce_concat")
        if "genotype" in data and "normal" not in data:  # e.g. a summary.json holding the genotype
            inner = data["genotype"]
            return parse_genotype_string(inner) if isinstance(inner, str) else cls.from_dict(inner, source)
        missing = [k for k in ("normal", "reduce") if k not in data]
        if missing:
            raise UsageError(f"{source}: missing key(s) {', '.join(missing)}")

        def gene(key: str) -> Gene:
            items = data[key]
            if not isinstance(items, list) or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in items):
                raise UsageError(f"{source}: {key} must be a list of [op, input] pairs")
            return tuple((str(op), idx) for op, idx in items)

        def concat(key: str) -> tuple[int, ...]:
            value = data.get(key, list(DEFAULT_CONCAT))
            if not isinstance(value, list):
                raise UsageError(f"{source}: {key} must be a list of integers")
            return tuple(value)

        try:
            return cls(gene("normal"), concat("normal_concat"), gene("reduce"), concat("reduce_concat"))
        except UsageError as e:
            raise UsageError(f"{source}: {e}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_darts_string(self) -> str:
        """The form DARTS' genotypes.py uses, readable by parse_genotype_string and by DARTS users."""

        def gene(g: Gene) -> str:
            return "[" + ", ".join(f"('{op}', {idx})" for op, idx in g) + "]"

        return (
            f"Genotype(normal={gene(self.normal)}, normal_concat={list(self.normal_concat)}, "
            f"reduce={gene(self.reduce)}, reduce_concat={list(self.reduce_concat)})"
        )


def derive_gene(weights: torch.Tensor, num_nodes: int = NUM_NODES) -> Gene:
    """The DARTS rule on one cell's mixing weights (softmax of alpha), shape (14, 8).

    For each node keep the 2 incoming edges whose strongest non-none weight is largest, and on each the
    strongest non-none op. Ties go to the lower edge index and the lower op index.
    """
    none = PRIMITIVES.index("none")
    w = weights.detach().cpu().double().clone()
    w[:, none] = -float("inf")
    gene: list[tuple[str, int]] = []
    start = 0
    for i in range(num_nodes):
        n_in = i + 2
        block = w[start : start + n_in]
        strength = block.max(dim=1).values.tolist()
        edges = sorted(range(n_in), key=lambda j: -strength[j])[:2]  # sorted() is stable: ties keep order
        for j in edges:
            row = block[j].tolist()
            k_best = max(range(len(row)), key=lambda k: (row[k], -k))
            gene.append((PRIMITIVES[k_best], j))
        start += n_in
    return tuple(gene)


def derive_genotype(alpha_normal: torch.Tensor, alpha_reduce: torch.Tensor) -> Genotype:
    """Genotype from raw alpha (14, 8) of both cells: softmax per edge, then the DARTS rule."""
    for name, alpha in (("alpha_normal", alpha_normal), ("alpha_reduce", alpha_reduce)):
        if tuple(alpha.shape) != (sum(2 + i for i in range(NUM_NODES)), len(PRIMITIVES)):
            raise ValueError(f"{name} has shape {tuple(alpha.shape)}, expected (14, {len(PRIMITIVES)})")
        if not torch.isfinite(alpha).all():
            raise ValueError(f"{name} has non-finite values: no genotype can be derived")
    wn = torch.softmax(alpha_normal.detach().double(), dim=-1)
    wr = torch.softmax(alpha_reduce.detach().double(), dim=-1)
    return Genotype(derive_gene(wn), DEFAULT_CONCAT, derive_gene(wr), DEFAULT_CONCAT)


# --- the DARTS string form ---------------------------------------------------------------------------------------

# `Genotype(...)`, or a line copied from DARTS' genotypes.py: `DARTS_V2 = Genotype(...)`.
_DARTS_STRING = re.compile(r"(?:[A-Za-z_][A-Za-z_0-9]*\s*=\s*)?Genotype\s*\(")
_TOKEN = re.compile(
    r"\s*(?:(?P<str>'[^']*'|\"[^\"]*\")|(?P<int>-?\d+)|(?P<name>[A-Za-z_][A-Za-z_0-9]*)|(?P<punct>[()\[\],=]))"
)


class _Parser:
    def __init__(self, text: str):
        self.text = text = text.strip()
        self.tokens: list[tuple[str, Any, int]] = []
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m or m.end() == pos:
                bad = text[pos:].strip()[:20]
                raise UsageError(f"genotype string: unexpected text {bad!r} at position {pos}")
            kind = m.lastgroup
            raw = m.group(kind)
            value: Any = raw[1:-1] if kind == "str" else int(raw) if kind == "int" else raw
            self.tokens.append((kind, value, m.start(kind)))
            pos = m.end()
            while pos < len(text) and text[pos].isspace():
                pos += 1
        self.i = 0

    def peek(self) -> tuple[str, Any, int]:
        return self.tokens[self.i] if self.i < len(self.tokens) else ("end", None, len(self.text))

    def at(self, kind: str, value: Any) -> bool:
        tok = self.peek()
        return tok[0] == kind and tok[1] == value

    def take(self, kind: str, value: Any = None) -> Any:
        tok = self.peek()
        if tok[0] != kind or (value is not None and tok[1] != value):
            want = (
                repr(value) if value is not None else {"str": "a quoted op name", "int": "an integer"}.get(kind, kind)
            )
            got = "end of text" if tok[0] == "end" else repr(tok[1])
            raise UsageError(f"genotype string: expected {want}, found {got} at position {tok[2]}")
        self.i += 1
        return tok[1]

    def sequence(self, close: str, item: Callable[[], Any]) -> list[Any]:
        """Items up to the punctuation `close`, separated by commas (a trailing comma is allowed)."""
        items = []
        while not self.at("punct", close):
            items.append(item())
            if not self.at("punct", close):
                self.take("punct", ",")
        self.take("punct", close)
        return items

    def pair(self) -> tuple[str, int]:
        self.take("punct", "(")
        pos = self.peek()[2]
        op = self.take("str")
        if op not in PRIMITIVES or op == "none":
            raise UsageError(
                f"genotype string: unknown op {op!r} at position {pos}; known: {', '.join(PRIMITIVES[1:])}"
            )
        self.take("punct", ",")
        idx = self.take("int")
        self.take("punct", ")")
        return op, idx

    def gene(self) -> Gene:
        """A list of (op, input) pairs; a list of per-node lists of pairs (the pt.darts form) is flattened."""
        self.take("punct", "[")
        if self.at("punct", "["):
            nodes = self.sequence("]", self.gene)
            return tuple(pair for node in nodes for pair in node)
        return tuple(self.sequence("]", self.pair))

    def concat(self) -> tuple[int, ...]:
        if self.at("name", "range"):
            self.take("name", "range")
            self.take("punct", "(")
            lo = self.take("int")
            self.take("punct", ",")
            hi = self.take("int")
            self.take("punct", ")")
            return tuple(range(lo, hi))
        self.take("punct", "[")
        return tuple(self.sequence("]", lambda: self.take("int")))

    def field(self) -> tuple[str, Any]:
        pos = self.peek()[2]
        key = self.take("name")
        if key not in ("normal", "normal_concat", "reduce", "reduce_concat"):
            raise UsageError(f"genotype string: unknown field {key!r} at position {pos}")
        self.take("punct", "=")
        return key, self.gene() if key in ("normal", "reduce") else self.concat()

    def genotype(self) -> Genotype:
        # An assignment copied from DARTS' genotypes.py (`DARTS_V2 = Genotype(...)`): skip the name and '='.
        if len(self.tokens) > 1 and self.tokens[0][0] == "name" and self.tokens[1][:2] == ("punct", "="):
            self.i = 2
        self.take("name", "Genotype")
        self.take("punct", "(")
        fields: dict[str, Any] = {}
        for key, value in self.sequence(")", self.field):
            if key in fields:
                raise UsageError(f"genotype string: field {key!r} given twice")
            fields[key] = value
        if self.peek()[0] != "end":
            tok = self.peek()
            raise UsageError(f"genotype string: unexpected {tok[1]!r} at position {tok[2]}, after the closing ')'")
        missing = [k for k in ("normal", "normal_concat", "reduce", "reduce_concat") if k not in fields]
        if missing:
            raise UsageError(f"genotype string: missing field(s) {', '.join(missing)}")
        try:
            return Genotype(**fields)
        except UsageError as e:
            raise UsageError(f"genotype string: {e}") from None


def parse_genotype_string(text: str) -> Genotype:
    """Parse `Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=range(2, 6), reduce=[...], ...)`.

    A leading `NAME =` (a line of DARTS' genotypes.py, e.g. `DARTS_V2 = Genotype(...)`) is allowed.
    """
    return _Parser(text).genotype()


# --- known genotypes (from DARTS' genotypes.py) ------------------------------------------------------------------

KNOWN_GENOTYPES: dict[str, Genotype] = {
    "DARTS_V1": Genotype(
        normal=(
            ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 0),
            ("skip_connect", 0),
            ("sep_conv_3x3", 1),
            ("skip_connect", 0),
            ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 0),
            ("skip_connect", 2),
        ),
        normal_concat=DEFAULT_CONCAT,
        reduce=(
            ("max_pool_3x3", 0),
            ("max_pool_3x3", 1),
            ("skip_connect", 2),
            ("max_pool_3x3", 0),
            ("max_pool_3x3", 0),
            ("skip_connect", 2),
            ("skip_connect", 2),
            ("avg_pool_3x3", 0),
        ),
        reduce_concat=DEFAULT_CONCAT,
    ),
    "DARTS_V2": Genotype(
        normal=(
            ("sep_conv_3x3", 0),
            ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 0),
            ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1),
            ("skip_connect", 0),
            ("skip_connect", 0),
            ("dil_conv_3x3", 2),
        ),
        normal_concat=DEFAULT_CONCAT,
        reduce=(
            ("max_pool_3x3", 0),
            ("max_pool_3x3", 1),
            ("skip_connect", 2),
            ("max_pool_3x3", 1),
            ("max_pool_3x3", 0),
            ("skip_connect", 2),
            ("skip_connect", 2),
            ("max_pool_3x3", 1),
        ),
        reduce_concat=DEFAULT_CONCAT,
    ),
}
KNOWN_GENOTYPES["DARTS"] = KNOWN_GENOTYPES["DARTS_V2"]


def load_genotype(spec: str) -> Genotype:
    """A genotype from a known name, a JSON file, a DARTS string, or a search run folder (its genotype.json).

    A JSON object given inline (text starting with `{`) is read too. Every failure is a one-line UsageError.
    """
    spec = spec.strip()
    if spec in KNOWN_GENOTYPES:
        return KNOWN_GENOTYPES[spec]
    if _DARTS_STRING.match(spec):
        return parse_genotype_string(spec)
    if spec.startswith("{"):
        return _genotype_from_json_text(spec, "genotype JSON")
    path = Path(spec)
    try:
        is_dir = path.is_dir()
        is_file = not is_dir and path.is_file()
    except OSError:  # e.g. "File name too long": a long text that is no path (nor anything else we read)
        is_dir = is_file = False
    if is_dir:
        candidate = path / "genotype.json"
        if not candidate.is_file():
            raise UsageError(f"{path} is a folder without genotype.json: not a finished search run")
        path, is_file = candidate, True
    if is_file:
        try:
            text = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"cannot read genotype file {path}: {e}") from None
        if _DARTS_STRING.match(text):
            try:
                return parse_genotype_string(text)
            except UsageError as e:
                raise UsageError(f"{path}: {e}") from None
        return _genotype_from_json_text(text, str(path))
    if "/" in spec or "\\" in spec or spec.endswith((".json", ".txt")):
        raise UsageError(f"genotype file or folder not found: {spec}")
    shown = spec if len(spec) <= 80 else spec[:60] + "..."
    raise UsageError(
        f"unknown genotype {shown!r}: give a known name ({', '.join(KNOWN_GENOTYPES)}), a JSON file, "
        "a DARTS string or a search run folder"
    )


def _genotype_from_json_text(text: str, source: str) -> Genotype:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(
            f"{source} is neither JSON nor a DARTS genotype string: {e.msg}: line {e.lineno} column {e.colno}"
        ) from None
    return Genotype.from_dict(data, source=source)


def describe_genotype(genotype: Genotype) -> str:
    """A readable multi-line description: for each cell, each node's two inputs and the ops on them."""
    lines = []
    for cell, title in (("normal", "normal cell"), ("reduce", "reduction cell")):
        gene = getattr(genotype, cell)
        concat = getattr(genotype, f"{cell}_concat")
        lines.append(f"{title} (output: concat of {', '.join(state_name(i) for i in concat)})")
        for node in range(len(gene) // 2):
            pairs = gene[2 * node : 2 * node + 2]
            inputs = " + ".join(f"{op}({state_name(idx)})" for op, idx in pairs)
            lines.append(f"  node {node} = {inputs}")
    return "\n".join(lines)


def state_name(index: int) -> str:
    """Name of state `index` of a cell: 0 is c_{k-2}, 1 is c_{k-1}, 2.. are nodes 0.."""
    return ("c_{k-2}", "c_{k-1}")[index] if index < 2 else f"node {index - 2}"
