"""The checkpoint file of every task: a plain dict that loads with torch.load(weights_only=True).

    save_checkpoint(path, "search", state)    # state: the task's dict; format and version are added here
    ckpt = load_checkpoint(path, "search")    # any version this rarts reads, in the current layout

Every checkpoint holds `format` ("rarts-<task>-checkpoint"), `version`, `config` (the flat settings, as
config.json), `epoch` (epochs done), `rng` (rarts.runs.rng) and the task's own state. Version 2 changed three
things, which `load_checkpoint` upgrades in a version-1 file: one layout of the generator states for both tasks,
`channels` for the final network's width (config `init_channels`, network spec `C` before), and accuracies in
percent (a search's last metrics row held fractions).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from rarts.errors import UsageError
from rarts.runs.rng import upgrade_rng
from rarts.utils import atomic_torch_save

CHECKPOINT_NAME = "checkpoint.pt"
VERSION = 2
READS = (1, 2)  # the versions load_checkpoint reads


def checkpoint_format(task: str) -> str:
    return f"rarts-{task}-checkpoint"


def save_checkpoint(path: str | os.PathLike, task: str, state: dict[str, Any]) -> None:
    """Write `state` with its format and version, atomically (a killed run never leaves half a checkpoint)."""
    atomic_torch_save({"format": checkpoint_format(task), "version": VERSION, **state}, path)


def load_checkpoint(path: str | os.PathLike, task: str) -> dict[str, Any]:
    """A checkpoint of `task` ("search" or "train"), in the current layout; anything else is a one-line UsageError."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"checkpoint {path} not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        # Not torch's text: it advises loading with weights_only=False, which runs whatever code the file holds.
        raise UsageError(f"{path} is not a rarts checkpoint, or it is damaged ({type(e).__name__} reading it)") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != checkpoint_format(task):
        other = ckpt.get("format") if isinstance(ckpt, dict) else None
        if other == checkpoint_format("search") and task == "train":
            raise UsageError(
                f"{path} is a search checkpoint, not a training one: train the cells it found first "
                f"(rarts train --genotype {path.parent}) and use that run's checkpoint"
            )
        raise UsageError(f"{path} is not a rarts {task} checkpoint")
    if ckpt.get("version") not in READS:
        reads = " and ".join(str(v) for v in READS)
        raise UsageError(f"{path} has checkpoint version {ckpt.get('version')}, this rarts reads {reads}")
    return _upgrade_v1(ckpt, task) if ckpt["version"] == 1 else ckpt


def _upgrade_v1(ckpt: dict[str, Any], task: str) -> dict[str, Any]:
    from rarts.config import current_names
    from rarts.runs.folder import percent_row
    from rarts.runs.resume import config_class

    ckpt = {**ckpt, "version": VERSION, "config": current_names(config_class(task), ckpt["config"])}
    ckpt["rng"] = upgrade_rng(ckpt["rng"])
    if ckpt.get("rng_ranks"):
        ckpt["rng_ranks"] = [upgrade_rng(s) for s in ckpt["rng_ranks"]]
    if task == "search":
        ckpt["last_row"] = percent_row(ckpt["last_row"])
    if "network" in ckpt and "C" in ckpt["network"]:
        network = dict(ckpt["network"])
        network["channels"] = network.pop("C")
        ckpt["network"] = network
    return ckpt
