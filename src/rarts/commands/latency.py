"""`rarts latency`: measure latency lookup tables, predict a genotype's latency from one, time a final network."""

from __future__ import annotations

import argparse
from typing import Any

from rarts.commands import add_layers_argument

NETWORKS = ("search", "final", "both")
DTYPE_NAMES = ("float32", "float64", "float16", "bfloat16")


def _timing_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: auto)")
    p.add_argument("--batch", type=int, default=1, help="images per forward pass (default: 1)")
    p.add_argument("--dtype", choices=DTYPE_NAMES, default="float32", help="dtype (default: float32)")
    p.add_argument("--threads", type=int, help="CPU threads for the timing (default: torch's current count)")
    p.add_argument("--warmup", type=int, default=5, help="untimed runs first (default: 5)")
    p.add_argument("--repeats", type=int, default=30, help="timed runs; the median is kept (default: 30)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs and the timing order")
    p.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall: elapsed time (default); cpu: this process's CPU time, robust on a CPU shared with other jobs "
        "(use with --threads 1)",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "latency",
        help="latency lookup tables, the expected-latency penalty's data, predicted and measured latency",
        description="Per-device latency lookup tables for the latency-aware search (FasterSeg's penalty).",
    )
    sub = p.add_subparsers(dest="latency_command", metavar="SUBCOMMAND", parser_class=type(p))
    sub.required = True

    m = sub.add_parser(
        "measure",
        help="time every primitive at every shape a network uses, plus its fixed parts, into a JSON table",
        description="Time every part of the search network of a preset (--network search), of a final network "
        "for every genotype (--network final), or both, on one device. Forward passes in eval mode.",
    )
    m.add_argument("--network", choices=NETWORKS, default="search", help="which network's shapes (default: search)")
    m.add_argument("--preset", default="quick", help="search preset giving the search network's size (default: quick)")
    m.add_argument("--channels", type=int, help="search network channels (default: the preset's)")
    add_layers_argument(m, "search network cells", "the preset's")
    m.add_argument("--image-size", dest="image_size", type=int, help="search network input size (default: preset's)")
    m.add_argument("--dataset", help="dataset deciding classes and final input size (default: preset's, or cifar10)")
    m.add_argument("--classes", type=int, help="number of classes (default: the dataset's; give it for a folder)")
    m.add_argument("--final-channels", dest="final_channels", type=int, help="final network channels (default: 36)")
    add_layers_argument(m, "final network cells", "20", prefix="final-")
    m.add_argument("--out", default="latency_table.json", help="table file to write (default: latency_table.json)")
    _timing_flags(m)
    m.set_defaults(func=measure_command)

    pr = sub.add_parser(
        "predict",
        help="the table's latency estimate for a genotype's network",
        description="Sum the table's entries over the parts of a genotype's network. The final network's size "
        "defaults to the one the table was measured for.",
    )
    pr.add_argument("--genotype", required=True, help="known name, JSON file, DARTS string or search run folder")
    pr.add_argument("--table", required=True, help="latency table from `rarts latency measure`")
    pr.add_argument("--network", choices=("final", "search"), default="final", help="which network (default: final)")
    pr.add_argument("--dataset", help="final network dataset (default: the table's)")
    pr.add_argument("--channels", type=int, help="final network channels (default: the table's)")
    add_layers_argument(pr, "final network cells", "the table's")
    pr.add_argument("--json", action="store_true", help="print one JSON object")
    pr.set_defaults(func=predict_command)

    n = sub.add_parser(
        "network",
        help="measure the forward latency of a genotype's final network",
        description="Time whole forward passes of the final network (eval mode, auxiliary head off).",
    )
    n.add_argument("--genotype", required=True, help="known name, JSON file, DARTS string or search run folder")
    n.add_argument("--dataset", default="cifar10", help="dataset deciding the network's form (default: cifar10)")
    n.add_argument("--channels", type=int, help="channels (default: 36 on CIFAR, 48 on ImageNet)")
    add_layers_argument(n, "cells", "20 on CIFAR, 14 on ImageNet")
    n.add_argument("--classes", type=int, help="number of classes (default: the dataset's; give it for a folder)")
    n.add_argument("--table", help="also print this table's prediction and the measured/predicted ratio")
    n.add_argument("--json", action="store_true", help="print one JSON object")
    _timing_flags(n)
    n.set_defaults(func=network_command)


def _positive(name: str, value: int | None) -> None:
    from rarts.errors import UsageError

    if value is not None and value < 1:
        raise UsageError(f"{name} must be a positive integer, got {value}")


def _check_timing(args: argparse.Namespace) -> None:
    from rarts.errors import UsageError

    _positive("--batch", args.batch)
    _positive("--repeats", args.repeats)
    _positive("--threads", args.threads)
    if args.warmup < 0:
        raise UsageError(f"--warmup must be 0 or more, got {args.warmup}")


def _dtype(args: argparse.Namespace, device: Any) -> Any:
    from rarts.errors import UsageError
    from rarts.latency import DTYPES

    if args.dtype == "float16" and device.type == "cpu":
        raise UsageError("--dtype float16 is for CUDA; use float32 or bfloat16 on the CPU")
    return DTYPES[args.dtype]


def _first(data: dict, *names: str) -> Any:
    for name in names:
        if data.get(name) is not None:
            return data[name]
    return None


def search_network_size(args: argparse.Namespace) -> tuple[int, int, int, str]:
    """(channels, layers, image size, dataset) of the search network: flags first, then the search preset."""
    from rarts.config import load_preset
    from rarts.errors import UsageError
    from rarts.latency import dataset_shape

    C, layers, image_size, dataset = args.channels, args.layers, args.image_size, args.dataset
    for name, value in (("--channels", C), ("--layers", layers), ("--image-size", image_size)):
        _positive(name, value)
    if None in (C, layers, image_size, dataset):
        try:
            preset = load_preset("search", args.preset)
        except UsageError as e:
            if None in (C, layers):
                raise UsageError(f"{e}; or give the search network's size with --channels and --layers") from None
            preset = {}
        C = C if C is not None else _first(preset, "channels", "init_channels", "C")
        layers = layers if layers is not None else _first(preset, "layers", "cells")
        dataset = dataset or _first(preset, "dataset") or "cifar10"
        image_size = image_size or _first(preset, "image_size", "input_size") or dataset_shape(dataset)[0]
        if C is None or layers is None:
            raise UsageError(f"search preset {args.preset!r} names no channels or layers; give --channels and --layers")
    return int(C), int(layers), int(image_size), str(dataset)


def measure_command(args: argparse.Namespace) -> int:
    import sys
    import time

    from rarts.errors import UsageError
    from rarts.latency import dataset_shape, describe_network, final_plan, measure_table, search_plan
    from rarts.utils import check_out_file, pick_device

    _check_timing(args)
    _positive("--final-channels", args.final_channels)
    _positive("--final-layers", args.final_layers)
    _positive("--classes", args.classes)
    if args.network == "final" and (args.channels is not None or args.layers is not None):
        raise UsageError(
            "--channels and --layers size the search network; "
            "the final network's are --final-channels and --final-layers"
        )
    check_out_file(args.out)  # now, not after minutes of timing
    device = pick_device(args.device)
    dtype = _dtype(args, device)
    plans = []
    if args.network in ("search", "both"):
        C, layers, image_size, dataset = search_network_size(args)
        plans.append(search_plan(C, layers, image_size, args.classes or dataset_shape(dataset)[1]))
    if args.network in ("final", "both"):
        dataset = args.dataset or (dataset if args.network == "both" else "cifar10")
        plans.append(final_plan(dataset, args.final_channels, args.final_layers, args.classes))
    keys = len({k for plan in plans for k in plan.required_keys()})
    print(f"timing {keys} parts on {device}, batch {args.batch}, {args.repeats} repeats", file=sys.stderr)

    def progress(done: int, total: int) -> None:
        if done == total or done % max(1, total // 10) == 0:
            print(f"  round {done}/{total}", file=sys.stderr)

    start = time.perf_counter()
    table = measure_table(
        plans,
        device,
        dtype,
        args.batch,
        args.warmup,
        args.repeats,
        args.threads,
        args.seed,
        clock=args.clock,
        progress=progress,
    )
    table.conditions["seconds"] = round(time.perf_counter() - start, 2)
    table.save(args.out)
    c = table.conditions
    print(f"{args.out}: {len(table.entries)} entries, {c['device_name']}, {c['dtype']}, batch {c['batch']}")
    for desc in table.networks:
        plan = next(p for p in plans if p.description == desc)
        fixed = table.total(plan.fixed_keys())
        print(f"  {describe_network(desc)}: fixed parts {fixed:.3f} ms")
    return 0


def _final_size(args: argparse.Namespace, table: Any) -> tuple[str, int | None, int | None]:
    recorded = next((d for d in table.networks if d.get("kind") == "final"), {})
    dataset = args.dataset or recorded.get("dataset") or "cifar10"
    same = dataset == recorded.get("dataset")
    C = args.channels or (recorded.get("C") if same else None)
    layers = args.layers or (recorded.get("layers") if same else None)
    return dataset, C, layers


def predict_command(args: argparse.Namespace) -> int:
    import json

    from rarts.errors import UsageError
    from rarts.genotype import load_genotype
    from rarts.latency import LatencyTable, describe_network, final_plan, search_plan

    _positive("--channels", args.channels)
    _positive("--layers", args.layers)
    genotype = load_genotype(args.genotype)
    table = LatencyTable.load(args.table)
    if args.network == "final":
        dataset, C, layers = _final_size(args, table)
        plan = final_plan(dataset, C, layers)
    else:
        desc = next((d for d in table.networks if d.get("kind") == "search"), None)
        if desc is None:
            raise UsageError(f"{args.table} holds no search network; measure one with --network search")
        plan = search_plan(desc["C"], desc["layers"], desc["image_size"], desc.get("num_classes", 10))
    predicted = table.predict(plan, genotype)
    fixed = table.total(plan.fixed_keys())
    result = {
        "predicted_ms": predicted,
        "fixed_ms": fixed,
        "ops_ms": predicted - fixed,
        "network": plan.description,
        "conditions": table.conditions,
        "genotype": genotype.to_dict(),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        c = table.conditions
        print(
            f"{describe_network(plan.description)}: predicted {predicted:.3f} ms (ops {predicted - fixed:.3f} ms, ",
            end="",
        )
        print(f"fixed parts {fixed:.3f} ms) on {c.get('device_name')}, batch {c.get('batch')}, {c.get('dtype')}")
    return 0


def network_command(args: argparse.Namespace) -> int:
    import json

    from rarts.genotype import load_genotype
    from rarts.latency import LatencyTable, dataset_shape, final_plan, measure_network
    from rarts.network import build_network
    from rarts.utils import pick_device

    _check_timing(args)
    _positive("--channels", args.channels)
    _positive("--layers", args.layers)
    _positive("--classes", args.classes)
    genotype = load_genotype(args.genotype)
    device = pick_device(args.device)
    dtype = _dtype(args, device)
    image_size, _ = dataset_shape(args.dataset)
    predicted = None
    if args.table:  # before the timing, so a table that does not cover the network fails at once
        table = LatencyTable.load(args.table)
        predicted = table.predict(final_plan(args.dataset, args.channels, args.layers, args.classes), genotype)
    model = build_network(genotype, args.dataset, args.channels, args.layers, auxiliary=False, num_classes=args.classes)
    result = measure_network(
        model,
        image_size,
        device,
        dtype=dtype,
        batch=args.batch,
        warmup=args.warmup,
        repeats=args.repeats,
        threads=args.threads,
        seed=args.seed,
        clock=args.clock,
    )
    C = args.channels or (48 if args.dataset == "imagenet" else 36)
    result["network"] = {"kind": "final", "dataset": args.dataset, "C": C, "layers": len(model.cells)}
    if predicted is not None:
        result["predicted_ms"] = predicted
        result["measured_over_predicted"] = result["median_ms"] / predicted
        # A ratio between a measurement and a table taken under other conditions compares those conditions too.
        keys = ("device_name", "dtype", "batch", "threads", "clock")
        differ = {k: (table.conditions.get(k), result["conditions"].get(k)) for k in keys}
        result["conditions_differing_from_table"] = {
            k: {"table": a, "measured": b} for k, (a, b) in differ.items() if a is not None and a != b
        }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    c = result["conditions"]
    print(
        f"measured {result['median_ms']:.3f} ms (median of {c['repeats']}, interquartile range "
        f"{100 * result['spread']:.1f}% of it) on {c['device_name']}, batch {c['batch']}, {c['dtype']}"
    )
    if args.table:
        print(
            f"predicted {result['predicted_ms']:.3f} ms; measured / predicted = {result['measured_over_predicted']:.3f}"
        )
        differ = result["conditions_differing_from_table"]
        if differ:
            said = ", ".join(f"{k} {v['table']} there, {v['measured']} here" for k, v in differ.items())
            print(f"warning: the table was measured under other conditions ({said}): the ratio compares them too")
    return 0
