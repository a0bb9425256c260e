"""Training-step speed of a final network under each precision / memory-format setting.

    python benchmarks/train_speed.py                      # DARTS_V2, 36 channels, 20 cells, batch 96, auto device
    python benchmarks/train_speed.py --channels 8 --layers 6 --batch 64 --device cpu
    python benchmarks/train_speed.py --kind imagenet --channels 48 --layers 14 --batch 128 --epochs 250

Runs rarts.train.train_one_epoch (the real step: autocast, auxiliary loss, clipping, SGD) over a DeviceLoader of
random images (32x32 for the CIFAR network, 224x224 for the ImageNet one), so crops, flips and cutout are timed
too. For each setting: `--warmup` steps untimed, then `--steps` timed ones, repeated `--repeats` times; prints
mean +- std of ms per step and images/s, and the time `--epochs` epochs of `--images` images would take at that
speed (default: the paper's CIFAR run, 600 epochs of 50,000). Writes the table as JSON lines with --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from rarts.data import DeviceLoader
from rarts.genotype import load_genotype
from rarts.train import TrainConfig, make_criterion, make_model, make_optimizer, train_one_epoch
from rarts.utils import device_name, pick_device

SETTINGS = {
    "fp32": (None, False),
    "fp32+channels_last": (None, True),
    "bf16": (torch.bfloat16, False),
    "bf16+channels_last": (torch.bfloat16, True),
    "fp16+channels_last": (torch.float16, True),
}


def time_setting(args, device, dtype, channels_last) -> list[float]:
    torch.manual_seed(0)
    net = make_model(load_genotype(args.genotype), args.kind, args.channels, args.layers, True, 10, device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    cfg = TrainConfig(genotype=args.genotype, batch_size=args.batch, progress=False, drop_path_prob=0.2)
    size = 224 if args.kind == "imagenet" else 32
    images = torch.randint(0, 256, (args.batch * max(args.warmup, args.steps), 3, size, size), dtype=torch.uint8)
    labels = torch.arange(images.shape[0]) % 10

    cutout = 0 if args.kind == "imagenet" else 16

    def loader(steps: int) -> DeviceLoader:
        n = args.batch * steps
        return DeviceLoader(
            images[:n], labels[:n], args.batch, device, cutout=cutout, drop_last=True, channels_last=channels_last
        )

    optimizer = make_optimizer(cfg, net)
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    criterion = make_criterion(cfg)
    net.drop_path_prob = 0.1
    train_one_epoch(net, loader(args.warmup), optimizer, criterion, cfg, dtype, scaler)  # cudnn autotuning, allocator
    timed = loader(args.steps)
    per_step = []
    for _ in range(args.repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        train_one_epoch(net, timed, optimizer, criterion, cfg, dtype, scaler)  # ends with .item(): synchronised
        per_step.append((time.perf_counter() - t0) / args.steps)
    return per_step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--genotype", default="DARTS_V2")
    p.add_argument("--kind", choices=("cifar", "imagenet"), default="cifar", help="network body and image size")
    p.add_argument("--channels", type=int, default=36)
    p.add_argument("--layers", type=int, default=20)
    p.add_argument("--batch", type=int, default=96)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--images", type=int, default=50_000, help="training images per epoch, for the time estimate")
    p.add_argument("--epochs", type=int, default=600, help="epochs, for the time estimate")
    p.add_argument("--device", default="auto")
    p.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated names from: " + ", ".join(SETTINGS))
    p.add_argument("--out", help="write the rows as JSON lines here")
    args = p.parse_args()
    device = pick_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    print(
        f"{device_name(device)}; torch {torch.__version__}; {args.genotype}, {args.kind} network, C={args.channels}, "
        f"{args.layers} cells, batch {args.batch}"
    )
    rows = []
    for name in args.settings.split(","):
        dtype, channels_last = SETTINGS[name]
        if device.type == "cpu" and dtype == torch.float16:
            continue
        times = time_setting(args, device, dtype, channels_last)
        mean = statistics.mean(times)
        std = statistics.stdev(times) if len(times) > 1 else 0.0
        run_h = mean * (args.images // args.batch) * args.epochs / 3600
        row = {
            "setting": name,
            "ms_per_step": 1e3 * mean,
            "ms_std": 1e3 * std,
            "images_per_s": args.batch / mean,
            "run_train_h": run_h,
            "kind": args.kind,
            "epochs": args.epochs,
            "images": args.images,
            "device": device_name(device),
            "channels": args.channels,
            "layers": args.layers,
            "batch": args.batch,
        }
        rows.append(row)
        print(
            f"{name:<20} {row['ms_per_step']:8.1f} +- {row['ms_std']:5.1f} ms/step  {row['images_per_s']:8.0f} img/s  "
            f"{args.epochs} epochs of {args.images} images ~ {run_h:.1f} h (training steps only)",
            flush=True,
        )
    if args.out:
        with open(args.out, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)


if __name__ == "__main__":
    main()
