"""The resume policy, read from the configs themselves: which settings a resumed run may change.

A setting declared with `free(default)` may differ when a run is resumed: it says where the data lie or how the
run reports, not what it computes. Every other setting must be as the checkpoint has it (`check_resumable`).

    threads: Optional[int] = free(None)
    resume_free_settings("search")   # frozenset of the names, for readers of many runs (compare, report)
"""

from __future__ import annotations

import dataclasses
from typing import Any

from rarts.errors import UsageError

_FREE = "resume_free"


def free(default: Any, **metadata: Any) -> Any:
    """A dataclass field that may change when a run is resumed."""
    return dataclasses.field(default=default, metadata={_FREE: True, **metadata})


def config_class(task: str) -> type:
    """The config dataclass of `task` ("search" or "train")."""
    if task == "search":
        from rarts.search.config import SearchConfig

        return SearchConfig
    if task == "train":
        from rarts.train.config import TrainConfig

        return TrainConfig
    raise ValueError(f"unknown task {task!r}")


def free_names(cls: type) -> frozenset[str]:
    """The settings of config dataclass `cls` (nested ones included) that a resumed run may change."""
    names: set[str] = set()
    for f in dataclasses.fields(cls):
        nested = f.default_factory if f.default_factory is not dataclasses.MISSING else None
        if nested is not None and dataclasses.is_dataclass(nested):
            names |= free_names(nested)
        elif f.metadata.get(_FREE):
            names.add(f.name)
    return frozenset(names)


def resume_free_settings(task: str) -> frozenset[str]:
    """The settings a resumed run of `task` ("search" or "train") may change."""
    return free_names(config_class(task))


def check_resumable(cfg: Any, saved: dict[str, Any]) -> None:
    """A resumed run must compute what the saved one computed: only its free settings may differ from `saved`
    (the checkpoint's config, read as a config of today, so older names and missing defaults are filled in)."""
    from rarts.config import build_config, config_to_dict

    current = config_to_dict(cfg)
    before = config_to_dict(build_config(type(cfg), saved))
    allowed = free_names(type(cfg))
    for key, value in before.items():
        if key not in allowed and current[key] != value:
            raise UsageError(
                f"setting {key}={current[key]!r} differs from the run's {value!r}: "
                "resume with the same settings, or start a new run in another --out"
            )
