"""`rarts genotype` (show, plot, params of a genotype) and `rarts space` (the search network's size).

GENOTYPE is a known name (DARTS_V1, DARTS_V2, DARTS), a JSON file, a DARTS string, or a search run folder.
"""

from __future__ import annotations

import argparse
import json

from rarts.commands import add_layers_argument
from rarts.errors import UsageError

GENOTYPE_HELP = "a known name (DARTS_V1, DARTS_V2), a JSON file, a DARTS genotype string, or a search run folder"
DATASETS = ("cifar10", "cifar100", "imagenet")
DEFAULT_SIZES = {"cifar10": (36, 20), "cifar100": (36, 20), "imagenet": (48, 14)}  # (channels, layers)
CLASSES = {"cifar10": 10, "cifar100": 100, "imagenet": 1000}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "genotype",
        help="show a genotype, draw its cells, count its parameters and mult-adds",
        description="Genotypes: " + GENOTYPE_HELP + ".",
    )
    sub = p.add_subparsers(dest="genotype_command", metavar="SUBCOMMAND", parser_class=type(p))
    sub.required = True

    s = sub.add_parser("show", help="print a genotype readably (or as JSON)")
    s.add_argument("genotype", metavar="GENOTYPE", help=GENOTYPE_HELP)
    s.add_argument("--json", action="store_true", help="print the genotype as JSON")
    s.set_defaults(func=show_command)

    d = sub.add_parser("plot", help="draw the normal and the reduction cell (normal.*, reduce.*)")
    d.add_argument("genotype", metavar="GENOTYPE", help=GENOTYPE_HELP)
    d.add_argument("--out", required=True, help="output folder")
    d.add_argument(
        "--format",
        dest="formats",
        nargs="+",
        choices=("svg", "png", "pdf"),
        default=["svg", "png", "pdf"],
        help="figure formats (default: svg png pdf)",
    )
    d.add_argument(
        "--engine",
        choices=("auto", "dot", "matplotlib"),
        default="auto",
        help="auto: Graphviz dot when installed, else matplotlib (default: auto)",
    )
    d.set_defaults(func=plot_command)

    c = sub.add_parser("params", help="parameters and mult-adds of the final network built from a genotype")
    c.add_argument("genotype", metavar="GENOTYPE", help=GENOTYPE_HELP)
    c.add_argument("--dataset", choices=DATASETS, default="cifar10", help="network and input size (default: cifar10)")
    c.add_argument("--channels", type=int, help="initial channels C (default: 36 for CIFAR, 48 for ImageNet)")
    add_layers_argument(c, "number of cells", "20 for CIFAR, 14 for ImageNet")
    c.add_argument("--json", action="store_true", help="print one JSON object")
    c.set_defaults(func=params_command)

    q = subparsers.add_parser(
        "space",
        help="the DARTS search space: the search network's weight and architecture parameter counts",
        description="The search network (supernet) of the DARTS cell space: 8 ops on 14 edges per cell type.",
    )
    qsub = q.add_subparsers(dest="space_command", metavar="SUBCOMMAND", parser_class=type(q))
    qsub.required = True
    r = qsub.add_parser("params", help="weight and architecture (alpha) parameter counts of the search network")
    r.add_argument("--channels", type=int, default=16, help="initial channels C (default: 16)")
    add_layers_argument(r, "number of cells", "8", default=8)
    r.add_argument("--classes", type=int, default=10, help="number of classes (default: 10)")
    r.add_argument(
        "--input-size", "--image-size", dest="input_size", type=int, default=32, help="image side for mult-adds (32)"
    )
    r.add_argument("--json", action="store_true", help="print one JSON object")
    r.set_defaults(func=space_params_command)


# The final network puts reduction cells at layers//3 and 2*layers//3 and its auxiliary head after the second:
# with fewer than 3 cells that head gets the wrong feature size (2 builds, but only of reduction cells).
# `rarts train` (layers) and `rarts bench` refuse the same.
MIN_FINAL_CELLS = 3


def _check_size(channels: int, layers: int, min_layers: int = 1) -> None:
    if channels < 1:
        raise UsageError(f"--channels must be a positive number, got {channels}")
    if layers < 1:
        raise UsageError(f"--layers must be at least 1, got {layers}")
    if layers < min_layers:
        raise UsageError(
            f"--layers {layers}: a final network needs at least {min_layers} cells (two of them reduction cells)"
        )


def show_command(args: argparse.Namespace) -> int:
    from rarts.genotype import describe_genotype, load_genotype

    genotype = load_genotype(args.genotype)
    if args.json:
        print(genotype.to_json())
    else:
        print(describe_genotype(genotype))
        print()
        print(genotype.to_darts_string())
    return 0


def plot_command(args: argparse.Namespace) -> int:
    from rarts.genotype import load_genotype
    from rarts.viz import plot_genotype

    genotype = load_genotype(args.genotype)
    paths, engine = plot_genotype(genotype, args.out, formats=args.formats, engine=args.engine)
    print(f"drew the cells with {engine}:")
    for path in paths:
        print(f"  {path}")
    return 0


def params_command(args: argparse.Namespace) -> int:
    from rarts.genotype import load_genotype
    from rarts.network import INPUT_SIZES, build_network, summarize_network

    genotype = load_genotype(args.genotype)
    channels = args.channels if args.channels is not None else DEFAULT_SIZES[args.dataset][0]
    layers = args.layers if args.layers is not None else DEFAULT_SIZES[args.dataset][1]
    _check_size(channels, layers, min_layers=MIN_FINAL_CELLS)
    model = build_network(genotype, args.dataset, C=channels, layers=layers, auxiliary=True)
    input_size = INPUT_SIZES[args.dataset]
    result = {
        "genotype": genotype.to_dict(),
        "dataset": args.dataset,
        "channels": channels,
        "layers": layers,
        "classes": CLASSES[args.dataset],
        "input_size": list(input_size),
        **summarize_network(model, input_size),
        "mult_adds_convention": "per image, eval mode, convolutions and linear layers (auxiliary head off)",
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    ops = result["operations"]
    size = "x".join(str(v) for v in input_size)
    name = args.genotype if len(args.genotype) <= 60 else "genotype"
    print(f"{name} on {args.dataset}: {channels} channels, {layers} cells, {result['classes']} classes, input {size}")
    rows = [
        ("parameters (auxiliary head excluded)", result["params"]),
        ("parameters with the auxiliary head", result["params_with_auxiliary"]),
        ("mult-adds per image (conv + linear)", result["mult_adds"]),
        ("  of which convolutions", ops["conv"]),
        ("operations, all layers (ptflops rule)", ops["all_layers"]),
        ("auxiliary head mult-adds (training only)", result["mult_adds_auxiliary_head"]),
    ]
    for name, value in rows:
        print(f"  {name:<42} {value:>14,}  ({value / 1e6:.2f}M)")
    return 0


def space_params_command(args: argparse.Namespace) -> int:
    import torch

    from rarts.flops import count_operations
    from rarts.supernet import Architecture, SearchNetwork

    _check_size(args.channels, args.layers)
    if args.classes < 1:
        raise UsageError(f"--classes must be at least 1, got {args.classes}")
    if args.input_size < 8:
        raise UsageError(f"--input-size must be at least 8, got {args.input_size}")
    torch.manual_seed(0)
    net = SearchNetwork(args.channels, args.classes, args.layers)
    arch = Architecture()
    operations = count_operations(net, (3, args.input_size, args.input_size), arch)
    result = {
        "channels": args.channels,
        "layers": args.layers,
        "classes": args.classes,
        "weights": sum(p.numel() for p in net.parameters()),
        "alphas": sum(p.numel() for p in arch.parameters()),
        "alpha_shape": list(arch.alpha_normal.shape),
        "input_size": [3, args.input_size, args.input_size],
        "mult_adds": operations["mult_adds"],
        "operations": operations,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    rows, cols = result["alpha_shape"]
    print(f"search network: {args.channels} channels, {args.layers} cells, {args.classes} classes")
    side = args.input_size
    print(f"  {'weights w':<36} {result['weights']:>14,}")
    print(f"  {'architecture alpha':<36} {result['alphas']:>14,}  (normal and reduce, {rows} x {cols} each)")
    label = f"mult-adds per image ({side}x{side})"
    print(f"  {label:<36} {result['mult_adds']:>14,}  ({result['mult_adds'] / 1e6:.1f}M)")
    return 0
