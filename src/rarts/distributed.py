"""One search or training run spread over several processes: `torchrun --nproc_per_node=N -m rarts ...`.

    torchrun --nproc_per_node=4 -m rarts search --method rarts --out runs/r4          # 4 GPUs, NCCL
    torchrun --nproc_per_node=2 -m rarts train --genotype DARTS_V2 --device cpu ...     # 2 CPU processes, gloo

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; `process_group` reads them and joins
the group only when WORLD_SIZE > 1, so a plain `rarts ...` never touches torch.distributed. On CUDA each
process takes the GPU cuda:LOCAL_RANK and the backend is NCCL; on the CPU it is gloo.

The choices, the same for search and training:
- `batch_size` is the batch of one process (DARTS users set it per GPU); the global batch is batch_size x
  WORLD_SIZE, cut from one shared epoch order (DeviceLoader's rank/world_size sharding), so an epoch has
  WORLD_SIZE times fewer steps. Learning rates are not rescaled: scale them yourself if you grow the batch.
- Batch norm normalises with each process's own batch statistics, as DARTS does on one GPU with its batch:
  a step on N processes equals one process that computes the loss of each of the N shards separately (batch
  statistics per shard) and averages them. No SyncBatchNorm (it has no CPU implementation, and the search's
  gradients are taken with torch.autograd.grad, see below). Running statistics: training evaluates with rank
  0's (DDP broadcasts buffers at every training forward, and `broadcast_state(buffers_only=True)` copies them
  before each test, which runs on the bare network); the search averages them over the processes before every
  evaluation and checkpoint (`average_buffers`).
- Every process seeds the same generators, so the replicas start identical; rank 0's weights and alpha are
  then broadcast anyway, which keeps them identical whatever the initialisation does on a device.
- Only rank 0 writes files (run folder, checkpoints, logs) and prints progress; every rank reads the
  checkpoint on `--resume`, which needs the same WORLD_SIZE as the run that wrote it (the loader positions
  are positions in global batches).

Training wraps the network in DistributedDataParallel: its loss.backward() fires DDP's bucketed all-reduce.
The search methods take their gradients with torch.autograd.grad (alpha-only gradients, virtual steps),
which bypasses DDP's backward hooks, so the search averages gradients itself: `average_gradients` is the
methods' `grad_sync` hook, called on every weight-set gradient (w, y) before clipping and on every alpha
gradient before Adam (and by DARTS 2nd order on its virtual-step gradient and on v), one flattened
all-reduce per call, which is what DDP does minus the overlap with the backward pass.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from rarts.errors import UsageError
from rarts.utils import pick_device


@dataclass(frozen=True)
class World:
    """Where this process stands: its rank, the number of processes and its rank on this machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as e:
        raise UsageError(f"environment variable {name}={value!r} is not an integer") from e


def world_from_env() -> World:
    """The World that torchrun's environment variables describe (a single process when they are unset)."""
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", rank)
    if world_size < 1 or not 0 <= rank < world_size:
        raise UsageError(f"RANK={rank} and WORLD_SIZE={world_size}: the rank must lie in 0..WORLD_SIZE-1")
    return World(rank, world_size, local_rank)


def current_world() -> World:
    """The World of the initialised process group, or a single process when there is none."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    rank = dist.get_rank()
    return World(rank, dist.get_world_size(), _env_int("LOCAL_RANK", rank))


def is_main_process() -> bool:
    """True on rank 0 and in a run without a process group: the process that writes files and prints."""
    return current_world().is_main


def device_for(setting: str | None, world: World) -> torch.device:
    """The device of this process: `setting` as rarts.utils.pick_device reads it, and on CUDA in a distributed
    run the GPU cuda:LOCAL_RANK (one GPU per process), made the current device."""
    device = pick_device(setting)
    if device.type == "cuda" and world.enabled:
        if world.local_rank >= torch.cuda.device_count():
            raise UsageError(
                f"LOCAL_RANK={world.local_rank} but only {torch.cuda.device_count()} GPUs are visible: "
                "start at most one process per GPU (torchrun --nproc_per_node)"
            )
        device = torch.device("cuda", world.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


@contextlib.contextmanager
def process_group(device_setting: str | None) -> Iterator[tuple[World, torch.device]]:
    """Yield (world, device) for a run. Joins the process group torchrun describes when WORLD_SIZE > 1 and none
    is initialised yet (and leaves it on exit); an existing group (e.g. a test's) is used as it is."""
    if dist.is_available() and dist.is_initialized():
        world = current_world()
        yield world, device_for(device_setting, world)
        return
    world = world_from_env()
    device = device_for(device_setting, world)
    if not world.enabled:
        yield world, device
        return
    if not dist.is_available():
        raise UsageError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if name not in os.environ:
            raise UsageError(f"WORLD_SIZE > 1 but {name} is not set: start the run with torchrun")
    dist.init_process_group(
        backend_for(device),
        rank=world.rank,
        world_size=world.world_size,
        timeout=datetime.timedelta(minutes=30),
        **({"device_id": device} if device.type == "cuda" else {}),
    )
    try:
        yield world, device
    finally:
        dist.destroy_process_group()


# --- collectives (each a no-op on a single process) -------------------------------------------------------------


def _groups(tensors: list[torch.Tensor]) -> dict[tuple[torch.dtype, torch.device], list[int]]:
    groups: dict[tuple[torch.dtype, torch.device], list[int]] = {}
    for i, t in enumerate(tensors):
        groups.setdefault((t.dtype, t.device), []).append(i)
    return groups


def average_gradients(grads: list[torch.Tensor] | tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    """Average `grads` over all processes, in place; returns them as a list.

    The tensors of each dtype are flattened into one buffer and all-reduced in one call (hundreds of small
    all-reduces would cost more than the data they move), then copied back in their own memory format.
    """
    grads = list(grads)
    world = current_world()
    if not world.enabled or not grads:
        return grads
    for indices in _groups(grads).values():
        flat = torch.cat([grads[i].reshape(-1) for i in indices])
        dist.all_reduce(flat)
        flat.div_(world.world_size)
        offset = 0
        for i in indices:
            n = grads[i].numel()
            grads[i].copy_(flat[offset : offset + n].view(grads[i].shape))
            offset += n
    return grads


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """The sum of `values` over all processes (a new tensor; `values` itself when there is one process)."""
    if not current_world().enabled:
        return values
    total = values.clone()
    dist.all_reduce(total)
    return total


def all_gather_objects(obj) -> list:
    """`obj` of every process (picklable), in rank order; [obj] on a single process."""
    if not current_world().enabled:
        return [obj]
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def any_process(flag: bool, device: torch.device) -> bool:
    """True when `flag` is True on at least one process (so that all of them can stop together)."""
    if not current_world().enabled:
        return flag
    t = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


@torch.no_grad()
def average_buffers(*modules: nn.Module) -> None:
    """Replace the floating-point buffers (batch-norm running statistics) of `modules` by their mean over the
    processes, so that every process evaluates and checkpoints the same network."""
    if current_world().enabled:
        average_gradients([b for m in modules for b in m.buffers() if b.is_floating_point()])


@torch.no_grad()
def broadcast_state(*modules: nn.Module, buffers_only: bool = False) -> None:
    """Copy rank 0's parameters and buffers (or its buffers alone) into every other process's modules (same
    structure everywhere)."""
    if not current_world().enabled:
        return
    for module in modules:
        tensors = ([] if buffers_only else list(module.parameters())) + list(module.buffers())
        for indices in _groups(tensors).values():
            flat = torch.cat([tensors[i].detach().reshape(-1) for i in indices])
            dist.broadcast(flat, src=0)
            offset = 0
            for i in indices:
                n = tensors[i].numel()
                tensors[i].copy_(flat[offset : offset + n].view(tensors[i].shape))
                offset += n


def distribute_search(method) -> None:
    """Make a search method (rarts.search.base.SearchMethod) one replica of a distributed search: its gradients
    are averaged over the processes through its `grad_sync` hook, and its weight sets and alpha start as rank 0's.
    Does nothing on a single process."""
    if not current_world().enabled:
        return
    method.grad_sync = average_gradients
    broadcast_state(*method.networks().values(), method.arch)


def barrier() -> None:
    if current_world().enabled:
        dist.barrier()


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """`model` in DistributedDataParallel when a process group is up, else `model` itself.

    Buffers (batch norm running statistics) are broadcast from rank 0 at every training forward, DDP's default;
    the batch statistics a training step normalises with stay per process.
    """
    if not current_world().enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def rank_seed(seed: int, epoch: int, rank: int) -> int:
    """A seed for the randomness that must differ between processes (drop-path masks), fixed by (seed, epoch,
    rank) so that a resumed epoch draws what it would have drawn."""
    return (seed * 1_000_003 + epoch * 1_009 + rank) % 2**63
