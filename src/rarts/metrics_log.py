"""Per-step metrics as JSON lines and CSV side by side, and as TensorBoard scalars when tensorboard is installed.

    log = MetricsLogger(run_dir)            # run_dir/metrics.jsonl and run_dir/metrics.csv, started afresh
    log.log({"epoch": 0, "train_loss": 2.1, "test_top1": 31.5})
    log.close()

The JSON-lines file is the complete record: every row exactly as given. The CSV file takes its columns from the
first row (later keys that are new are left out of the CSV, missing ones left empty), so it opens in a
spreadsheet as one table. Both files are flushed after every row, so a killed run keeps all rows logged so far.

A resumed run passes `resume_step`: the rows already on disk whose `step_key` value is below it are kept and the
rest dropped (they came from steps the run is about to repeat), so the files end up as if the run had never
stopped.
"""

from __future__ import annotations

import csv
import io
import json
import math
import numbers
from pathlib import Path
from typing import Any

from rarts.utils import atomic_write_text


class MetricsLogger:
    """Append metric rows (flat dicts of numbers and strings) to `<name>.jsonl`, `<name>.csv` and TensorBoard."""

    def __init__(
        self,
        run_dir: str | Path,
        name: str = "metrics",
        step_key: str = "epoch",
        resume_step: int | None = None,
        tensorboard: bool = True,
    ):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.step_key = step_key
        self.jsonl_path = self.run_dir / f"{name}.jsonl"
        self.csv_path = self.run_dir / f"{name}.csv"
        kept = self._kept_rows(resume_step) if resume_step is not None else []
        self.columns: list[str] | None = list(kept[0]) if kept else None
        self.kept_steps = [row[step_key] for row in kept]  # the step_key values of the rows kept on a resume
        atomic_write_text(self.jsonl_path, "".join(_json_line(row) for row in kept))
        atomic_write_text(self.csv_path, self._csv_text(kept) if kept else "")
        self._jsonl = open(self.jsonl_path, "a", encoding="utf-8")
        self._csv = open(self.csv_path, "a", encoding="utf-8", newline="")
        self._tb = _summary_writer(self.run_dir / "tensorboard") if tensorboard else None

    def _kept_rows(self, resume_step: int) -> list[dict[str, Any]]:
        if not self.jsonl_path.exists():
            return []
        rows = []
        for line in self.jsonl_path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a kill
                continue
            if isinstance(row, dict) and isinstance(row.get(self.step_key), (int, float)):
                if row[self.step_key] < resume_step:
                    rows.append(row)
        return rows

    def _csv_text(self, rows: list[dict[str, Any]]) -> str:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue()

    def log(self, row: dict[str, Any]) -> None:
        """Write one row to every sink and flush."""
        row = dict(row)
        self._jsonl.write(_json_line(row))
        self._jsonl.flush()
        header = self.columns is None
        if header:
            self.columns = list(row)
        writer = csv.DictWriter(self._csv, fieldnames=self.columns, extrasaction="ignore", lineterminator="\n")
        if header:
            writer.writeheader()
        writer.writerow(row)
        self._csv.flush()
        if self._tb is not None:
            step = row.get(self.step_key)
            for key, value in row.items():
                if key != self.step_key and isinstance(value, numbers.Real) and not isinstance(value, bool):
                    self._tb.add_scalar(key, float(value), global_step=step)
            self._tb.flush()

    def close(self) -> None:
        self._jsonl.close()
        self._csv.close()
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _json_line(row: dict[str, Any]) -> str:
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
    return json.dumps(clean) + "\n"


def _summary_writer(log_dir: Path) -> Any:
    """A TensorBoard SummaryWriter, or None when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(log_dir))
