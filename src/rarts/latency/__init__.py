"""Latency lookup tables and the expected-latency penalty (the paper adopts FasterSeg's).

A network is read as a sum of parts, each timed on its own on the target device (`plan`); a `LatencyTable` maps
each part's key to median milliseconds and records the conditions of the measurement: device, dtype, batch,
threads, torch (`table`); `measure_table` and `measure_networks` time parts and whole networks (`timing`); and
`LatencyPenalty` adds the expected latency of the relaxed network to the search objective (`penalty`):

    E[latency](alpha) = sum over cells c, edges e, ops o of softmax(alpha_c)[e, o] * latency(o at e's shape in c).
"""

from rarts.latency.penalty import ArchLike, LatencyPenalty
from rarts.latency.plan import (
    EDGE_INPUTS,
    EDGE_OFFSETS,
    OP_NAMES,
    VARIANTS,
    CellPlan,
    NetworkPlan,
    Probe,
    dataset_shape,
    final_plan,
    head_key,
    merge_key,
    op_key,
    plan_network,
    preprocess_key,
    search_plan,
    stem_key,
)
from rarts.latency.table import TABLE_FORMAT, TABLE_VERSION, LatencyTable, describe_network
from rarts.latency.timing import (
    CLOCKS,
    DTYPES,
    measure_network,
    measure_networks,
    measure_table,
    measurement_conditions,
    network_calls,
    network_summary,
    part_calls,
    table_from_samples,
    time_calls,
)

__all__ = [
    "CLOCKS",
    "DTYPES",
    "EDGE_INPUTS",
    "EDGE_OFFSETS",
    "OP_NAMES",
    "TABLE_FORMAT",
    "TABLE_VERSION",
    "VARIANTS",
    "ArchLike",
    "CellPlan",
    "LatencyPenalty",
    "LatencyTable",
    "NetworkPlan",
    "Probe",
    "dataset_shape",
    "describe_network",
    "final_plan",
    "head_key",
    "measure_network",
    "measure_networks",
    "measure_table",
    "measurement_conditions",
    "merge_key",
    "network_calls",
    "network_summary",
    "op_key",
    "part_calls",
    "plan_network",
    "preprocess_key",
    "search_plan",
    "stem_key",
    "table_from_samples",
    "time_calls",
]
