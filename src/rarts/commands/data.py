"""`rarts data`: what a dataset holds (`info`) and fetching CIFAR when online (`download`)."""

from __future__ import annotations

import argparse
import json

DATASET_NAMES = ("cifar10", "cifar100", "cifar10-mini", "folder", "imagenet")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "data", help="datasets: counts and statistics, CIFAR download", description="Datasets: info and download."
    )
    sub = p.add_subparsers(dest="data_command", metavar="ACTION")
    sub.required = True

    info = sub.add_parser("info", help="images per split and class, per-channel mean and std, source")
    info.add_argument(
        "--dataset",
        required=True,
        choices=DATASET_NAMES,
        help="cifar10, cifar100 (python batches), cifar10-mini (bundled), folder or imagenet (class folders)",
    )
    info.add_argument("--data-dir", default=None, help="the dataset's folder (not needed for cifar10-mini)")
    info.add_argument(
        "--stats-images",
        type=int,
        default=500,
        help="image folders: measure mean and std on this many images per split, drawn at random (default 500)",
    )
    info.add_argument("--json", action="store_true", help="print JSON instead of a table")
    info.set_defaults(func=run_info)

    dl = sub.add_parser(
        "download",
        help="download, verify and unpack the official CIFAR archive",
        description="Download the official CIFAR python archive, check its MD5 and unpack it into --root. "
        "Offline, copy the archive into --root first: it is verified and used without a download.",
    )
    dl.add_argument("name", choices=("cifar10", "cifar100"), help="the archive: cifar10 (163 MB) or cifar100 (161 MB)")
    dl.add_argument("--root", required=True, help="folder to download and unpack into")
    dl.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the server (default 10)")
    dl.set_defaults(func=run_download)


def _folder_stats(dataset, n: int, seed: int = 0) -> tuple[list[float], list[float], int]:
    """Per-channel mean and std over up to n images of an ImageFolder, as they are (no transform)."""
    import torch

    from rarts.data.folder import to_uint8_tensor

    g = torch.Generator().manual_seed(seed)
    picked = torch.randperm(len(dataset), generator=g)[: max(0, n)].tolist()
    total = torch.zeros(3, dtype=torch.float64)
    total_sq = torch.zeros(3, dtype=torch.float64)
    pixels = 0
    for i in picked:
        x = to_uint8_tensor(dataset.open(i)).to(torch.float64) / 255
        total += x.sum(dim=(1, 2))
        total_sq += (x * x).sum(dim=(1, 2))
        pixels += x.shape[1] * x.shape[2]
    if not pixels:
        return [], [], 0
    mean = total / pixels
    std = (total_sq / pixels - mean * mean).clamp_min(0).sqrt()
    return mean.tolist(), std.tolist(), len(picked)


def dataset_info(name: str, data_dir: str | None, stats_images: int = 500) -> dict:
    """Counts per split and class, measured per-channel mean and std, source: a JSON-ready dict."""
    from rarts.data import DATASETS, ImageSet, load_dataset

    report: dict = {"dataset": name, "input_size": DATASETS[name].input_size, "splits": {}}
    for split in ("train", "test"):
        data = load_dataset(name, data_dir, split)
        counts = data.class_counts()
        entry = {"images": len(data), "per_class": dict(zip(data.classes, counts))}
        if isinstance(data, ImageSet):
            mean, std = data.channel_stats()
            entry.update(mean=mean, std=std, stats_images=len(data))
        else:
            mean, std, n = _folder_stats(data, stats_images)
            entry.update(mean=mean, std=std, stats_images=n)
        report["splits"][split] = entry
        report["classes"] = list(data.classes)
        report["source"] = data.source if isinstance(data, ImageSet) else str(data.root.parent)
        report["normalisation"] = {"mean": list(data.mean), "std": list(data.std)}
    report["num_classes"] = len(report["classes"])
    return report


def _print_table(report: dict) -> None:
    splits = report["splits"]
    print(f"dataset  {report['dataset']}  ({report['num_classes']} classes, {report['input_size']} px input)")
    print(f"source   {report['source']}")
    for split, entry in splits.items():
        mean = ", ".join(f"{v:.4f}" for v in entry["mean"])
        std = ", ".join(f"{v:.4f}" for v in entry["std"])
        print(f"{split:<6} {entry['images']:>9,} images   mean ({mean})  std ({std})  over {entry['stats_images']:,}")
    names = report["classes"]
    if len(names) > 20:
        for split, entry in splits.items():
            counts = list(entry["per_class"].values())
            print(f"{split:<6} per class: min {min(counts):,}, max {max(counts):,}")
        return
    width = max(len(n) for n in names)
    print(f"{'class':<{width}}  " + "  ".join(f"{s:>9}" for s in splits))
    for n in names:
        print(f"{n:<{width}}  " + "  ".join(f"{splits[s]['per_class'][n]:>9,}" for s in splits))


def run_info(args: argparse.Namespace) -> int:
    from rarts.errors import UsageError

    if args.stats_images < 0:
        raise UsageError("--stats-images must be >= 0")
    report = dataset_info(args.dataset, args.data_dir, args.stats_images)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_table(report)
    return 0


def run_download(args: argparse.Namespace) -> int:
    from rarts.data import download
    from rarts.data.download import check_timeout

    check_timeout(args.timeout, "--timeout")
    folder = download(args.name, args.root, timeout=args.timeout)
    print(f"{args.name} ready in {folder}; use --data-dir {folder}")
    return 0
