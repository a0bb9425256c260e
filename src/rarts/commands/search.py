"""`rarts search`: architecture search with RARTS, DARTS 1st/2nd order, MiLeNAS or the random baseline."""

from __future__ import annotations

import argparse

METHOD_NAMES = ("darts1", "darts2", "milenas", "rarts", "random")  # checked against the registry when run


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "search",
        help="search a cell: rarts, darts1, darts2, milenas or random, on one loop (resumable)",
        description=(
            "Search the DARTS cell space. Settings come from a preset (quick: the bundled CIFAR-10 subset, minutes "
            "on a CPU; paper: the paper's CIFAR-10 settings), then key=value overrides, then the flags. The run "
            "folder gets metrics per epoch, checkpoints, and at the end genotype.json, plots and summary.json."
        ),
    )
    p.add_argument("--method", help=f"search method: {', '.join(METHOD_NAMES)} (required for a new run)")
    p.add_argument("--preset", help="quick or paper (default: paper; with --resume, the checkpoint's settings)")
    p.add_argument("--dataset", help="cifar10, cifar100, cifar10-mini or folder (default: the preset's)")
    p.add_argument("--data-dir", dest="data_dir", help="dataset folder (not needed for cifar10-mini)")
    p.add_argument("--out", help="run folder (default: runs/search/<method>-seed<seed>)")
    p.add_argument("--seed", type=int, help="random seed: data split, initial weights, data order (default: 0)")
    p.add_argument("--epochs", type=int, help="search epochs (default: the preset's)")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument(
        "--latency-table",
        dest="latency_table",
        help="latency table of the search network (rarts latency measure): its expected latency is logged each epoch",
    )
    p.add_argument(
        "--latency-weight",
        dest="latency_weight",
        type=float,
        help="W: W x expected latency in ms joins every method's alpha objective (default: 0, logging only)",
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no per-epoch lines")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="settings, e.g. lam=1 beta=0.1 batch_size=32")
    p.set_defaults(func=search_command)


def search_command(args: argparse.Namespace) -> int:
    from rarts.config import parse_overrides
    from rarts.distributed import world_from_env
    from rarts.errors import UsageError
    from rarts.runs import SEARCH, command_config, run_command
    from rarts.search.config import make_config
    from rarts.search.loop import run_search

    flags = {
        "method": args.method,
        "dataset": args.dataset,
        "data_dir": args.data_dir,
        "seed": args.seed,
        "epochs": args.epochs,
        "device": args.device,
        "latency_table": args.latency_table,
        "latency_weight": args.latency_weight,
    }
    if not args.resume and not args.method and "method" not in parse_overrides(args.overrides):
        raise UsageError(f"--method is required: one of {', '.join(METHOD_NAMES)}")
    cfg, checkpoint = command_config(SEARCH, args, flags, make_config)
    out = args.out or f"runs/search/{cfg.method}-seed{cfg.seed}"
    resume = checkpoint is not None
    summary = run_command(
        SEARCH, out, lambda: run_search(cfg, out, resume=resume, quiet=args.quiet, checkpoint=checkpoint)
    )
    if not world_from_env().is_main:  # under torchrun, rank 0 alone reports (the others return no summary)
        return 0
    acc = summary.get("final_val_acc")
    acc_text = f"supernet val acc {acc:.1f}%, " if acc is not None else ""
    print(
        f"{summary['method']}: {acc_text}{summary['search_seconds'] / 60:.1f} min "
        f"({summary['search_cost']:.4g} {summary['search_cost_unit']} on {summary['device_name']}); "
        f"{out}/genotype.json\n{summary['genotype_string']}"
    )
    return 0
