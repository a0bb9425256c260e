"""The latency penalty of the search: the expected latency of the relaxed network, differentiable in alpha.

    E[latency](alpha) = sum over cells c, edges e, ops o of softmax(alpha_c)[e, o] * latency(o at e's shape in c),

with `none` at zero (the search network never runs it). `LatencyPenalty` holds the per-edge latencies of all
normal cells and of all reduction cells summed into two (14, 8) matrices, so evaluating it is two weighted sums.
"""

from __future__ import annotations

from typing import Union

import torch

from rarts.errors import UsageError
from rarts.genotype import Genotype
from rarts.latency.plan import NetworkPlan, final_plan, plan_network
from rarts.latency.table import LatencyTable
from rarts.ops import PRIMITIVES
from rarts.supernet import NUM_EDGES, Architecture, SearchNetwork

ArchLike = Union[Architecture, tuple[torch.Tensor, torch.Tensor]]


class LatencyPenalty:
    """Expected latency of the search network under the softmax of alpha, differentiable in alpha.

    `penalty(arch)` is sum over cells, edges and ops of softmax(alpha)[e, o] * latency(o at edge e of the cell),
    a scalar tensor in milliseconds on alpha's device. `arch` is an Architecture, or a pair (normal, reduce) of
    (14, 8) mixing weights, softmax(alpha) already taken (what `Architecture.weights()` returns), not raw alphas.
    The fixed parts (stem, preprocessing, merges, head) do not depend on alpha; they are in `fixed_ms`, and
    `expected_latency_ms` adds them for logging.
    `genotype_latency(genotype)` is the table's estimate for the discrete network of the search network's
    shape; `predict_final(genotype, dataset, C, layers)` that for a final network, if the table covers it.
    """

    def __init__(self, table: LatencyTable, network: SearchNetwork | NetworkPlan, image_size: int | None = None):
        self.table = table
        if isinstance(network, NetworkPlan):
            self.plan = network
        else:
            if image_size is None:
                image_size = _table_image_size(table, network)
            self.plan = plan_network(network, image_size, {"kind": "search", "C": network.C, "image_size": image_size})
        if self.plan.variant != "search":
            raise UsageError("LatencyPenalty needs the plan of a search network, not of a final network")
        table.check_covers(self.plan)
        # (14, 8) per cell type, summed over the cells of that type; `none` stays at zero.
        self.latency_normal = torch.zeros(NUM_EDGES, len(PRIMITIVES), dtype=torch.float64)
        self.latency_reduce = torch.zeros(NUM_EDGES, len(PRIMITIVES), dtype=torch.float64)
        for cell in self.plan.cells:
            target = self.latency_reduce if cell.reduction else self.latency_normal
            for e in range(NUM_EDGES):
                for k, name in enumerate(PRIMITIVES):
                    if name != "none":
                        target[e, k] += table[cell.edge_op_key(e, name)]
        self.fixed_ms = table.total(self.plan.fixed_keys())
        self._final_plans: dict[tuple, NetworkPlan] = {}

    def __call__(self, arch: ArchLike) -> torch.Tensor:
        w_normal, w_reduce = arch.weights() if isinstance(arch, Architecture) else arch
        return (w_normal * self.latency_normal.to(w_normal)).sum() + (w_reduce * self.latency_reduce.to(w_reduce)).sum()

    def expected_latency_ms(self, arch: ArchLike) -> float:
        """The expected latency with the fixed parts, as a float for logs."""
        with torch.no_grad():
            return float(self(arch)) + self.fixed_ms

    def genotype_latency(self, genotype: Genotype) -> float:
        """The table's estimate (ms) of the discrete network of `genotype` at the search network's shape."""
        return self.table.predict(self.plan, genotype)

    def predict_final(
        self, genotype: Genotype, dataset: str = "cifar10", C: int | None = None, layers: int | None = None
    ) -> float:
        """The table's estimate (ms) of the final network of `genotype`; the table must cover that network."""
        key = (dataset, C, layers)
        if key not in self._final_plans:
            self._final_plans[key] = final_plan(dataset, C, layers)
        return self.table.predict(self._final_plans[key], genotype)


def _table_image_size(table: LatencyTable, network: SearchNetwork) -> int:
    """The image size of the table's search network matching `network`'s channels and cells."""
    for desc in table.networks:
        if desc.get("kind") == "search" and desc.get("C") == network.C and desc.get("layers") == network.layers:
            return int(desc["image_size"])
    raise UsageError(
        f"{table.source} covers no search network with C={network.C} and {network.layers} cells; "
        "measure one with `rarts latency measure --network search`"
    )
