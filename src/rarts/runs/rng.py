"""Every random generator's state as plain data (loads with weights_only=True): one capture, one restore.

    state = capture_rng(device)    # {"python": {...}, "numpy": {...}, "torch": tensor, "cuda": [...], "cuda_device"}
    restore_rng(state, device)

`cuda` holds every visible GPU's generator and `cuda_device` the run's own GPU's alone, so a resume that sees
another number of GPUs (one per process under torchrun, say) still gets its own generator back. Checkpoints of
version 1 held two older layouts (the search's without `cuda` lists, the training's as lists); `upgrade_rng`
reads both.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def capture_rng(device: torch.device) -> dict[str, Any]:
    """Python, numpy, torch and CUDA generator states."""
    keys, pos, has_gauss, cached = np.random.get_state()[1:]
    version, internal, gauss = random.getstate()
    cuda = torch.cuda.is_available()
    return {
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": pos,
            "has_gauss": has_gauss,
            "cached": cached,
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if cuda else [],
        "cuda_device": (torch.cuda.get_rng_state(*_gpu(device)) if cuda else None),
    }


def restore_rng(state: dict[str, Any], device: torch.device) -> None:
    """Set every generator to `state` (from capture_rng, or a version-1 layout through upgrade_rng)."""
    p, n = state["python"], state["numpy"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if not torch.cuda.is_available():
        return
    if state["cuda"] and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    elif state["cuda_device"] is not None:
        torch.cuda.set_rng_state(state["cuda_device"], *_gpu(device))


def _gpu(device: torch.device) -> tuple[torch.device, ...]:
    """The device argument of torch.cuda's generator calls: the run's GPU, or none (the current one)."""
    return (device,) if device.type == "cuda" else ()


def upgrade_rng(state: dict[str, Any]) -> dict[str, Any]:
    """A version-1 checkpoint's generator states in the current layout."""
    if isinstance(state["python"], dict):  # the search's: dicts, and the run's own GPU only
        cuda = state.get("cuda")
        return {**state, "cuda": [], "cuda_device": cuda}
    py_version, py_state, py_gauss = state["python"]  # the training's: lists
    _, keys, pos, has_gauss, cached = state["numpy"]
    return {
        "python": {"version": py_version, "internal": list(py_state), "gauss": py_gauss},
        "numpy": {"keys": keys, "pos": pos, "has_gauss": has_gauss, "cached": cached},
        "torch": state["torch"],
        "cuda": list(state.get("cuda") or []),
        "cuda_device": state.get("cuda_current"),
    }
