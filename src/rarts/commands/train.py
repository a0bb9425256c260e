"""`rarts train`, `rarts evaluate`, `rarts export`: train a found cell from scratch, test it, ship it."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    t = subparsers.add_parser(
        "train",
        help="train a genotype from scratch (CIFAR or ImageNet recipe) and report test error, params, mult-adds",
        description=(
            "Train the network of a genotype from scratch. Settings come from a preset (quick: small network on the "
            "bundled CIFAR-10 subset, minutes on a CPU; paper: the DARTS/RARTS recipe, 600 epochs on CIFAR, or the "
            "ImageNet recipe with --dataset imagenet or folder), then key=value overrides, then the flags."
        ),
    )
    t.add_argument("--genotype", help="known name (DARTS_V1, DARTS_V2), JSON file, DARTS string or search run folder")
    t.add_argument(
        "--dataset", choices=("cifar10", "cifar100", "cifar10-mini", "imagenet", "folder"), help="default: preset's"
    )
    t.add_argument("--data-dir", dest="data_dir", help="dataset folder (not needed for cifar10-mini)")
    t.add_argument("--preset", help="quick or paper (default: paper; with --resume, the checkpoint's settings)")
    t.add_argument("--out", help="run folder (default: runs/train-<genotype>-<date>-<time>)")
    t.add_argument("--seed", type=int, help="random seed (default: 0)")
    t.add_argument("--epochs", type=int, help="epochs (default: the preset's; the same as epochs=N)")
    t.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: auto)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    t.add_argument("--quiet", action="store_true", help="no progress bar and no per-epoch lines")
    t.add_argument("overrides", nargs="*", metavar="key=value", help="settings, e.g. epochs=10 channels=16")
    t.set_defaults(func=train_command)

    e = subparsers.add_parser(
        "evaluate",
        help="test top-1 / top-5 error of a trained network (rebuilt from its checkpoint)",
        description="Rebuild the network a training checkpoint describes and measure its test error.",
    )
    e.add_argument("--checkpoint", required=True, help="checkpoint.pt of a `rarts train` run (or the run folder)")
    e.add_argument("--dataset", help="test set (default: the one it was trained on)")
    e.add_argument("--data-dir", dest="data_dir", help="dataset folder (default: the training run's)")
    e.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    e.add_argument("--batch-size", dest="batch_size", type=int, default=256, help="images per batch (default: 256)")
    e.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's; 1 is fastest on small CPUs)")
    e.add_argument(
        "--amp", choices=("auto", "off", "bf16", "fp16"), help="autocast precision (default: the training run's)"
    )
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.set_defaults(func=evaluate_command)

    x = subparsers.add_parser(
        "export",
        help="export a trained network (logits only, eval mode) to TorchScript or ONNX",
        description=(
            "Export the network of a training checkpoint without its auxiliary head, drop-path off, as a model "
            "from normalised images (N, 3, S, S) to logits; writes <out>.json with mean, std, classes and genotype."
        ),
    )
    x.add_argument("--checkpoint", required=True, help="checkpoint.pt of a `rarts train` run (or the run folder)")
    x.add_argument("--format", required=True, choices=("torchscript", "onnx"), help="torchscript or onnx")
    x.add_argument("--out", required=True, help="output file, e.g. model.pt or model.onnx")
    x.set_defaults(func=export_command)


def _checkpoint_path(arg: str):
    """--checkpoint: a training checkpoint, or the run folder holding it; a search run folder (which evaluate and
    export cannot use) is a UsageError saying what to pass instead."""
    from pathlib import Path

    from rarts.errors import UsageError
    from rarts.runs import CHECKPOINT_NAME

    path = Path(arg)
    if not path.is_dir():
        return path
    if not (path / CHECKPOINT_NAME).is_file() and _is_search_run(path):
        raise UsageError(
            f"{path} is a search run folder, not a training run: train its cells first (rarts train --genotype "
            f"{path} --out TRAIN_RUN) and pass --checkpoint TRAIN_RUN"
        )
    return path / CHECKPOINT_NAME


def _is_search_run(folder) -> bool:
    """Whether `folder` holds a search run's records: its summary, or settings naming a search method."""
    import json

    if (folder / "summary.json").is_file():
        return True
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and "method" in config


def _default_out(genotype: str) -> str:
    import re
    import time

    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", genotype.rstrip("/").split("/")[-1])[:40] if genotype else "run"
    if genotype.startswith("Genotype"):
        name = "genotype"
    return f"runs/train-{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def train_command(args: argparse.Namespace) -> int:
    from rarts.distributed import world_from_env
    from rarts.runs import TRAIN, command_config, run_command
    from rarts.train import make_config, train

    flags = {"genotype": args.genotype, "dataset": args.dataset, "data_dir": args.data_dir, "seed": args.seed}
    flags["device"] = args.device
    flags["epochs"] = args.epochs
    cfg, checkpoint = command_config(TRAIN, args, flags, make_config)
    out = args.out or _default_out(cfg.genotype)
    resume = checkpoint is not None
    result = run_command(TRAIN, out, lambda: train(cfg, out, resume=resume, checkpoint=checkpoint, quiet=args.quiet))
    if result is not None and world_from_env().is_main:  # under torchrun, rank 0 alone reports
        print(
            f"test error {result['test_top1_error']:.2f}% (top-5 {result['test_top5_error']:.2f}%), "
            f"{result['params'] / 1e6:.3f}M params, {result['mult_adds'] / 1e6:.1f}M mult-adds, "
            f"{result['train_time_s'] / 60:.1f} min on {result['device']}; {out}/result.json"
        )
    return 0


def evaluate_command(args: argparse.Namespace) -> int:
    import json

    from rarts.errors import UsageError
    from rarts.train import evaluate_checkpoint

    if args.batch_size < 1:
        raise UsageError(f"--batch-size {args.batch_size}: must be at least 1")
    if args.threads is not None:
        if args.threads < 1:
            raise UsageError(f"--threads {args.threads}: must be at least 1")
        import torch

        torch.set_num_threads(args.threads)
    path = _checkpoint_path(args.checkpoint)
    r = evaluate_checkpoint(path, args.dataset, args.data_dir, args.device, args.batch_size, amp=args.amp)
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        print(
            f"{r['dataset']} test ({r['test_images']} images): top-1 error {r['test_top1_error']:.2f}%, "
            f"top-5 error {r['test_top5_error']:.2f}%, loss {r['test_loss']:.4f}; "
            f"{r['params'] / 1e6:.3f}M params, {r['mult_adds'] / 1e6:.1f}M mult-adds (epoch {r['epoch']})"
        )
    return 0


def export_command(args: argparse.Namespace) -> int:
    from rarts.export import export_checkpoint

    info = export_checkpoint(_checkpoint_path(args.checkpoint), args.format, args.out)
    diff = info["check_max_abs_diff"]
    check = "not checked (onnxruntime not installed)" if diff is None else f"max |exported - eager| = {diff:.2e}"
    shape = "x".join(str(s) for s in info["input"]["shape"])
    print(f"wrote {info['file']} ({info['format']}, input {shape}, logits); {check}; metadata {info['file']}.json")
    return 0
