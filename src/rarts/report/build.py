"""The report itself: Table 1 of the paper, the runs, their cells, curves and environments, written as files.

build_report writes report.md, report.html (self-contained), results.csv (one row per run), table1.csv (one row
per method) and images/ (cell diagrams, alpha evolution, supernet accuracy curves, final-training curves, the toy
model's Figure 1). Fields a run lacks are shown as "—" and listed under Notes.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rarts import __version__
from rarts.errors import UsageError
from rarts.genotype import describe_genotype
from rarts.report.document import Doc, render_html, render_markdown
from rarts.report.plots import plot_alpha_evolution, plot_curves
from rarts.report.results import BASELINE_METHOD, METHOD_LABELS, method_rows, run_row, settings_differences
from rarts.report.runs import SearchRun, collect_runs
from rarts.report.stats import DASH, auto_digits, div, fmt, format_mean_std
from rarts.utils import atomic_write_text, environment_info
from rarts.viz import plot_genotype


def _table1(methods: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Table 1: a row per method, our means beside the paper's figures."""
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
                fmt(m["params_m_mean"], 2),
                fmt(m["paper_params_m"], 1),
                f"{cost} {m['search_cost_unit']}" if cost != DASH else DASH,
                fmt(m["paper_gpu_days"], 1),
                format_mean_std((r["seconds_per_step"] for r in group), None),
                fmt(m["step_time_vs_darts2"], 2),
                format_mean_std(r["supernet_val_acc"] for r in group),
            ]
        )
    return headers, rows


def _runs_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """A row per run: the figures the means of Table 1 are taken over."""
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
                fmt(r["test_top1_error"]),
                fmt(r["test_top5_error"]),
                fmt(div(r["params_trained"], 1e6), 3),
                f"{fmt(r['supernet_train_acc'], 1)} / {fmt(r['supernet_val_acc'], 1)}",
                fmt(r["search_seconds"], 1),
                fmt(r["seconds_per_step"], auto_digits(r["seconds_per_step"])),
                fmt(div(r["peak_memory_bytes"], 2**20), 0),
            ]
        )
    return headers, out


def _environment_rows(runs: list[SearchRun]) -> list[list[str]]:
    """Where each search and training ran: device, versions, revision, command line."""
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
            f"{r.train.config.get('channels', DASH)} channels, {r.train.config.get('layers', DASH)} cells"
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
    """Rows of one shape as CSV, the first row's keys as the header; None as an empty cell."""
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
