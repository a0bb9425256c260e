"""`rarts bench`: seconds per step, images per second, peak memory and achieved GFLOP/s of the search methods
(`bench search`) and of a final network's training step (`bench train`), against an fp32 matmul peak."""

from __future__ import annotations

import argparse

from rarts.commands import add_layers_argument


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench",
        help="speed and memory of a search step per method, or of a training step, on this device",
        description="Median seconds per step, images/s, peak memory, FLOPs per step and the achieved fraction of "
        "an fp32 matmul peak measured in the same run.",
    )
    sub = p.add_subparsers(dest="bench_command", metavar="SUBCOMMAND", parser_class=type(p))
    sub.required = True

    s = sub.add_parser("search", help="one search step of each method on the search network")
    s.add_argument(
        "--methods",
        default="darts1,darts2,milenas,rarts",
        help="comma-separated: darts1, darts2, milenas, rarts, rarts-jacobi, random (default: the first four)",
    )
    s.add_argument("--channels", type=int, default=16, help="initial channels (default: 16)")
    add_layers_argument(s, "number of cells", "8", default=8)
    s.add_argument(
        "--paired-passes",
        dest="paired_passes",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="rarts and milenas on a CPU with 2+ threads: their independent passes two at once, each on half the"
        " threads, as `rarts search` runs them (default: on)",
    )
    _common(s)
    s.set_defaults(func=search_command)

    t = sub.add_parser("train", help="one training step of a final network (default: DARTS_V2, 36 channels, 20 cells)")
    t.add_argument("--genotype", default="DARTS_V2", help="known name, JSON file or DARTS string (default: DARTS_V2)")
    t.add_argument("--channels", type=int, default=36, help="initial channels (default: 36)")
    add_layers_argument(t, "number of cells", "20", default=20)
    _common(t)
    t.set_defaults(func=train_command)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch", default="32", help="batch size, or several comma-separated (default: 32)")
    p.add_argument("--image-size", dest="image_size", type=int, default=32, help="input side (default: 32)")
    p.add_argument("--steps", type=int, default=3, help="measured steps per method (default: 3)")
    p.add_argument("--warmup", type=int, default=1, help="unmeasured steps before them (default: 1)")
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure every method this many times in turn, pooling the steps, so that a change in the machine's"
        " load hits all methods alike (default: 1)",
    )
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: auto)")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's own choice)")
    p.add_argument(
        "--channels-last",
        dest="channels_last",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="NHWC activations and weights (default: on)",
    )
    p.add_argument(
        "--isolate",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="each measurement in a fresh process, for its own peak memory (default: on for the CPU)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON instead of tables")
    p.add_argument("--out", help="also write the JSON result to this file")


def _batches(text: str) -> list[int]:
    from rarts.errors import UsageError

    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--batch: comma-separated positive integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise UsageError(f"--batch: comma-separated positive integers, got {text!r}")
    return values


def _run(args: argparse.Namespace, methods: list[str], **extra) -> int:
    import json
    import sys

    from rarts.bench import bench, format_report
    from rarts.errors import UsageError
    from rarts.utils import check_out_file, pick_device, write_json

    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads: must be at least 1, got {args.threads}")
    if args.out:
        check_out_file(args.out)  # now, not after the measurements
    device = pick_device(args.device)
    result = bench(
        methods,
        _batches(args.batch),
        device,
        image_size=args.image_size,
        steps=args.steps,
        warmup=args.warmup,
        rounds=args.rounds,
        channels_last=args.channels_last,
        threads=args.threads,
        isolate=args.isolate,
        progress=None if args.json else (lambda line: print(line, file=sys.stderr, flush=True)),
        **extra,
    )
    if args.out:
        write_json(args.out, result)
    print(json.dumps(result, indent=2) if args.json else format_report(result))
    return 0


def search_command(args: argparse.Namespace) -> int:
    from rarts.bench import SEARCH_METHODS
    from rarts.errors import UsageError

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in SEARCH_METHODS]
    if not methods or unknown:
        raise UsageError(f"--methods: unknown {', '.join(unknown) or 'empty list'}; known: {', '.join(SEARCH_METHODS)}")
    return _run(args, methods, channels=args.channels, layers=args.layers, paired_passes=args.paired_passes)


def train_command(args: argparse.Namespace) -> int:
    return _run(args, ["train"], train_channels=args.channels, train_layers=args.layers, genotype=args.genotype)
