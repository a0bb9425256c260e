"""The run folder: refused when it holds another run, its config.json and environment.json, its units.

Every run folder holds config.json (the flat settings) and environment.json (versions, machine, command line; a
resumed run adds its session to `resumes`) from the start. Accuracies in every file are percents; folders
written before environment.json said `"accuracy_unit": "percent"` hold a search's accuracies as fractions, which
`accuracy_scale` tells readers and `percent_row` converts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from rarts.errors import UsageError
from rarts.utils import read_json, write_json

ACCURACY_UNIT = "percent"

# The files by which a folder is known to hold a run's results (beyond the settings every start writes).
_RUN_RECORDS = {"summary.json": "a search run", "result.json": "a training run"}


def run_folder_holds(run_dir: Path) -> str | None:
    """What `run_dir` holds of an earlier run, in words ("a search run (summary.json)"), or None when there is
    nothing a new run would overwrite: no checkpoint, no results and no logged epoch (a run stopped before its
    first checkpoint leaves only its settings, which a new start may replace)."""
    found = [name for name in ("checkpoint.pt", *_RUN_RECORDS, "metrics.jsonl") if (run_dir / name).is_file()]
    found = [n for n in found if n != "metrics.jsonl" or (run_dir / n).stat().st_size > 0]
    if not found:
        return None
    kind = next((_RUN_RECORDS[n] for n in found if n in _RUN_RECORDS), None)
    if kind is None:
        try:
            config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            config = {}
        kind = "a search run" if "method" in config else "a training run" if "genotype" in config else "a run"
    return f"{kind} ({', '.join(found)})"


def check_out_folder(run_dir: Path, kind: str, resume: bool) -> None:
    """Refuse, before any work, an --out that is a file, cannot be created, or (unless resuming) holds a run.

    kind: "search run" or "training run", what the caller is about to write there."""
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"--out {run_dir} exists and is not a folder")
    if not resume:
        held = run_folder_holds(run_dir) if run_dir.is_dir() else None
        if held is not None:
            hint = "pass --resume to continue it, or" if held.startswith(f"a {kind}") else "give"
            raise UsageError(f"{run_dir} already holds {held}: {hint} another --out")
    ancestor = run_dir  # the folder is made when the run first writes; here only whether it can be
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        reason = "is a file" if ancestor.exists() and not ancestor.is_dir() else "cannot be written"
        raise UsageError(f"cannot create --out {run_dir}: {ancestor} {reason}")


def write_environment(path: Path, info: dict[str, Any], resumed: bool) -> None:
    """Write environment.json; on a resume keep the first session's record and add this one to its `resumes`
    list, so that the original command line and machine stay on record."""
    if resumed and path.is_file():
        try:
            first = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            first = None
        if isinstance(first, dict):
            first.setdefault("resumes", []).append(info)
            info = first
    write_json(path, info)


def write_records(run_dir: Path, config: dict[str, Any], env: dict[str, Any], resumed: bool) -> None:
    """config.json and environment.json of a run starting or resuming in `run_dir` (made here)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "config.json", config)
    if resumed and accuracy_scale(run_dir) != 1.0:
        _rescale_metrics(run_dir)  # the resumed epochs log percents: the earlier rows too
    write_environment(run_dir / "environment.json", env, resumed)
    record = read_json(run_dir / "environment.json")
    if record.get("accuracy_unit") != ACCURACY_UNIT:
        write_json(run_dir / "environment.json", {**record, "accuracy_unit": ACCURACY_UNIT})


def accuracy_scale(run_dir: Path) -> float:
    """What a search folder's accuracies are multiplied by to read as percents: 1, or 100 for a folder written
    before accuracies were percents everywhere (training folders always held percents)."""
    try:
        env = json.loads((Path(run_dir) / "environment.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        env = {}
    if isinstance(env, dict) and env.get("accuracy_unit") == ACCURACY_UNIT:
        return 1.0
    try:
        config = json.loads((Path(run_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    return 100.0 if isinstance(config, dict) and "method" in config else 1.0


def is_accuracy(key: str) -> bool:
    """Whether a metrics key is an accuracy (a search's `train_acc`, `val_acc`, `y_val_acc`...)."""
    return key.endswith("_acc")


def percent_row(row: dict[str, Any]) -> dict[str, Any]:
    """A search metrics row whose accuracies are fractions, in percents."""
    return {k: 100.0 * v if is_accuracy(k) and isinstance(v, (int, float)) else v for k, v in row.items()}


def _rescale_metrics(run_dir: Path) -> None:
    from rarts.utils import atomic_write_text

    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a kill: the logger drops it
            lines.append(line)
            continue
        lines.append(json.dumps(percent_row(row)) if isinstance(row, dict) else line)
    atomic_write_text(path, "".join(line + "\n" for line in lines))
