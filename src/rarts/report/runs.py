"""Reading run folders: finished search runs, finished training runs, and which training run trained which search.

A search run folder is read from summary.json (written when the search ends), config.json, environment.json,
metrics.jsonl (one row per epoch) and alphas.jsonl (softmax(alpha) per epoch); a training run folder from
result.json, config.json, environment.json and metrics.jsonl. A field a run lacks is noted on the run, to be
shown as "—". A folder that is no rarts run, an unfinished run given by name, or a run written in a format version
this module does not read is refused with a UsageError naming the folder.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from rarts.config import current_names
from rarts.errors import UsageError
from rarts.genotype import Genotype, load_genotype
from rarts.report.stats import DASH, finite
from rarts.runs.folder import accuracy_scale, percent_row
from rarts.train.config import TrainConfig
from rarts.utils import read_json

SUMMARY_FILE = "summary.json"  # a finished search run
RESULT_FILE = "result.json"  # a finished training run
# summary.json / result.json format versions this report reads; a file without `format_version` is version 1.
READABLE_FORMAT_VERSIONS = (1, 2)  # 2: a search's accuracies in percent

METHOD_ORDER = ("darts1", "darts2", "milenas", "rarts", "random")


def method_rank(method: str) -> tuple[int, str]:
    """Sort key of a method: the paper's order, then any other method by name."""
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), method)


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
    genotype: Genotype
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


def step_seconds(summary: dict[str, Any]) -> Optional[float]:
    """Mean wall-clock seconds of one search step: the summary's own figure, or search time over steps."""
    for key in ("seconds_per_step", "step_seconds"):
        if finite([summary.get(key)]):
            return float(summary[key])
    steps, seconds = summary.get("steps"), summary.get("search_seconds")
    if len(finite([steps, seconds])) == 2 and steps > 0:
        return float(seconds) / float(steps)
    return None


def is_search_run(path: Path) -> bool:
    return (path / SUMMARY_FILE).is_file()


def is_train_run(path: Path) -> bool:
    return (path / RESULT_FILE).is_file()


def load_search_run(path: str | Path) -> SearchRun:
    """Read a finished search run folder; UsageError (naming the folder) when it is not one this rarts can read."""
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
    metrics = read_jsonl(path / "metrics.jsonl")
    if accuracy_scale(path) != 1.0:  # a folder written when a search's accuracies were fractions
        summary, metrics = percent_row(summary), [percent_row(row) for row in metrics]
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
        metrics=metrics,
        alphas=_read_alphas(path),
        genotype=genotype,
        notes=notes,
    )
    missing = [key for key in ("search_seconds",) if not finite([summary.get(key)])]
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
        config=current_names(TrainConfig, _optional_json(path / "config.json")),  # older names (init_channels) too
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


def _trained_genotype(t: TrainRun) -> Optional[Genotype]:
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
    search_runs.sort(key=lambda r: (method_rank(r.method), r.seed if r.seed is not None else -1, str(r.path)))
    return search_runs, notes
