"""`rarts compare` (every method and seed on the same settings, then the report) and `rarts report` (from runs)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    c = subparsers.add_parser(
        "compare",
        help="search (and train) every method and seed with the same settings, then write the Table-1 report",
        description=(
            "Run the search of every method and seed (and, with --train, the final training of each found cell) "
            "with one preset and the same key=value overrides, in DIR/search/<method>-seed<S> and "
            "DIR/train/<method>-seed<S>; then write DIR/report (report.md, report.html, results.csv). Run the same "
            "command again to resume: finished runs are skipped, started ones resumed."
        ),
    )
    c.add_argument(
        "--methods",
        default="all",
        help="comma-separated methods (darts1, darts2, milenas, rarts, random) or all (default: all)",
    )
    c.add_argument("--seeds", default="0,1,2", help="comma-separated seeds or a range a-b (default: 0,1,2)")
    c.add_argument("--preset", default="quick", help="search and training preset: quick or paper (default: quick)")
    c.add_argument("--train", action="store_true", help="also train every found cell from scratch (test error)")
    c.add_argument("--out", help="comparison folder (default: runs/compare-<preset>)")
    c.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: the presets')")
    c.add_argument("--data-dir", dest="data_dir", help="dataset folder (not needed for the bundled cifar10-mini)")
    c.add_argument("--no-report", dest="report", action="store_false", help="run the jobs, skip the report")
    c.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="settings for every run: search.key=value or train.key=value for one stage, a bare key for every "
        "stage that has it (e.g. search.epochs=5 train.epochs=20 batch_size=32)",
    )
    c.set_defaults(func=compare_command)

    r = subparsers.add_parser(
        "report",
        help="build the comparison report from saved runs",
        description=(
            "Build report.md, report.html (self-contained), results.csv and table1.csv from compare folders, search "
            "run folders or training run folders (a training run joins the search run whose genotype it trained)."
        ),
    )
    r.add_argument("runs", nargs="+", metavar="RUN_DIR", help="compare folders, search runs or training runs")
    r.add_argument("--out", help="report folder (default: RUN_DIR/report for one compare folder, else ./report)")
    r.add_argument("--title", default="RARTS comparison report", help="the report's title")
    r.add_argument(
        "--toy-steps", dest="toy_steps", type=int, default=20000, help="steps of the toy model's Figure 1 (20000)"
    )
    r.set_defaults(func=report_command)


def compare_command(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rarts.compare import ComparePlan, InProcessRunner, known_methods, parse_methods, parse_seeds, run_compare
    from rarts.config import parse_overrides

    runner = InProcessRunner()
    search_overrides, train_overrides = runner.split(parse_overrides(args.overrides))
    plan = ComparePlan(
        methods=parse_methods(args.methods),
        seeds=parse_seeds(args.seeds),
        out=Path(args.out or f"runs/compare-{args.preset}"),
        preset=args.preset,
        train=args.train,
        search_overrides=search_overrides,
        train_overrides=train_overrides,
        device=args.device,
        data_dir=args.data_dir,
    )
    run_compare(plan, runner, known_methods=known_methods(), report=args.report)
    return 0


def report_command(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rarts.errors import UsageError
    from rarts.report import report_from_folders

    if args.toy_steps < 1:
        raise UsageError("--toy-steps must be at least 1")
    out = args.out
    if out is None:
        only = Path(args.runs[0])
        out = only / "report" if len(args.runs) == 1 and (only / "search").is_dir() else Path("report")
    paths = report_from_folders(args.runs, out, title=args.title, toy_steps=args.toy_steps)
    print(f"report: {paths['markdown']}, {paths['html']}, {paths['csv']}, {paths['table1']}")
    return 0
