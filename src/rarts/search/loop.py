"""The search loop: the method's steps over the two data halves, the epoch ends and the checkpoints of a run.

    cfg = make_config("quick", {"epochs": "2"}, {"method": "rarts"})
    summary = run_search(cfg, "runs/search/rarts-seed0")             # resume=True continues a killed run

A run folder holds config.json and environment.json (from the start); metrics.jsonl and metrics.csv (one row
per epoch: losses, accuracies, learning rates, wall time, genotype); alphas.jsonl (softmax(alpha) of both cells
per epoch); checkpoint.pt (after every epoch, and every `checkpoint_every` steps); and, when the last epoch is
done, genotype.json, alpha.json, alpha.png (heatmap), cells/ (the two cell diagrams) and summary.json.

Accuracies are percents (the methods' step metrics are fractions of the batch, scaled when a row is made). Per
epoch: train_loss/train_acc average w's steps on the training half
(train mode, augmented, as the steps saw them); val_loss/val_acc evaluate w on the whole validation half
(eval mode, no augmentation); RARTS adds y_loss/y_acc (y's steps on the validation half) and
y_val_loss/y_val_acc (y evaluated on the validation half, the data y trains on).

Metrics stay tensors on the device between host syncs, which happen every `log_every` steps, before a
checkpoint and at the end of an epoch. At each sync every metric of every step since the last one is checked:
a non-finite value stops the run (RunFailed) before anything is saved, and so do inf or nan weights or alpha
(rarts.runs.finite: with the batch-norm statistics and the optimiser states), checked before every checkpoint, and a
non-finite validation loss at the end of an epoch, so the last checkpoint stays good. SIGTERM (rarts.runs.run)
stops the run after its step, checkpointed.

Under torchrun (WORLD_SIZE > 1; rarts.distributed) every process runs this loop on its shard of each global
batch (batch_size per process), the methods average their gradients over the processes, the epoch's metrics and
evaluation are summed over them, and rank 0 alone writes the run folder and shows progress.

The run folder, the checkpoint file, the generator states, the resume check and the failure messages are the
shared ones of rarts.runs; this module supplies the search's state, its step and its epoch end. Its data halves
are rarts.search.data's, an epoch's figures rarts.search.epoch's, and what the run folder gets rarts.search.records'.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from rarts.config import config_to_dict
from rarts.distributed import World, any_process, average_buffers, barrier, distribute_search
from rarts.fast import paired as paired_passes
from rarts.fast import use_fast_paths
from rarts.genotype import derive_genotype
from rarts.runs import (
    CHECKPOINT_NAME,
    SEARCH,
    Terminated,
    capture_rng,
    check_finite,
    count_nonfinite,
    kept_note,
    memory_advice,
    restore_rng,
    run_task,
    save_checkpoint,
    stop_requested,
    write_records,
)
from rarts.search.base import METHODS, ArchPenalty, SearchMethod
from rarts.search.config import SearchConfig
from rarts.search.data import SearchData, prepare_data
from rarts.search.epoch import EpochMeter, evaluate, percent
from rarts.search.records import epoch_line, finish_search, keep_alpha_rows, log_epoch, peak_memory_bytes, short_means
from rarts.supernet import Architecture, SearchNetwork
from rarts.utils import environment_info, seed_everything

StepHook = Callable[[int, int], None]  # (epoch, steps done in the epoch), called after every step


def run_search(
    cfg: SearchConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    quiet: bool = False,
    arch_penalty: Optional[ArchPenalty] = None,
    arch_penalty_weight: float = 0.0,
    on_step: Optional[StepHook] = None,
    checkpoint: Optional[dict[str, Any]] = None,
) -> dict[str, Any]:
    """Search with cfg in `run_dir` (or continue the run there with resume=True); returns summary.json's content.

    arch_penalty: a function of the Architecture added, times arch_penalty_weight, to every alpha objective.
    on_step: called as on_step(epoch, steps_done_in_epoch) after every step and its checkpoint, if any.
    checkpoint: run_dir's checkpoint, when the caller has read it already (rarts.runs.command_config).
    Under torchrun (WORLD_SIZE > 1) it joins the process group for the run (rarts.distributed.process_group).
    """

    def body(world: World, device: torch.device, ckpt: Optional[dict[str, Any]], say) -> dict[str, Any]:
        penalty = (arch_penalty, arch_penalty_weight)
        return _run_search(cfg, Path(run_dir), world, device, ckpt, say, quiet, *penalty, on_step)

    return run_task(SEARCH, cfg, Path(run_dir), resume, body, say=_say, quiet=quiet, checkpoint=checkpoint)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _run_search(cfg, run_dir: Path, world, device, ckpt, say, quiet, arch_penalty, arch_penalty_weight, on_step):
    quiet = quiet or not world.is_main
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
    method = METHODS[cfg.method](net, arch, cfg.method_settings, arch_penalty, arch_penalty_weight)
    distribute_search(method)
    with paired_passes.attach(method, device, cfg.paired_passes) as paired:
        state = _LoopState(cfg, method, data, device, run_dir / CHECKPOINT_NAME, latency)
        state.world = world
        if ckpt is not None:
            state.restore(ckpt)
            if state.epoch >= cfg.epochs:  # killed while writing the run's last files: only those are left to do
                say(f"{run_dir}: the {cfg.epochs} epochs of {cfg.method} are done; writing the run's summary")
            else:
                say(f"{run_dir}: resuming {cfg.method} at epoch {state.epoch + 1}/{cfg.epochs}, step {state.step}")

        from rarts.metrics_log import MetricsLogger

        alphas_path = run_dir / "alphas.jsonl"
        resumed = ckpt is not None
        logger = None
        if world.is_main:  # rank 0 alone writes the run folder
            env = environment_info(device)
            env["resumed_at"] = {"epoch": state.epoch, "step": state.step} if resumed else None
            env["world_size"] = world.world_size
            # torch threads of the two workers that run the method's independent passes at once; None: one at a time
            env["paired_passes_threads"] = list(paired.threads) if paired is not None else None
            write_records(run_dir, config_to_dict(cfg), env, resumed)
            logger = MetricsLogger(run_dir, resume_step=state.epoch if resumed else None, tensorboard=cfg.tensorboard)
            keep_alpha_rows(alphas_path, state.epoch if resumed else 0)
            last = state.epoch - 1
            if resumed and state.step == 0 and last >= 0 and last not in logger.kept_steps:
                # Killed after the epoch's checkpoint but before its log lines: the checkpoint holds the row, and
                # alpha is as the epoch left it.
                log_epoch(logger, alphas_path, state.last_row, method.arch)
        try:
            state.run(logger, alphas_path, say, on_step, quiet)
        finally:
            if logger is not None:
                logger.close()
        return finish_search(cfg, run_dir, method, state, device, say)


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
        restore_rng(ckpt["rng"], self.device)
        self.epoch, self.step, self.global_step = ckpt["epoch"], ckpt["step"], ckpt["global_step"]
        self.search_seconds, self.search_cpu_seconds = ckpt["search_seconds"], ckpt["search_cpu_seconds"]
        self.peak, self.last_row = ckpt["peak_memory_bytes"], ckpt["last_row"]
        self.meter_state = ckpt["meter"]  # sums over all processes: rank 0 carries them, the others start at 0
        if not self.world.is_main:
            self.meter_state = {**self.meter_state, "sums": dict.fromkeys(self.meter_state["sums"], 0.0), "count": 0}
        self.saved_at = (self.epoch, self.step)

    def place(self, step: int) -> str:
        return f"epoch {self.epoch + 1}/{self.cfg.epochs}, step {step + 1}/{self.steps_per_epoch} of {self.cfg.method}"

    def kept(self) -> str:
        if self.saved_at is None:
            return kept_note(None)
        e, s = self.saved_at
        return kept_note(f"the last good checkpoint {self.ckpt_path} (epoch {e + 1}, step {s})")

    def where(self, step: int) -> str:
        return f"{self.place(step)}; {self.kept()}"

    def check_weights(self) -> None:
        """Stop before a checkpoint would save inf or nan weights or alpha (a step's update can make them so while
        the loss logged for it, computed before the update, is finite); every process must call it."""
        optimizers = [opt.state_dict() for opt in self.method.optimizers.values()]
        bad = count_nonfinite(*self.method.networks().values(), self.method.arch, states=optimizers)
        check_finite(any_process(bool(bad), self.device), f"at {self.where(self.step - 1)}", weights="weights or alpha")

    def save(self, meter: EpochMeter) -> None:
        """Write the checkpoint (rank 0; every process must call it: the meter's sums are added up over them)."""
        average_buffers(*self.method.networks().values())  # the same batch-norm statistics in every process
        self.peak = max(self.peak, peak_memory_bytes(self.device)[0])
        meter_state = meter.state_dict()
        if not self.world.is_main:
            barrier()  # until rank 0 has written it: from here on every process reads the new checkpoint
            self.saved_at = (self.epoch, self.step)
            return
        save_checkpoint(
            self.ckpt_path,
            "search",
            {
                "config": config_to_dict(self.cfg),
                "method": self.method.state_dict(),
                "epoch": self.epoch,
                "step": self.step,
                "global_step": self.global_step,
                "loaders": {"train": self.data.train.state_dict(), "val": self.data.val.state_dict()},
                "rng": capture_rng(self.device),
                "meter": meter_state,
                "search_seconds": self.search_seconds,
                "search_cpu_seconds": self.search_cpu_seconds,
                "peak_memory_bytes": self.peak,
                "last_row": self.last_row,
            },
        )
        barrier()
        self.saved_at = (self.epoch, self.step)

    def run(self, logger, alphas_path: Path, say, on_step: Optional[StepHook], quiet: bool) -> None:
        from tqdm import tqdm

        cfg, method = self.cfg, self.method
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
        also = ", or paired_passes=false (one pass's graph at a time)" if method.executor.at_once else ""
        try:
            with memory_advice(self.device, cfg, lambda: f"at {self.place(self.step)}", self.kept, also):
                self._epochs(logger, alphas_path, on_step, bar, out)
        finally:
            bar.close()

    def _epochs(self, logger, alphas_path: Path, on_step: Optional[StepHook], bar, out) -> None:
        cfg, method, data = self.cfg, self.method, self.data
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
                    shown = short_means(percent(meter.means()))
                    bar.set_postfix(epoch=self.epoch + 1, **{k: f"{v:.3f}" for k, v in shown})
                if cfg.checkpoint_every and self.global_step % cfg.checkpoint_every == 0:
                    if self.step < self.steps_per_epoch:
                        meter.check(self.where)
                        self.check_weights()
                        self.save(meter)
                if on_step is not None:
                    on_step(self.epoch, self.step)
                if self.step < self.steps_per_epoch and stop_requested():
                    self.stop(meter)
            meter.check(self.where)
            row = self.end_epoch(meter)
            if self.world.is_main:
                log_epoch(logger, alphas_path, row, method.arch)
                out(epoch_line(row, cfg.epochs))
            if self.epoch < cfg.epochs and stop_requested():
                raise Terminated(f"after epoch {self.epoch}/{cfg.epochs} of {cfg.method}")

    def stop(self, meter: EpochMeter) -> None:
        """SIGTERM within an epoch: checkpoint this step unless its checkpoint is written already, then stop."""
        if self.saved_at != (self.epoch, self.step):
            meter.check(self.where)
            self.check_weights()
            self.save(meter)
        raise Terminated(f"at {self.place(self.step - 1)}")

    def end_epoch(self, meter: EpochMeter) -> dict[str, Any]:
        """Evaluate, derive the genotype, move the schedules on, checkpoint; returns the epoch's metrics row."""
        self.check_weights()
        method = self.method
        row: dict[str, Any] = {"epoch": self.epoch, **method.learning_rates(), **percent(meter.global_means())}
        mixing = method.mixing(detach=True)
        # Each process's batch-norm running statistics saw its shards only: evaluate with their mean.
        average_buffers(*method.networks().values())
        for key, net in method.networks().items():
            prefix = "" if key == "w" else f"{key}_"
            row[f"{prefix}val_loss"], accuracy = evaluate(net, self.data.val_eval, mixing)
            row[f"{prefix}val_acc"] = 100.0 * accuracy
            check_finite(0, f"at {self.where(self.step - 1)}", loss=row[f"{prefix}val_loss"], what=f"{prefix}val_loss")
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
