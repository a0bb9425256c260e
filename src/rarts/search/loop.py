"""The search loop: data halves, the method's steps, per-epoch evaluation and logging, checkpoints, the run folder.

    cfg = make_config("quick", {"epochs": "2"}, {"method": "rarts"})
    summary = run_search(cfg, "runs/search/rarts-seed0")             # resume=True continues a killed run

A run folder holds config.json and environment.json (from the start); metrics.jsonl and metrics.csv (one row
per epoch: losses, accuracies, learning rates, wall time, genotype); alphas.jsonl (softmax(alpha) of both cells
per epoch); checkpoint.pt (after every epoch, and every `checkpoint_every` steps); and, when the last epoch is
done, genotype.json, alpha.json, alpha.png (heatmap), cells/ (the two cell diagrams) and summary.json.

Accuracies are fractions in [0, 1]. Per epoch: train_loss/train_acc average w's steps on the training half
(train mode, augmented, as the steps saw them); val_loss/val_acc evaluate w on the whole validation half
(eval mode, no augmentation); RARTS adds y_loss/y_acc (y's steps on the validation half) and
y_val_loss/y_val_acc (y evaluated on the validation half, the data y trains on).

Metrics stay tensors on the device between host syncs, which happen every `log_every` steps, before a
checkpoint and at the end of an epoch. At each sync every metric of every step since the last one is checked:
a non-finite value stops the run (RunFailed) before anything is saved, and so do inf or nan weights or alpha,
checked before every checkpoint, so the last checkpoint stays good.

Under torchrun (WORLD_SIZE > 1; rarts.distributed) every process runs this loop on its shard of each global
batch (batch_size per process), the methods average their gradients over the processes, the epoch's metrics and
evaluation are summed over them, and rank 0 alone writes the run folder and shows progress.
"""

from __future__ import annotations

import json
import random
import resource
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from rarts.distributed import (
    World,
    all_reduce_sum,
    any_process,
    average_buffers,
    barrier,
    distribute_search,
    process_group,
)
from rarts.errors import RunFailed, UsageError
from rarts.fast import paired as paired_passes
from rarts.fast import use_fast_paths
from rarts.genotype import derive_genotype
from rarts.ops import PRIMITIVES
from rarts.search.base import METHODS, ArchPenalty, SearchMethod
from rarts.search.config import SearchConfig, check_resumable
from rarts.supernet import Architecture, SearchNetwork
from rarts.utils import (
    atomic_torch_save,
    atomic_write_text,
    check_out_folder,
    count_nonfinite,
    device_name,
    environment_info,
    is_out_of_memory,
    load_checkpoint_file,
    read_json,
    seed_everything,
    write_environment,
    write_json,
)

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT = "rarts-search-checkpoint"
CHECKPOINT_VERSION = 1
SUMMARY_NAME = "summary.json"
FORMAT_VERSION = 1  # of summary.json

StepHook = Callable[[int, int], None]  # (epoch, steps done in the epoch), called after every step


# --- data ------------------------------------------------------------------------------------------------------------


@dataclass
class SearchData:
    """The two halves of the training set as device loaders, and the validation half for evaluation."""

    train: Any  # DeviceLoader over the w half: shuffled, augmented
    val: Any  # DeviceLoader over the alpha (and y) half: shuffled, augmented
    val_eval: Any  # DeviceLoader over the alpha half: in order, no augmentation
    num_classes: int
    image_size: int


def resize_images(images: torch.Tensor, size: int, chunk: int = 5000) -> torch.Tensor:
    """uint8 images (N, C, H, W) resized to (N, C, size, size): area averaging down, bilinear up; uint8 out."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    mode = "area" if size < images.shape[-1] else "bilinear"
    out = torch.empty(images.shape[0], images.shape[1], size, size, dtype=torch.uint8)
    for start in range(0, images.shape[0], chunk):
        x = F.interpolate(images[start : start + chunk].float(), size=(size, size), mode=mode)
        out[start : start + chunk] = x.round_().clamp_(0, 255).to(torch.uint8)
    return out


def prepare_data(cfg: SearchConfig, device: torch.device, rank: int = 0, world_size: int = 1) -> SearchData:
    """Load the training set, split it into the two seeded halves and build the loaders (checks batch size).
    rank, world_size: the loaders yield this process's shard of every global batch (batch_size per process)."""
    from rarts.data import DATASETS, DeviceLoader, load_dataset, search_split

    if cfg.dataset == "imagenet":
        raise UsageError("search on imagenet is not supported: search on CIFAR and transfer, or use a small folder")
    data = load_dataset(cfg.dataset, cfg.data_dir, "train")
    if DATASETS[cfg.dataset].streamed:
        data = data.load_all(cfg.image_size or 32)
    size = cfg.image_size or data.image_size
    train_idx, val_idx = search_split(data.labels, cfg.train_portion, seed=cfg.seed, subset=cfg.subset)
    for name, idx in (("training", train_idx), ("validation", val_idx)):
        if cfg.batch_size * world_size > idx.numel():
            processes = f" x {world_size} processes" if world_size > 1 else ""
            raise UsageError(
                f"setting batch_size={cfg.batch_size}{processes} is larger than the {name} half ({idx.numel()} images)"
            )
    images = resize_images(data.images, size)
    pad = max(1, round(4 * size / 32))  # DARTS pads 32x32 images by 4 before the random crop
    common = {"mean": data.mean, "std": data.std, "channels_last": cfg.channels_last, "crop_padding": pad}
    common.update(rank=rank, world_size=world_size)

    def loader(idx: torch.Tensor, seed: int, train: bool):
        return DeviceLoader(images[idx], data.labels[idx], cfg.batch_size, device, train=train, seed=seed, **common)

    return SearchData(
        train=loader(train_idx, cfg.seed, True),
        val=loader(val_idx, cfg.seed + 1, True),
        val_eval=loader(val_idx, 0, False),
        num_classes=data.num_classes,
        image_size=size,
    )


# --- per-epoch bookkeeping --------------------------------------------------------------------------------------------


class EpochMeter:
    """Sums of the step metrics over an epoch (weighted by batch size), kept on the device between syncs.

    `check` syncs once: it looks at every metric of every step added since the last check and raises RunFailed
    naming the first step with a non-finite value.
    """

    def __init__(self, state: dict | None = None, device: torch.device | None = None):
        state = state or {}
        self.sums: dict[str, torch.Tensor] = {
            k: torch.tensor(v, device=device) for k, v in state.get("sums", {}).items()
        }
        self.count = int(state.get("count", 0))
        self.device = device if device is not None else torch.device("cpu")
        # Wall and process CPU time of the epoch so far (CPU time: all threads; on a shared machine it is the
        # steadier figure). Counting starts at construction, continuing from the saved part of the epoch.
        self._wall0 = time.perf_counter() - float(state.get("seconds", 0.0))
        self._cpu0 = time.process_time() - float(state.get("cpu_seconds", 0.0))
        self._pending: list[tuple[int, dict[str, torch.Tensor]]] = []

    def elapsed(self) -> tuple[float, float]:
        """(wall seconds, process CPU seconds) of the epoch so far."""
        return time.perf_counter() - self._wall0, time.process_time() - self._cpu0

    def add(self, step: int, metrics: dict[str, torch.Tensor], n: int) -> None:
        for key, value in metrics.items():
            term = value.detach().float() * n
            self.sums[key] = self.sums[key] + term if key in self.sums else term
        self.count += n
        self._pending.append((step, metrics))

    def check(self, where: Callable[[int], str]) -> None:
        if not self._pending:
            return
        keys = sorted(self._pending[0][1])
        values = torch.stack([torch.stack([m[k].detach().float() for k in keys]) for _, m in self._pending])
        finite = torch.isfinite(values)
        # Every process stops when one of them sees a non-finite value (one stopping alone would hang the rest).
        if any_process(not bool(finite.all()), values.device) and bool(finite.all()):
            raise RunFailed(f"non-finite metric on another process at {where(self._pending[0][0])}")
        if not bool(finite.all()):
            row, col = (~finite).nonzero()[0].tolist()
            step = self._pending[row][0]
            raise RunFailed(f"non-finite {keys[col]} ({values[row, col].item()}) at {where(step)}")
        self._pending.clear()

    def means(self) -> dict[str, float]:
        return {k: (v / max(self.count, 1)).item() for k, v in self.sums.items()}

    def totals(self) -> tuple[dict[str, float], int]:
        """(sums, count) over all processes of a distributed run (one all-reduce; every process must call it)."""
        keys = sorted(self.sums)
        local = torch.stack([self.sums[k].double() for k in keys] + [torch.tensor(float(self.count)).double()])
        total = all_reduce_sum(local.to(self.device)).tolist()
        return dict(zip(keys, total[:-1])), int(total[-1])

    def global_means(self) -> dict[str, float]:
        """The epoch's means over all processes (every process must call it)."""
        sums, count = self.totals()
        return {k: v / max(count, 1) for k, v in sums.items()}

    def state_dict(self) -> dict:
        """Sums and count over all processes (every process must call it), so rank 0's checkpoint holds them all."""
        seconds, cpu_seconds = self.elapsed()
        sums, count = self.totals()
        return {"sums": sums, "count": count, "seconds": seconds, "cpu_seconds": cpu_seconds}


@torch.no_grad()
def evaluate(net: torch.nn.Module, loader, mixing) -> tuple[float, float]:
    """(mean loss, accuracy) of `net` over the whole loader, BatchNorm in eval mode."""
    was_training = net.training
    net.eval()
    loss_sum = correct = None
    n = 0
    for x, target in loader:
        logits = net(x, mixing)
        loss = F.cross_entropy(logits, target, reduction="sum")
        hits = (logits.argmax(1) == target).sum()
        loss_sum = loss if loss_sum is None else loss_sum + loss
        correct = hits if correct is None else correct + hits
        n += target.numel()
    net.train(was_training)
    # Each process evaluated its shard of the loader: add up over the processes.
    loss_sum, correct, n = all_reduce_sum(
        torch.stack([loss_sum.double(), correct.double(), loss_sum.new_tensor(n).double()])
    ).tolist()
    return loss_sum / n, correct / n


def peak_memory_bytes(device: torch.device) -> tuple[int, str]:
    """CUDA: the most memory tensors held (max_memory_allocated); CPU: the process's peak resident set size."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "cuda max_memory_allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024), "process peak RSS"


def rng_state(device: torch.device) -> dict:
    """Every random generator's state, as tensors and numbers (loads with weights_only)."""
    keys, pos, has_gauss, cached = np.random.get_state()[1:]
    version, internal, gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": pos,
            "has_gauss": has_gauss,
            "cached": cached,
        },
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def load_checkpoint(path: str | Path) -> dict:
    """A search checkpoint, loaded with weights_only=True; anything else is a one-line UsageError."""
    return load_checkpoint_file(path, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, "search")


def resume_config(run_dir: str | Path, overrides: dict[str, Any], flags: dict[str, Any]) -> SearchConfig:
    """The config of the run in `run_dir`, with overrides and flags on top (for `--resume` without --preset)."""
    from rarts.config import build_config

    path = Path(run_dir) / CHECKPOINT_NAME
    if not path.is_file():
        raise UsageError(f"--resume: {run_dir} holds no {CHECKPOINT_NAME} to resume from")
    saved = load_checkpoint(path)["config"]
    return build_config(SearchConfig, saved, overrides, flags)


def _alpha_row(epoch: int, arch: Architecture) -> dict:
    w_normal, w_reduce = arch.weights()
    return {"epoch": epoch, "normal": w_normal.detach().cpu().tolist(), "reduce": w_reduce.detach().cpu().tolist()}


def _log_epoch(logger, alphas_path: Path, row: dict[str, Any], arch: Architecture) -> None:
    """The lines an epoch leaves in the run folder: its metrics row, and softmax(alpha) as the epoch left it."""
    logger.log(row)
    with open(alphas_path, "a", encoding="utf-8") as f:
        f.write(json.dumps(_alpha_row(row["epoch"], arch)) + "\n")


def _keep_alpha_rows(path: Path, before_epoch: int) -> None:
    """Rewrite alphas.jsonl with the rows of epochs before `before_epoch` (a resumed run repeats the others)."""
    rows = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a kill
                continue
            if isinstance(row, dict) and isinstance(row.get("epoch"), int) and row["epoch"] < before_epoch:
                rows.append(line + "\n")
    atomic_write_text(path, "".join(rows))


# --- the loop ---------------------------------------------------------------------------------------------------------


def run_search(
    cfg: SearchConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    quiet: bool = False,
    arch_penalty: Optional[ArchPenalty] = None,
    arch_penalty_weight: float = 0.0,
    on_step: Optional[StepHook] = None,
) -> dict[str, Any]:
    """Search with cfg in `run_dir` (or continue the run there with resume=True); returns summary.json's content.

    arch_penalty: a function of the Architecture added, times arch_penalty_weight, to every alpha objective.
    on_step: called as on_step(epoch, steps_done_in_epoch) after every step and its checkpoint, if any.
    Under torchrun (WORLD_SIZE > 1) it joins the process group for the run (rarts.distributed.process_group).
    """
    cfg.validate()
    with process_group(cfg.device) as (world, device):
        return _run_search(cfg, Path(run_dir), world, device, resume, quiet, arch_penalty, arch_penalty_weight, on_step)


def _run_search(cfg, run_dir: Path, world, device, resume, quiet, arch_penalty, arch_penalty_weight, on_step):
    ckpt_path = run_dir / CHECKPOINT_NAME
    ckpt = None
    quiet = quiet or not world.is_main
    say = (lambda msg: None) if quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    check_out_folder(run_dir, "search run", resume)
    if resume:
        if not ckpt_path.is_file():
            raise UsageError(f"--resume: {run_dir} holds no {CHECKPOINT_NAME} to resume from")
        ckpt = load_checkpoint(ckpt_path)
        check_resumable(ckpt["config"], cfg)
        if ckpt["epoch"] >= cfg.epochs and (run_dir / SUMMARY_NAME).is_file():
            say(f"{run_dir}: the search has finished already")
            return read_json(run_dir / SUMMARY_NAME)

    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)  # the same seed on every process: the replicas start identical
    data = prepare_data(cfg, device, world.rank, world.world_size)
    net = SearchNetwork(cfg.channels, data.num_classes, cfg.layers).to(device)
    if cfg.channels_last:
        net = net.to(memory_format=torch.channels_last)
    use_fast_paths(net)
    arch = Architecture().to(device)
    latency = _latency_penalty(cfg, net, data.image_size)
    if latency is not None and arch_penalty is None:
        arch_penalty, arch_penalty_weight = latency, cfg.latency_weight
    method = METHODS[cfg.method](net, arch, cfg.method_settings(), arch_penalty, arch_penalty_weight)
    distribute_search(method)
    with paired_passes.attach(method, device, cfg.paired_passes) as paired:
        state = _LoopState(cfg, method, data, device, ckpt_path, latency)
        state.world = world
        if ckpt is not None:
            state.restore(ckpt)
            if state.epoch >= cfg.epochs:  # killed while writing the run's last files: only those are left to do
                say(f"{run_dir}: the {cfg.epochs} epochs of {cfg.method} are done; writing the run's summary")
            else:
                say(f"{run_dir}: resuming {cfg.method} at epoch {state.epoch + 1}/{cfg.epochs}, step {state.step}")

        from rarts.metrics_log import MetricsLogger

        alphas_path = run_dir / "alphas.jsonl"
        logger = None
        if world.is_main:  # rank 0 alone writes the run folder
            run_dir.mkdir(parents=True, exist_ok=True)
            write_json(run_dir / "config.json", asdict(cfg))
            env = environment_info(device)
            env["resumed_at"] = {"epoch": state.epoch, "step": state.step} if ckpt is not None else None
            env["world_size"] = world.world_size
            # torch threads of the two workers that run the method's independent passes at once; None: one at a time
            env["paired_passes_threads"] = list(paired.threads) if paired is not None else None
            write_environment(run_dir / "environment.json", env, resumed=ckpt is not None)
            logger = MetricsLogger(run_dir, resume_step=state.epoch if resume else None, tensorboard=cfg.tensorboard)
            _keep_alpha_rows(alphas_path, state.epoch if resume else 0)
            last = state.epoch - 1
            if ckpt is not None and state.step == 0 and last >= 0 and last not in logger.kept_steps:
                # Killed after the epoch's checkpoint but before its log lines: the checkpoint holds the row, and
                # alpha is as the epoch left it.
                _log_epoch(logger, alphas_path, state.last_row, method.arch)
        try:
            state.run(logger, alphas_path, say, on_step, quiet)
        finally:
            if logger is not None:
                logger.close()
        return _finish(cfg, run_dir, method, state, device, say)


def _latency_penalty(cfg: SearchConfig, net: SearchNetwork, image_size: int):
    """The expected-latency penalty of cfg.latency_table for `net`, or None; a table not covering it is refused."""
    if not cfg.latency_table:
        return None
    from rarts.latency import LatencyPenalty, LatencyTable

    return LatencyPenalty(LatencyTable.load(cfg.latency_table), net, image_size)


class _LoopState:
    """Where the loop stands (epoch, step, time, memory), and the epoch and checkpoint routines that use it."""

    def __init__(
        self, cfg: SearchConfig, method: SearchMethod, data: SearchData, device, ckpt_path: Path, latency=None
    ):
        self.cfg, self.method, self.data, self.device = cfg, method, data, device
        self.world = World()  # this process's place in a distributed run (run_search sets it)
        self.latency = latency  # a rarts.latency.LatencyPenalty, logged every epoch, or None
        self.ckpt_path = ckpt_path
        self.steps_per_epoch = len(data.train)
        self.epoch = self.step = self.global_step = 0
        self.search_seconds = self.search_cpu_seconds = 0.0
        self.peak = 0
        self.last_row: dict[str, Any] = {}
        self.meter_state: dict | None = None  # the saved part of a resumed epoch
        self.saved_at: tuple[int, int] | None = None  # (epoch, step) of the last checkpoint written

    def restore(self, ckpt: dict) -> None:
        """Continue from a checkpoint: weights, alpha, optimisers, schedulers, data order, generators, position."""
        self.method.load_state_dict(ckpt["method"])
        self.data.train.load_state_dict(ckpt["loaders"]["train"])
        self.data.val.load_state_dict(ckpt["loaders"]["val"])
        set_rng_state(ckpt["rng"], self.device)
        self.epoch, self.step, self.global_step = ckpt["epoch"], ckpt["step"], ckpt["global_step"]
        self.search_seconds, self.search_cpu_seconds = ckpt["search_seconds"], ckpt["search_cpu_seconds"]
        self.peak, self.last_row = ckpt["peak_memory_bytes"], ckpt["last_row"]
        self.meter_state = ckpt["meter"]  # sums over all processes: rank 0 carries them, the others start at 0
        if not self.world.is_main:
            self.meter_state = {**self.meter_state, "sums": dict.fromkeys(self.meter_state["sums"], 0.0), "count": 0}
        self.saved_at = (self.epoch, self.step)

    def where(self, step: int) -> str:
        place = f"epoch {self.epoch + 1}/{self.cfg.epochs}, step {step + 1}/{self.steps_per_epoch} of {self.cfg.method}"
        if self.saved_at is None:
            return f"{place}; no checkpoint had been written yet"
        e, s = self.saved_at
        return f"{place}; the last good checkpoint {self.ckpt_path} (epoch {e + 1}, step {s}) is intact"

    def check_weights(self) -> None:
        """Stop before a checkpoint would save inf or nan weights or alpha (a step's update can make them so while
        the loss logged for it, computed before the update, is finite); every process must call it."""
        bad = count_nonfinite(*self.method.networks().values(), self.method.arch)
        if any_process(bool(bad), self.device):
            raise RunFailed(f"weights or alpha became inf or nan at {self.where(self.step - 1)}")

    def save(self, meter: EpochMeter) -> None:
        """Write the checkpoint (rank 0; every process must call it: the meter's sums are added up over them)."""
        average_buffers(*self.method.networks().values())  # the same batch-norm statistics in every process
        self.peak = max(self.peak, peak_memory_bytes(self.device)[0])
        meter_state = meter.state_dict()
        if not self.world.is_main:
            barrier()  # until rank 0 has written it: from here on every process reads the new checkpoint
            self.saved_at = (self.epoch, self.step)
            return
        atomic_torch_save(
            {
                "format": CHECKPOINT_FORMAT,
                "version": CHECKPOINT_VERSION,
                "config": asdict(self.cfg),
                "method": self.method.state_dict(),
                "epoch": self.epoch,
                "step": self.step,
                "global_step": self.global_step,
                "loaders": {"train": self.data.train.state_dict(), "val": self.data.val.state_dict()},
                "rng": rng_state(self.device),
                "meter": meter_state,
                "search_seconds": self.search_seconds,
                "search_cpu_seconds": self.search_cpu_seconds,
                "peak_memory_bytes": self.peak,
                "last_row": self.last_row,
            },
            self.ckpt_path,
        )
        barrier()
        self.saved_at = (self.epoch, self.step)

    def run(self, logger, alphas_path: Path, say, on_step: Optional[StepHook], quiet: bool) -> None:
        from tqdm import tqdm

        cfg, method, data = self.cfg, self.method, self.data
        total = cfg.epochs * self.steps_per_epoch
        bar = tqdm(
            total=total,
            initial=self.global_step,
            disable=quiet or not cfg.progress or not sys.stderr.isatty() or not self.world.is_main,
            desc=cfg.method,
            unit="step",
            dynamic_ncols=True,
        )
        out = bar.write if not bar.disable else say
        try:
            while self.epoch < cfg.epochs:
                if self.step == 0:
                    method.start_epoch(self.epoch)
                    meter = EpochMeter(device=self.device)
                else:
                    meter = EpochMeter(self.meter_state, self.device)
                while self.step < self.steps_per_epoch:
                    train_batch, val_batch = data.train.next_batch(), data.val.next_batch()
                    metrics = method.step(train_batch, val_batch)
                    meter.add(self.step, metrics, train_batch[1].numel())
                    self.step += 1
                    self.global_step += 1
                    bar.update(1)
                    if self.step % cfg.log_every == 0:
                        meter.check(self.where)
                        bar.set_postfix(epoch=self.epoch + 1, **{k: f"{v:.3f}" for k, v in _short(meter.means())})
                    if cfg.checkpoint_every and self.global_step % cfg.checkpoint_every == 0:
                        if self.step < self.steps_per_epoch:
                            meter.check(self.where)
                            self.check_weights()
                            self.save(meter)
                    if on_step is not None:
                        on_step(self.epoch, self.step)
                meter.check(self.where)
                row = self.end_epoch(meter)
                if self.world.is_main:
                    _log_epoch(logger, alphas_path, row, method.arch)
                    out(_epoch_line(row, cfg.epochs))
        except (RuntimeError, MemoryError) as e:
            if not is_out_of_memory(e):
                raise
            where = "GPU" if self.device.type == "cuda" else "CPU"
            raise RunFailed(
                f"out of {where} memory at {self.where(self.step)} (batch_size={cfg.batch_size}, channels="
                f"{cfg.channels}, layers={cfg.layers}): try a smaller batch_size or fewer channels, e.g. batch_size="
                f"{max(1, cfg.batch_size // 2)}"
                + (", or paired_passes=false (one pass's graph at a time)" if method.executor.at_once else "")
            ) from e
        finally:
            bar.close()

    def end_epoch(self, meter: EpochMeter) -> dict[str, Any]:
        """Evaluate, derive the genotype, move the schedules on, checkpoint; returns the epoch's metrics row."""
        self.check_weights()
        method = self.method
        row: dict[str, Any] = {"epoch": self.epoch, **method.learning_rates(), **meter.global_means()}
        mixing = method.mixing(detach=True)
        # Each process's batch-norm running statistics saw its shards only: evaluate with their mean.
        average_buffers(*method.networks().values())
        for key, net in method.networks().items():
            prefix = "" if key == "w" else f"{key}_"
            row[f"{prefix}val_loss"], row[f"{prefix}val_acc"] = evaluate(net, self.data.val_eval, mixing)
        genotype = derive_genotype(method.arch.alpha_normal, method.arch.alpha_reduce)
        row["genotype"] = genotype.to_darts_string()
        if self.latency is not None:  # the expectation runs over all 14 edges, the genotype has 8 ops per cell
            row["latency_expected_ms"] = self.latency.expected_latency_ms(method.arch)
            row["latency_genotype_ms"] = self.latency.genotype_latency(genotype)
        method.end_epoch()
        row["seconds"], row["cpu_seconds"] = meter.elapsed()
        self.search_seconds += row["seconds"]
        self.search_cpu_seconds += row["cpu_seconds"]
        row["search_seconds"] = self.search_seconds
        self.epoch += 1
        self.step = 0
        self.last_row = row
        self.save(EpochMeter(device=self.device))
        return row


def _short(means: dict[str, float]) -> list[tuple[str, float]]:
    keys = ("train_loss", "train_acc", "arch_loss", "y_loss")
    return [(k.replace("_", ""), means[k]) for k in keys if k in means]


def _epoch_line(row: dict[str, Any], epochs: int) -> str:
    parts = [f"epoch {row['epoch'] + 1}/{epochs}"]
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "y_val_acc"):
        if key in row:
            parts.append(f"{key} {row[key]:.4f}")
    if "latency_genotype_ms" in row:
        parts.append(f"genotype latency {row['latency_genotype_ms']:.3f} ms")
    parts.append(f"{row['seconds']:.1f} s")
    return "  ".join(parts)


def _draw(cfg: SearchConfig, run_dir: Path, arch: Architecture, genotype) -> tuple[list[str], list[str]]:
    """The alpha heatmap and the cell diagrams; returns (files written, errors). A failed figure is reported,
    not raised: a finished search is not lost over a plot."""
    plots, errors = [], []
    try:
        from rarts.search.plots import plot_alpha_heatmap

        plot_alpha_heatmap(arch.alpha_normal, arch.alpha_reduce, run_dir / "alpha.png")
        plots.append("alpha.png")
    except Exception as e:
        errors.append(f"alpha heatmap: {type(e).__name__}: {e}")
    try:
        from rarts.viz import plot_genotype

        paths, _ = plot_genotype(genotype, run_dir / "cells")
        plots.extend(str(Path(p).relative_to(run_dir)) for p in paths)
    except Exception as e:
        errors.append(f"cell diagrams: {type(e).__name__}: {e}")
    return plots, errors


def _finish(cfg: SearchConfig, run_dir: Path, method: SearchMethod, state: _LoopState, device, say) -> dict[str, Any]:
    """The end of a search: genotype.json, alpha.json, the plots and summary.json. Rank 0 alone writes them and
    returns the summary; the other processes of a distributed run return an empty dict."""
    if not state.world.is_main:
        return {}
    arch = method.arch
    genotype = derive_genotype(arch.alpha_normal, arch.alpha_reduce)
    write_json(run_dir / "genotype.json", genotype.to_dict())
    w_normal, w_reduce = arch.weights()
    write_json(
        run_dir / "alpha.json",
        {
            "primitives": list(PRIMITIVES),
            "alpha_normal": arch.alpha_normal.detach().cpu().tolist(),
            "alpha_reduce": arch.alpha_reduce.detach().cpu().tolist(),
            "softmax_normal": w_normal.detach().cpu().tolist(),
            "softmax_reduce": w_reduce.detach().cpu().tolist(),
        },
    )
    plots, plot_errors = _draw(cfg, run_dir, arch, genotype) if cfg.plots else ([], [])
    for err in plot_errors:
        say(f"warning: could not draw the {err}")

    state.peak = max(state.peak, peak_memory_bytes(device)[0])
    row = state.last_row
    on_gpu = device.type == "cuda"
    summary = {
        "format_version": FORMAT_VERSION,
        "method": cfg.method,
        "seed": cfg.seed,
        "dataset": cfg.dataset,
        "genotype": genotype.to_dict(),
        "genotype_string": genotype.to_darts_string(),
        "epochs": cfg.epochs,
        "steps": state.global_step,
        "search_seconds": state.search_seconds,
        "seconds_per_step": state.search_seconds / max(state.global_step, 1),
        "search_cpu_seconds": state.search_cpu_seconds,
        "threads": torch.get_num_threads(),
        "search_cost": state.search_seconds * state.world.world_size / (86400.0 if on_gpu else 3600.0),
        "world_size": state.world.world_size,  # processes (GPUs); search_cost counts all of them
        "search_cost_unit": "GPU-days" if on_gpu else "CPU-hours",
        "device_type": device.type,
        "device_name": device_name(device),
        "peak_memory_bytes": state.peak,
        "peak_memory_kind": peak_memory_bytes(device)[1],
        "final_train_loss": row.get("train_loss"),
        "final_train_acc": row.get("train_acc"),
        "final_val_loss": row.get("val_loss"),
        "final_val_acc": row.get("val_acc"),
    }
    for key in ("y_val_loss", "y_val_acc", "latency_expected_ms", "latency_genotype_ms"):
        if key in row:
            summary[f"final_{key}"] = row[key]
    summary["plots"] = plots
    if plot_errors:
        summary["plot_errors"] = plot_errors
    write_json(run_dir / SUMMARY_NAME, summary)
    return summary
