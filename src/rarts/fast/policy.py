"""When the fast paths run: the one rule every module of rarts.fast asks before it takes its rewrite.

On the CPU only: the rewrites work around slow oneDNN kernels and save memory for the backward pass there; on a GPU
they were never measured, so the library's own kernels run. With autograd recording only: they are rewrites of the
backward pass, or of what the forward keeps for it, so inference takes the library's kernels (the same values).
Never while traced or scripted for export, which cannot follow a custom autograd function.
"""

from __future__ import annotations

import torch


def applies(x: torch.Tensor) -> bool:
    """Whether the fast paths run on input x: on the CPU, gradients on, not being traced or scripted."""
    if x.device.type != "cpu" or not torch.is_grad_enabled():
        return False
    return not (torch.jit.is_tracing() or torch.jit.is_scripting())
