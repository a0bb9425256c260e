"""The latency table: median milliseconds per part of a network, with the conditions of the measurement.

A table is saved as JSON (format `rarts-latency-table`, version 1). It refuses to answer for a part it has no
entry for, naming the networks it was measured for, so a missing network is never silently counted as free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rarts.errors import UsageError
from rarts.genotype import Genotype
from rarts.latency.plan import NetworkPlan
from rarts.utils import read_json, write_json

TABLE_FORMAT = "rarts-latency-table"
TABLE_VERSION = 1


@dataclass
class LatencyTable:
    """Median latency in milliseconds per key, with the conditions it was measured under.

    `spread` holds each entry's interquartile range relative to its median; `networks` describes the
    networks whose parts were measured; `source` names the file it was read from, for error messages.
    """

    entries: dict[str, float]
    conditions: dict[str, Any] = field(default_factory=dict)
    networks: list[dict[str, Any]] = field(default_factory=list)
    spread: dict[str, float] = field(default_factory=dict)
    source: str = "latency table"

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def __getitem__(self, key: str) -> float:
        if key not in self.entries:
            raise self._missing([key])
        return self.entries[key]

    def _missing(self, keys: list[str]) -> UsageError:
        covered = "; ".join(describe_network(n) for n in self.networks) or "no network recorded"
        more = f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""
        return UsageError(
            f"{self.source} has no entry {keys[0]}{more}: it covers {covered}; "
            "measure a table for this network with `rarts latency measure`"
        )

    def check_covers(self, plan: NetworkPlan) -> None:
        """Raise a UsageError naming the first missing entry if the table does not cover `plan`."""
        missing = [k for k in plan.required_keys() if k not in self.entries]
        if missing:
            raise self._missing(missing)

    def total(self, keys: list[str]) -> float:
        """Sum of the entries of `keys` (with repeats), in milliseconds."""
        missing = list(dict.fromkeys(k for k in keys if k not in self.entries))
        if missing:
            raise self._missing(missing)
        return float(sum(self.entries[k] for k in keys))

    def predict(self, plan: NetworkPlan, genotype: Genotype) -> float:
        """The table's latency estimate (ms) of `plan`'s network built from `genotype`."""
        return self.total(plan.genotype_keys(genotype))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": TABLE_FORMAT,
            "version": TABLE_VERSION,
            "unit": "ms",
            "conditions": self.conditions,
            "networks": self.networks,
            "entries": self.entries,
            "spread": self.spread,
        }

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, data: Any, source: str = "latency table") -> LatencyTable:
        if not isinstance(data, dict) or data.get("format") != TABLE_FORMAT:
            raise UsageError(f"{source} is not a rarts latency table (made by `rarts latency measure`)")
        if data.get("version") != TABLE_VERSION:
            raise UsageError(
                f"{source}: latency table version {data.get('version')!r}, this rarts reads {TABLE_VERSION}"
            )
        entries = data.get("entries")
        if not isinstance(entries, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in entries.values()
        ):
            raise UsageError(f"{source}: entries must map keys to non-negative milliseconds")
        return cls(
            {str(k): float(v) for k, v in entries.items()},
            dict(data.get("conditions") or {}),
            list(data.get("networks") or []),
            {str(k): float(v) for k, v in (data.get("spread") or {}).items()},
            source,
        )

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        return cls.from_dict(read_json(path), source=str(path))


def describe_network(desc: dict[str, Any]) -> str:
    """One line naming a network a table was measured for, e.g. 'final network cifar10 C=36 layers=20 32px'."""
    parts = [f"{desc.get('kind', '?')} network"]
    if desc.get("dataset"):
        parts.append(str(desc["dataset"]))
    parts.append(f"C={desc.get('C', '?')} layers={desc.get('layers', '?')} {desc.get('image_size', '?')}px")
    if desc.get("num_classes"):
        parts.append(f"{desc['num_classes']} classes")
    return " ".join(parts)
