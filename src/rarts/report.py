"""The comparison report: Table 1 of the paper, rebuilt from saved search (and training) runs.

    runs = collect_runs(["runs/compare-quick"])        # compare folders, search run folders, training run folders
    paths = build_report(runs, "runs/compare-quick/report")

writes report.md, report.html (one self-contained page: every image a base64 data URI, no external reference),
results.csv (one row per run), table1.csv (one row per method) and images/ (cell diagrams, alpha evolution,
supernet accuracy curves, final-training curves, the toy model's Figure 1).

A search run folder is read from summary.json (written when the search ends), config.json, environment.json,
metrics.jsonl (one row per epoch) and alphas.jsonl (softmax(alpha) per epoch); a training run folder from
result.json, config.json, environment.json and metrics.jsonl. Optional fields that a run lacks are shown as "—"
and listed under Notes. A folder that is no rarts run, an unfinished run given by name, or a run written in a
format version this module does not read is refused with a UsageError naming the folder.

Statistics: mean +- sample standard deviation (ddof = 1) over seeds; with one seed the mean alone.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from rarts.errors import UsageError
from rarts.utils import atomic_write_bytes, atomic_write_text, read_json

SUMMARY_FILE = "summary.json"  # a finished search run
RESULT_FILE = "result.json"  # a finished training run
# summary.json / result.json format versions this report reads; a file without `format_version` is version 1.
READABLE_FORMAT_VERSIONS = (1,)

METHOD_ORDER = ("darts1", "darts2", "milenas", "rarts", "random")
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
PAPER_SIZE = {"init_channels": 36, "layers": 20}  # the CIFAR-10 network whose parameters Table 1 counts
DASH = "—"

# Settings that may differ between runs of one fair comparison: identity, paths and reporting, not the computation.
# (The resume-free keys of rarts.search.config and rarts.train, plus the run's identity.)
FREE_SETTINGS = frozenset(
    {"method", "seed", "data_dir", "device", "progress", "tensorboard", "workers", "log_every", "checkpoint_every"}
    | {"eval_batch_size", "threads", "plots"}
)


# --- statistics ---------------------------------------------------------------------------------------------------


def _finite(values: Iterable[Any]) -> list[float]:
    out = []
    for v in values:
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out.append(float(v))
    return out


def mean_std(values: Iterable[Any]) -> tuple[Optional[float], Optional[float]]:
    """Mean and sample standard deviation (ddof = 1) of the finite numbers in `values`.

    (None, None) without any; (mean, None) with one, where a standard deviation is undefined.
    """
    xs = _finite(values)
    if not xs:
        return None, None
    mean = sum(xs) / len(xs)
    if len(xs) == 1:
        return mean, None
    return mean, math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))


def auto_digits(value: Optional[float]) -> int:
    """Decimals that show about three significant figures of `value`, at least two."""
    if value is None or value == 0:
        return 2
    return max(2, 2 - math.floor(math.log10(abs(value))))


def format_mean_std(values: Iterable[Any], digits: Optional[int] = 2) -> str:
    """'2.65 ± 0.07' over several values, '2.65' over one, '—' over none. digits=None: auto_digits of the mean."""
    mean, std = mean_std(values)
    if mean is None:
        return DASH
    if digits is None:
        digits = auto_digits(mean)
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _fmt(value: Any, digits: int = 2) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return f"{value:.{digits}f}"
    return DASH


# --- reading runs -------------------------------------------------------------------------------------------------


@dataclass
class TrainRun:
    """A finished final-training run: result.json (test errors, params, ...), its config and per-epoch metrics."""

    path: Path
    result: dict[str, Any]
    config: dict[str, Any]
    environment: dict[str, Any]
    metrics: list[dict[str, Any]]


@dataclass
class SearchRun:
    """A finished search run and, when one was paired with it, the training run of its genotype."""

    path: Path
    method: str
    seed: Optional[int]
    summary: dict[str, Any]
    config: dict[str, Any]
    environment: dict[str, Any]
    metrics: list[dict[str, Any]]
    alphas: list[dict[str, Any]]  # per epoch: {"epoch", "normal": 14x8, "reduce": 14x8}
    genotype: Any  # rarts.genotype.Genotype
    train: Optional[TrainRun] = None
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.method}-seed{self.seed}" if self.seed is not None else f"{self.method}-{self.path.name}"


def _optional_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = read_json(path)
    return data if isinstance(data, dict) else {}


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSON-lines file; a line cut short by a kill, or any non-object line, is skipped."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _check_format(data: dict[str, Any], path: Path) -> None:
    version = data.get("format_version", 1)
    if not isinstance(version, int) or isinstance(version, bool):
        raise UsageError(f"{path}: format_version {version!r} is not an integer: not a rarts run file")
    if version > max(READABLE_FORMAT_VERSIONS):
        raise UsageError(
            f"{path} has format_version {version}, newer than this rarts reads "
            f"(up to {max(READABLE_FORMAT_VERSIONS)}): upgrade rarts to report it"
        )
    if version not in READABLE_FORMAT_VERSIONS:
        raise UsageError(
            f"{path} has format_version {version}, an older format this rarts no longer reads "
            f"({', '.join(map(str, READABLE_FORMAT_VERSIONS))}): rerun the search"
        )


def _seed_of(*sources: dict[str, Any]) -> Optional[int]:
    for source in sources:
        seed = source.get("seed")
        if isinstance(seed, int) and not isinstance(seed, bool):
            return seed
    return None


def is_search_run(path: Path) -> bool:
    return (path / SUMMARY_FILE).is_file()


def is_train_run(path: Path) -> bool:
    return (path / RESULT_FILE).is_file()


def load_search_run(path: str | Path) -> SearchRun:
    """Read a finished search run folder; UsageError (naming the folder) when it is not one this rarts can read."""
    from rarts.genotype import Genotype, load_genotype

    path = Path(path)
    if not path.is_dir():
        raise UsageError(f"run folder not found: {path}")
    summary_path = path / SUMMARY_FILE
    if not summary_path.is_file():
        if any((path / name).exists() for name in ("checkpoint.pt", "metrics.jsonl", "config.json")):
            raise UsageError(f"{path} is an unfinished search run (no {SUMMARY_FILE}): resume it, or leave it out")
        raise UsageError(f"{path} is not a rarts search run folder: it holds no {SUMMARY_FILE}")
    summary = read_json(summary_path)
    if not isinstance(summary, dict) or not isinstance(summary.get("method"), str):
        raise UsageError(f"{summary_path} is not a rarts search summary: it names no method")
    _check_format(summary, summary_path)
    config = _optional_json(path / "config.json")
    notes: list[str] = []
    if (path / "genotype.json").is_file():
        genotype = load_genotype(str(path / "genotype.json"))
    elif "genotype" in summary:
        genotype = Genotype.from_dict(summary, source=str(summary_path))
    else:
        raise UsageError(f"{path}: neither genotype.json nor a genotype in {SUMMARY_FILE}: not a finished search run")
    run = SearchRun(
        path=path,
        method=summary["method"],
        seed=_seed_of(summary, config),
        summary=summary,
        config=config,
        environment=_optional_json(path / "environment.json"),
        metrics=read_jsonl(path / "metrics.jsonl"),
        alphas=_read_alphas(path),
        genotype=genotype,
        notes=notes,
    )
    missing = [key for key in ("search_seconds",) if not _finite([summary.get(key)])]
    if run.seed is None:
        missing.append("seed")
    if step_seconds(summary) is None:
        missing.append("seconds per step")
    if not run.metrics:
        missing.append("metrics.jsonl")
    if not run.alphas:
        missing.append("alphas.jsonl")
    if missing:
        notes.append(f"`{path}`: no {', '.join(missing)} (an older or partial run?): shown as {DASH}")
    return run


def _read_alphas(path: Path) -> list[dict[str, Any]]:
    rows = []
    for row in read_jsonl(path / "alphas.jsonl"):
        if isinstance(row.get("normal"), list) and isinstance(row.get("reduce"), list):
            rows.append(row)
    return rows


def load_train_run(path: str | Path) -> TrainRun:
    """Read a finished training run folder (result.json); UsageError naming it otherwise."""
    path = Path(path)
    result_path = path / RESULT_FILE
    if not result_path.is_file():
        if (path / "checkpoint.pt").is_file():
            raise UsageError(f"{path} is an unfinished training run (no {RESULT_FILE}): resume it, or leave it out")
        raise UsageError(f"{path} is not a rarts training run folder: it holds no {RESULT_FILE}")
    result = read_json(result_path)
    if not isinstance(result, dict) or "test_top1_error" not in result:
        raise UsageError(f"{result_path} is not a rarts training result: it has no test_top1_error")
    _check_format(result, result_path)
    return TrainRun(
        path=path,
        result=result,
        config=_optional_json(path / "config.json"),
        environment=_optional_json(path / "environment.json"),
        metrics=read_jsonl(path / "metrics.jsonl"),
    )


def _same_folder(a: Any, b: Path) -> bool:
    if not isinstance(a, str) or not a:
        return False
    try:
        return Path(a).resolve() == b.resolve()
    except OSError:
        return False


def _trained_genotype(t: TrainRun):
    from rarts.genotype import Genotype

    try:
        return Genotype.from_dict(t.result["genotype"], source=str(t.path / "result.json"))
    except (KeyError, TypeError, UsageError):  # an older or hand-edited result: pairing by folder only
        return None


def pair_training(search_runs: list[SearchRun], train_runs: list[TrainRun]) -> None:
    """Attach each training run to the search run whose folder it trained: the one its config's genotype names;
    in a compare folder (which may have moved since), search/<name> beside train/<name>; else the one search run
    given whose genotype it trained (folders moved or named relative to another directory)."""
    for t in train_runs:
        owners = [s for s in search_runs if _same_folder(t.config.get("genotype"), s.path)]
        if not owners and t.path.parent.name == "train":  # a compare folder: train/<name> trained search/<name>
            sibling = t.path.parent.parent / "search" / t.path.name
            owners = [s for s in search_runs if _same_folder(str(sibling), s.path)]
        if not owners:
            trained = _trained_genotype(t)
            owners = [s for s in search_runs if trained is not None and s.genotype == trained]
            if len(owners) > 1:
                names = ", ".join(str(s.path) for s in owners)
                raise UsageError(
                    f"training run {t.path} trained the genotype of several search runs given ({names}); "
                    "report them separately"
                )
        if not owners:
            raise UsageError(
                f"training run {t.path} trained {t.config.get('genotype')!r}, none of the search runs given: "
                "pass that search run folder too"
            )
        owner = owners[0]
        if owner.train is not None:
            raise UsageError(f"search run {owner.path} has two training runs: {owner.train.path} and {t.path}")
        owner.train = t


def collect_runs(paths: Sequence[str | Path]) -> tuple[list[SearchRun], list[str]]:
    """Search runs (with their training runs paired) from compare folders, search run folders, training run
    folders, or folders holding run folders. Returns the runs and notes on what was left out.

    A folder given by name that is no finished rarts run is a UsageError; inside a compare folder, unfinished
    runs are left out with a note.
    """
    search_runs: list[SearchRun] = []
    train_runs: list[TrainRun] = []
    notes: list[str] = []

    def add_children(folder: Path, kind: str) -> None:
        for child in sorted(p for p in folder.iterdir() if p.is_dir()):
            if kind == "search" and is_search_run(child):
                search_runs.append(load_search_run(child))
            elif kind == "train" and is_train_run(child):
                train_runs.append(load_train_run(child))
            else:
                notes.append(f"`{child}` left out: not a finished {kind} run")

    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            raise UsageError(f"run folder not found: {path}")
        if is_search_run(path):
            search_runs.append(load_search_run(path))
        elif is_train_run(path):
            train_runs.append(load_train_run(path))
        elif (path / "search").is_dir():  # a compare folder
            add_children(path / "search", "search")
            if (path / "train").is_dir():
                add_children(path / "train", "train")
        elif (path / "checkpoint.pt").is_file() or (path / "config.json").is_file():
            load_search_run(path)  # raises: an unfinished run given by name
        else:
            children = sorted(p for p in path.iterdir() if p.is_dir())
            found = [c for c in children if is_search_run(c) or is_train_run(c)]
            if not found:
                raise UsageError(
                    f"{path} is not a rarts run folder: it holds no {SUMMARY_FILE} (search run), "
                    f"{RESULT_FILE} (training run) or search/ (compare folder)"
                )
            for child in found:
                if is_search_run(child):
                    search_runs.append(load_search_run(child))
                else:
                    train_runs.append(load_train_run(child))
    seen: dict[Path, SearchRun] = {}
    for run in search_runs:
        seen.setdefault(run.path.resolve(), run)
    search_runs = list(seen.values())
    if not search_runs:
        raise UsageError("no finished search run found in " + ", ".join(str(p) for p in paths))
    unique_train = {t.path.resolve(): t for t in train_runs}
    pair_training(search_runs, list(unique_train.values()))
    search_runs.sort(key=lambda r: (_method_rank(r.method), r.seed if r.seed is not None else -1, str(r.path)))
    return search_runs, notes


def _method_rank(method: str) -> tuple[int, str]:
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), method)


# --- derived figures ----------------------------------------------------------------------------------------------


def step_seconds(summary: dict[str, Any]) -> Optional[float]:
    """Mean wall-clock seconds of one search step: the summary's own figure, or search time over steps."""
    for key in ("seconds_per_step", "step_seconds"):
        if _finite([summary.get(key)]):
            return float(summary[key])
    steps, seconds = summary.get("steps"), summary.get("search_seconds")
    if len(_finite([steps, seconds])) == 2 and steps > 0:
        return float(seconds) / float(steps)
    return None


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
    if not _finite([seconds]):
        return None, unit
    return float(seconds) / (86400.0 if kind == "cuda" else 3600.0), unit


_PARAMS_CACHE: dict[str, int] = {}


def paper_size_params(genotype: Any) -> int:
    """Parameters (auxiliary head excluded) of the genotype's CIFAR-10 network at the paper's size (36 ch, 20 cells)."""
    from rarts.network import build_network, count_params

    key = genotype.to_darts_string()
    if key not in _PARAMS_CACHE:
        net = build_network(genotype, "cifar10", PAPER_SIZE["init_channels"], PAPER_SIZE["layers"], auxiliary=False)
        _PARAMS_CACHE[key] = count_params(net)
    return _PARAMS_CACHE[key]


def _percent(value: Any) -> Optional[float]:
    """A search accuracy (a fraction in [0, 1], as the search loop logs it) in percent."""
    return float(value) * 100.0 if _finite([value]) else None


def supernet_accuracy(run: SearchRun, split: str) -> Optional[float]:
    """Final supernet accuracy (%) on `split` ('train' or 'val'): from summary.json, else the last metrics row."""
    for key in (f"final_{split}_acc", f"{split}_acc"):
        if _finite([run.summary.get(key)]):
            return _percent(run.summary[key])
    for row in reversed(run.metrics):
        if _finite([row.get(f"{split}_acc")]):
            return _percent(row[f"{split}_acc"])
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
    for method in sorted(methods, key=_method_rank):
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
                "params_m_mean": _div(mean_std(r["params_paper_size"] for r in group)[0], 1e6),
                "params_trained_m_mean": _div(mean_std(r["params_trained"] for r in group)[0], 1e6),
                "search_cost_mean": cost_mean,
                "search_cost_std": cost_std,
                "search_cost_unit": "/".join(units),
                "devices": sorted({r["search_device"] for r in group}),
                "seconds_per_step_mean": step_mean,
                "seconds_per_step_std": step_std,
                "step_time_vs_darts2": _div(step_mean, baseline),
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


def _div(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return a / b if a is not None and b else None


def settings_differences(runs: list[SearchRun]) -> list[str]:
    """Config keys (other than method, seed, paths and reporting) whose values differ between the runs."""
    keys = sorted({k for r in runs for k in r.config} - FREE_SETTINGS)
    differing = []
    for key in keys:
        values = {json.dumps(r.config.get(key), sort_keys=True) for r in runs if r.config}
        if len(values) > 1:
            differing.append(f"{key} ({', '.join(sorted(values))})")
    return differing


# --- a tiny document model, rendered as Markdown and as HTML -------------------------------------------------------


@dataclass
class Doc:
    """Blocks of a report, in order: ("h", level, text), ("p", text), ("table", headers, rows),
    ("img", path, alt), ("imgrow", [(path, alt), ...]), ("pre", text), ("list", items).
    Text may hold `code` spans in backticks."""

    title: str
    blocks: list[tuple] = field(default_factory=list)

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", level, text))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def table(self, headers: list[str], rows: list[list[str]]) -> None:
        self.blocks.append(("table", headers, rows))

    def img(self, path: Path, alt: str) -> None:
        self.blocks.append(("img", Path(path), alt))

    def img_row(self, images: list[tuple[Path, str]]) -> None:
        """Images side by side (in HTML; one after the other in Markdown): [(path, alt), ...]."""
        self.blocks.append(("imgrow", [(Path(p), alt) for p, alt in images]))

    def pre(self, text: str) -> None:
        self.blocks.append(("pre", text))

    def items(self, items: list[str]) -> None:
        if items:
            self.blocks.append(("list", items))


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(doc: Doc, base: Path) -> str:
    """Markdown with images linked relative to `base` (the folder report.md lies in)."""
    out = [f"# {doc.title}", ""]
    for block in doc.blocks:
        kind = block[0]
        if kind == "h":
            out += ["#" * block[1] + " " + block[2], ""]
        elif kind == "p":
            out += [block[1], ""]
        elif kind == "table":
            headers, rows = block[1], block[2]
            out.append("| " + " | ".join(_md_cell(h) for h in headers) + " |")
            out.append("|" + "---|" * len(headers))
            out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
            out.append("")
        elif kind in ("img", "imgrow"):
            for path, alt in [block[1:]] if kind == "img" else block[1]:
                out += [f"![{alt}]({path.relative_to(base).as_posix()})", ""]
        elif kind == "pre":
            out += ["```", block[1].rstrip("\n"), "```", ""]
        elif kind == "list":
            out += [f"- {item}" for item in block[1]] + [""]
    return "\n".join(out).rstrip("\n") + "\n"


def _inline_html(text: str) -> str:
    """Escape text; `backtick` spans become <code>."""
    parts = str(text).split("`")
    if len(parts) % 2 == 0:  # an unmatched backtick: keep it literal
        return html.escape(str(text))
    return "".join(f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p) for i, p in enumerate(parts))


_MIME = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { border-bottom: 1px solid #eee; padding-bottom: .2em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: .35em .6em; text-align: right; vertical-align: top; }
th { background: #f3f3f3; }
td:first-child, th:first-child { text-align: left; }
tbody tr:nth-child(even) { background: #fafafa; }
td { white-space: nowrap; }
figure { margin: .8em 0; }
figcaption { font-size: 0.85em; color: #555; }
img { max-width: 100%; height: auto; display: block; border: 1px solid #eee; }
.row { display: flex; gap: 1em; align-items: flex-start; }
.row figure { flex: 1 1 0; min-width: 0; }
pre { background: #f6f8fa; padding: .8em; white-space: pre-wrap; word-break: break-word; font-size: 0.85em; }
code { background: #f0f0f0; padding: 0 .25em; border-radius: 3px; font-size: 0.92em; }
pre code { background: none; padding: 0; }
"""


def _figure_html(path: Path, alt: str) -> str:
    """A figure whose image is embedded as a base64 data URI."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    mime = _MIME.get(path.suffix.lower(), "application/octet-stream")
    alt = html.escape(alt, quote=True)
    return f'<figure><img src="data:{mime};base64,{data}" alt="{alt}"><figcaption>{alt}</figcaption></figure>'


def render_html(doc: Doc) -> str:
    """One self-contained HTML page: styles inline, every image embedded as a base64 data URI."""
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(doc.title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{html.escape(doc.title)}</h1>",
    ]
    for block in doc.blocks:
        kind = block[0]
        if kind == "h":
            out.append(f"<h{block[1]}>{_inline_html(block[2])}</h{block[1]}>")
        elif kind == "p":
            out.append(f"<p>{_inline_html(block[1])}</p>")
        elif kind == "table":
            out.append("<table>")
            out.append("<thead><tr>" + "".join(f"<th>{_inline_html(h)}</th>" for h in block[1]) + "</tr></thead>")
            out.append("<tbody>")
            for row in block[2]:
                out.append("<tr>" + "".join(f"<td>{_inline_html(c)}</td>" for c in row) + "</tr>")
            out.append("</tbody></table>")
        elif kind == "img":
            out.append(_figure_html(block[1], block[2]))
        elif kind == "imgrow":
            out.append('<div class="row">' + "".join(_figure_html(p, alt) for p, alt in block[1]) + "</div>")
        elif kind == "pre":
            out.append(f"<pre><code>{html.escape(block[1].rstrip(chr(10)))}</code></pre>")
        elif kind == "list":
            out.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in block[1]) + "</ul>")
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"


# --- figures ------------------------------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _integer_epochs(ax: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _save(fig: Any, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _method_colors(methods: Iterable[str]) -> dict[str, Any]:
    plt = _pyplot()
    palette = plt.get_cmap("tab10")
    return {m: palette(i % 10) for i, m in enumerate(sorted(set(methods), key=_method_rank))}


def plot_alpha_evolution(run: SearchRun, path: Path) -> Optional[Path]:
    """softmax(alpha) per op, averaged over the 14 edges, against the epoch: normal and reduction cell."""
    from rarts.ops import PRIMITIVES

    if not run.alphas:
        return None
    plt = _pyplot()
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
        ax.set_title(f"{'normal' if cell == 'normal' else 'reduction'} cell")
        ax.set_xlabel("epoch")
        _integer_epochs(ax)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("softmax(alpha), mean over edges")
    axes[1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.suptitle(f"{METHOD_LABELS.get(run.method, run.method)}, seed {run.seed}: architecture weights per epoch")
    _save(fig, path)
    plt.close(fig)
    return path


def plot_curves(
    runs: list[SearchRun], keys: Sequence[tuple[str, str]], path: Path, title: str, train_runs: bool = False
) -> Optional[Path]:
    """One panel per (metric key, panel title): a line per run, coloured by method, accuracies in percent.

    train_runs: plot the paired training runs' metrics (logged in percent) instead of the searches' (fractions).
    """
    plotted = False
    plt = _pyplot()
    colors = _method_colors(r.method for r in runs)
    fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 3.8), constrained_layout=True, squeeze=False)
    for ax, (key, panel) in zip(axes[0], keys):
        labelled: set[str] = set()
        for run in runs:
            rows = (run.train.metrics if run.train is not None else []) if train_runs else run.metrics
            scale = 1.0 if train_runs else 100.0
            points = [
                (row["epoch"], row[key] * scale) for row in rows if len(_finite([row.get(key), row.get("epoch")])) == 2
            ]
            if not points:
                continue
            xs, ys = zip(*points)
            label = METHOD_LABELS.get(run.method, run.method) if run.method not in labelled else None
            labelled.add(run.method)
            ax.plot(xs, ys, marker="o" if len(xs) < 12 else None, ms=3, lw=1.3, color=colors[run.method], label=label)
            plotted = True
        ax.set_title(panel)
        ax.set_xlabel("epoch")
        _integer_epochs(ax)
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
        if labelled:
            ax.legend(fontsize=8)
    fig.suptitle(title)
    if plotted:
        _save(fig, path)
    plt.close(fig)
    return path if plotted else None


# --- the report ---------------------------------------------------------------------------------------------------


def _table1(methods: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    headers = [
        "Method",
        "Seeds",
        "Test error (%)",
        "Paper test error (%)",
        "Params (M)",
        "Paper params (M)",
        "Search cost",
        "Paper search cost (GPU-days)",
        "Time per step (s)",
        "Step time / DARTS-2",
        "Supernet val acc (%)",
    ]
    rows = []
    for m in methods:
        group = m["_group"]
        paper_err = m["paper_test_error"]
        cost = format_mean_std((r["search_cost"] for r in group), None)
        rows.append(
            [
                m["label"],
                ", ".join(DASH if s is None else str(s) for s in m["seeds"]),
                format_mean_std(r["test_top1_error"] for r in group),
                f"{paper_err[0]:.2f} ± {paper_err[1]:.2f}" if paper_err else DASH,
                _fmt(m["params_m_mean"], 2),
                _fmt(m["paper_params_m"], 1),
                f"{cost} {m['search_cost_unit']}" if cost != DASH else DASH,
                _fmt(m["paper_gpu_days"], 1),
                format_mean_std((r["seconds_per_step"] for r in group), None),
                _fmt(m["step_time_vs_darts2"], 2),
                format_mean_std(r["supernet_val_acc"] for r in group),
            ]
        )
    return headers, rows


def _runs_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    headers = [
        "Run",
        "Test error (%)",
        "Top-5 error (%)",
        "Params trained (M)",
        "Supernet train / val acc (%)",
        "Search time (s)",
        "Time per step (s)",
        "Peak memory (MB)",
    ]
    out = []
    for r in rows:
        out.append(
            [
                f"{METHOD_LABELS.get(r['method'], r['method'])}, seed {r['seed']}",
                _fmt(r["test_top1_error"]),
                _fmt(r["test_top5_error"]),
                _fmt(_div(r["params_trained"], 1e6), 3),
                f"{_fmt(r['supernet_train_acc'], 1)} / {_fmt(r['supernet_val_acc'], 1)}",
                _fmt(r["search_seconds"], 1),
                _fmt(r["seconds_per_step"], auto_digits(r["seconds_per_step"])),
                _fmt(_div(r["peak_memory_bytes"], 2**20), 0),
            ]
        )
    return headers, out


def _environment_rows(runs: list[SearchRun]) -> list[list[str]]:
    sources = [(f"{r.name} (search)", r.environment) for r in runs]
    sources += [(f"{r.name} (train)", r.train.environment) for r in runs if r.train is not None]
    return [
        [
            name,
            str(env.get("device_name") or env.get("device") or DASH),
            str(env.get("torch") or DASH),
            str(env.get("rarts") or DASH),
            str(env.get("git_revision") or DASH)[:12],
            f"`{env['command']}`" if env.get("command") else DASH,
        ]
        for name, env in sources
    ]


def build_report(
    runs: list[SearchRun],
    out_dir: str | Path,
    notes: Sequence[str] = (),
    commands: Sequence[str] = (),
    title: str = "RARTS comparison report",
    toy_figure: bool = True,
    toy_steps: int = 20000,
) -> dict[str, Path]:
    """Write report.md, report.html, results.csv, table1.csv and images/ into `out_dir`; return their paths.

    notes: extra lines for the Notes section (e.g. runs left out); commands: the command lines that made the runs.
    toy_figure / toy_steps: draw the solvable model's Figure 1 with this many steps.
    """
    from rarts import __version__
    from rarts.genotype import describe_genotype
    from rarts.utils import environment_info

    if not runs:
        raise UsageError("no search runs to report")
    out_dir = Path(out_dir)
    images = out_dir / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows = [run_row(run) for run in runs]
    methods = method_rows(rows)
    all_notes = list(notes) + [n for run in runs for n in run.notes]
    differing = settings_differences(runs)
    if differing:
        all_notes.append("the runs differ in settings other than method and seed: " + "; ".join(differing))
    if not any(m["method"] == BASELINE_METHOD for m in methods):
        all_notes.append(f"no {METHOD_LABELS[BASELINE_METHOD]} run: step times relative to it are shown as {DASH}")
    if not any(r["test_top1_error"] is not None for r in rows):
        all_notes.append(
            f"no final training runs: test errors are shown as {DASH} (`rarts compare --train` trains the found cells)"
        )

    doc = Doc(title)
    presets = sorted({str(r.config.get("preset")) for r in runs if r.config.get("preset")})
    doc.p(
        f"{len(runs)} search runs of {len(methods)} methods"
        + (f" (preset {', '.join(presets)})" if presets else "")
        + f", {sum(r.train is not None for r in runs)} of them trained from scratch. Made by rarts {__version__}."
    )

    if differing:  # said again above the table it affects: its means mix runs of different settings
        doc.p(
            "**Warning:** the runs differ in settings other than method and seed ("
            + "; ".join(differing)
            + "), so the means and deviations below mix them. Report such runs separately."
        )
    doc.h(2, "Table 1: test error, parameters, search cost")
    headers, table = _table1(methods)
    doc.table(headers, table)
    devices = sorted({d for m in methods for d in m["devices"]})
    train_settings = sorted(
        {
            f"{r.train.result.get('dataset', DASH)} for {r.train.result.get('epochs', DASH)} epoch(s), "
            f"{r.train.config.get('init_channels', DASH)} channels, {r.train.config.get('layers', DASH)} cells"
            for r in runs
            if r.train is not None
        }
    )
    doc.p(
        "Test error: top-1 error (%) of the cell trained from scratch, mean ± sample standard deviation over seeds "
        "(the mean alone with one seed)"
        + (f"; trained on {'; '.join(train_settings)}" if train_settings else "")
        + ". Params: the found cell's CIFAR-10 network at the paper's size (36 channels, 20 cells), auxiliary head "
        "excluded, whatever size was trained. Search cost: wall-clock search time, in GPU-days on a GPU and "
        f"CPU-hours on a CPU; search device: {', '.join(devices)}. Time per step: search time over the number of "
        "steps, the per-epoch evaluation included. Supernet val acc: the weights w on the validation half after the "
        "last epoch. The paper's figures are the RARTS paper's "
        "Table 1 on CIFAR-10 (search cost on the authors' GPU); it gives none for MiLeNAS and random search."
    )
    doc.h(3, "Runs")
    headers, table = _runs_table(rows)
    doc.table(headers, table)

    doc.h(2, "Genotypes and cells")
    from rarts.viz import plot_genotype

    for run in runs:
        doc.h(3, f"{METHOD_LABELS.get(run.method, run.method)}, seed {run.seed}")
        doc.pre(run.genotype.to_darts_string() + "\n\n" + describe_genotype(run.genotype))
        cell_dir = images / "cells" / run.name
        paths, _ = plot_genotype(run.genotype, cell_dir, formats=("png",))
        doc.img_row([(p, f"{run.name}: {'normal' if p.stem == 'normal' else 'reduction'} cell") for p in paths])

    doc.h(2, "Architecture weights during the search")
    drawn = False
    for run in runs:
        path = plot_alpha_evolution(run, images / f"alpha-{run.name}.png")
        if path is not None:
            doc.img(path, f"{run.name}: softmax(alpha) per op, mean over the 14 edges, per epoch")
            drawn = True
    if not drawn:
        doc.p(f"No run saved softmax(alpha) per epoch (alphas.jsonl): {DASH}")

    doc.h(2, "Supernet accuracy during the search")
    path = plot_curves(
        runs,
        (("train_acc", "supernet accuracy, training half"), ("val_acc", "supernet accuracy, validation half")),
        images / "supernet-accuracy.png",
        "Supernet accuracy per epoch (one line per seed)",
    )
    if path is not None:
        doc.img(path, "supernet accuracy per epoch, one line per run")
    else:
        doc.p(f"No run logged train_acc / val_acc per epoch: {DASH}")

    if any(r.train is not None for r in runs):
        doc.h(2, "Final training")
        path = plot_curves(
            runs,
            (("train_top1", "training accuracy"), ("test_top1", "test accuracy")),
            images / "final-training.png",
            "Final network trained from scratch (one line per seed)",
            train_runs=True,
        )
        if path is not None:
            doc.img(path, "final training: accuracy per epoch, one line per run")

    if toy_figure:
        from rarts.toy import figure1

        doc.h(2, "The solvable model (paper Figure 1)")
        toy_dir = images / "toy"
        figure1(toy_dir, steps=toy_steps)
        doc.img(toy_dir / "figure1.png", f"RARTS on the solvable bilevel model, {toy_steps} steps")
        doc.p(
            "DARTS 1st order stalls at (alpha, w) = (2, 2); RARTS reaches the equilibrium of eq. (5), which tends "
            "to the bilevel optimum (1, 1) as lam and beta grow. Reproduce with `rarts toy figure`."
        )

    doc.h(2, "Environment")
    doc.table(["Run", "Device", "torch", "rarts", "git revision", "Command"], _environment_rows(runs))
    here = environment_info()
    doc.p(
        f"Report made with rarts {here['rarts']}, torch {here['torch']}, Python {here['python']}, "
        f"git revision {str(here.get('git_revision') or DASH)[:12]}, on {here['platform']}."
    )
    if commands:
        doc.p("Command lines of this comparison:")
        doc.pre("\n".join(commands))

    doc.h(2, "Notes")
    doc.items(all_notes or ["none: every run had every field."])

    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    atomic_write_text(md_path, render_markdown(doc, out_dir))
    atomic_write_text(html_path, render_html(doc))
    csv_path = _write_csv(out_dir / "results.csv", rows)
    hidden = ("_group", "paper_test_error")
    table_rows = [
        {k: ("; ".join(map(str, v)) if isinstance(v, list) else v) for k, v in m.items() if k not in hidden}
        for m in methods
    ]
    table_path = _write_csv(out_dir / "table1.csv", table_rows)
    return {"markdown": md_path, "html": html_path, "csv": csv_path, "table1": table_path, "images": images}


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    atomic_write_text(path, buf.getvalue())
    return path


def report_from_folders(paths: Sequence[str | Path], out_dir: str | Path, **kwargs: Any) -> dict[str, Path]:
    """collect_runs + build_report: the `rarts report` command as a function."""
    runs, notes = collect_runs(paths)
    return build_report(runs, out_dir, notes=list(notes) + list(kwargs.pop("notes", ())), **kwargs)
