"""The comparison report: Table 1 of the paper, rebuilt from saved search (and training) runs.

    runs, notes = collect_runs(["runs/compare-quick"])  # compare folders, search run folders, training run folders
    paths = build_report(runs, "runs/compare-quick/report", notes=notes)

writes report.md, report.html (one self-contained page: every image a base64 data URI, no external reference),
results.csv (one row per run), table1.csv (one row per method) and images/ (cell diagrams, alpha evolution,
supernet accuracy curves, final-training curves, the toy model's Figure 1).

Statistics: mean +- sample standard deviation (ddof = 1) over seeds; with one seed the mean alone.

The parts, each read on its own: `runs` reads run folders and pairs training runs with their searches, `stats`
holds the means and the printing of numbers, `results` the rows per run and per method, `document` the Markdown
and HTML rendering, `plots` the curves, and `build` puts them together.
"""

from rarts.report.build import build_report, report_from_folders
from rarts.report.results import (
    BASELINE_METHOD,
    FREE_SETTINGS,
    METHOD_LABELS,
    PAPER_SIZE,
    PAPER_TABLE1,
    device_of,
    method_rows,
    paper_size_params,
    run_row,
    search_cost,
    settings_differences,
    supernet_accuracy,
)
from rarts.report.runs import (
    METHOD_ORDER,
    READABLE_FORMAT_VERSIONS,
    RESULT_FILE,
    SUMMARY_FILE,
    SearchRun,
    TrainRun,
    collect_runs,
    is_search_run,
    is_train_run,
    load_search_run,
    load_train_run,
    pair_training,
    read_jsonl,
    step_seconds,
)
from rarts.report.stats import DASH, auto_digits, format_mean_std, mean_std

__all__ = [
    "BASELINE_METHOD",
    "DASH",
    "FREE_SETTINGS",
    "METHOD_LABELS",
    "METHOD_ORDER",
    "PAPER_SIZE",
    "PAPER_TABLE1",
    "READABLE_FORMAT_VERSIONS",
    "RESULT_FILE",
    "SUMMARY_FILE",
    "SearchRun",
    "TrainRun",
    "auto_digits",
    "build_report",
    "collect_runs",
    "device_of",
    "format_mean_std",
    "is_search_run",
    "is_train_run",
    "load_search_run",
    "load_train_run",
    "mean_std",
    "method_rows",
    "pair_training",
    "paper_size_params",
    "read_jsonl",
    "report_from_folders",
    "run_row",
    "search_cost",
    "settings_differences",
    "step_seconds",
    "supernet_accuracy",
]
