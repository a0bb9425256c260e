"""A training run: the network, optimiser and data of one run folder, epoch by epoch, and its checkpoints.

A run folder holds config.json, environment.json, genotype.json, metrics.jsonl / metrics.csv (one row per
epoch), checkpoint.pt (after every epoch, and every `checkpoint_every` steps within one) and, when the last epoch
is done, result.json. The checkpoint (rarts.runs.checkpoint) holds the model, optimiser, scheduler, scaler, RNG
and data-loader states, epoch, genotype and config as plain data; within an epoch also the step and the epoch's
running sums. Resuming from it on the CPU with the same seed ends with the same weights as a run that never
stopped. The run folder, the resume check and the failure messages are the shared ones of rarts.runs.

Under torchrun (WORLD_SIZE > 1, see rarts.distributed) the network is wrapped in DistributedDataParallel,
each process trains on its shard of every global batch (batch_size per process), the epoch's training and test
figures are summed over the processes, and only rank 0 writes the run folder; every rank reads the checkpoint
on resume.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from rarts import runs
from rarts.config import config_to_dict
from rarts.errors import UsageError
from rarts.fast import use_fast_paths
from rarts.genotype import Genotype, load_genotype
from rarts.network import count_params
from rarts.train.config import TrainConfig
from rarts.train.data import make_data
from rarts.train.epoch import train_one_epoch
from rarts.train.evaluation import evaluate, load_model_state, network_spec
from rarts.train.recipe import (
    drop_path_at,
    make_criterion,
    make_model,
    make_optimizer,
    make_scheduler,
    network_kind,
    precision_name,
    resolve_channels_last,
    resolve_precision,
    unwrap,
    wrap_model,
)
from rarts.utils import device_name, environment_info, seed_everything, write_json


def train(
    cfg: TrainConfig,
    run_dir: str | Path,
    resume: bool = False,
    stop_after: int | None = None,
    sets: tuple[Any, Any] | None = None,
    log: Callable[[str], None] | None = None,
    on_step: Callable[[int, int], None] | None = None,
    checkpoint: Optional[dict[str, Any]] = None,
    quiet: bool = False,
) -> dict[str, Any] | None:
    """Train cfg.genotype from scratch in `run_dir` (or continue it with resume=True).

    stop_after: end the session after this many epochs in total (the run stays resumable), e.g. for time-limited
        job slots. sets: (train, test) ImageSets instead of loading cfg.dataset. on_step(epoch, step): called
        after every training step (tests stop a run in the middle of an epoch with it). checkpoint: run_dir's
        checkpoint, when the caller has read it already (rarts.runs.command_config). quiet: no progress bar and
        no lines (`log` is not called).
    Returns the result dict (also written to result.json), or None when stopped before the last epoch.
    Under torchrun (WORLD_SIZE > 1) it joins the process group for the run (rarts.distributed.process_group).
    """
    run_dir = Path(run_dir)

    def same_cells(ckpt: dict[str, Any]) -> None:
        """The cells come from the checkpoint: the genotype given at the start (a search run's folder, say) may
        have moved since. Another genotype given now must name the same cells."""
        path = run_dir / runs.CHECKPOINT_NAME
        genotype = Genotype.from_dict(ckpt["genotype"], source=str(path))
        given = genotype if cfg.genotype == ckpt["config"].get("genotype") else load_genotype(cfg.genotype)
        if given != genotype:
            raise UsageError(
                f"{path} is a checkpoint of another architecture: its genotype differs from {cfg.genotype!r}"
            )

    def body(world, device: torch.device, ckpt: Optional[dict[str, Any]], say) -> dict[str, Any] | None:
        session = _Training(cfg, run_dir, world, device, ckpt, say, sets, quiet)
        return session.run(stop_after, on_step)

    from tqdm import tqdm

    say = log or tqdm.write
    return runs.run_task(
        runs.TRAIN, cfg, run_dir, resume, body, say=say, quiet=quiet, checkpoint=checkpoint, check=same_cells
    )


def _checkpoint_name(epoch: int, step: int, steps_per_epoch: int) -> str:
    """The checkpoint written after `epoch` epochs and `step` steps of the next one, as the messages name it."""
    if step:
        return f"the checkpoint at step {step}/{steps_per_epoch} of epoch {epoch + 1}"
    return f"the checkpoint of epoch {epoch}"


class _Training:
    """One session of a training run: built (and restored from a checkpoint) at construction, then `run`."""

    def __init__(self, cfg: TrainConfig, run_dir: Path, world, device: torch.device, ckpt, say, sets, quiet=False):
        from rarts.flops import count_mult_adds

        self.run_dir, self.world, self.device, self.say = run_dir, world, device, say
        self.quiet = quiet  # no progress bar (the config keeps its `progress`, as a resumed run may show one)
        self.main = world.is_main
        self.ckpt_path = run_dir / runs.CHECKPOINT_NAME
        if ckpt is not None:
            genotype = Genotype.from_dict(ckpt["genotype"], source=str(self.ckpt_path))
            saved_spec = ckpt["config"].get("genotype")
            if saved_spec is not None:
                cfg = dataclasses.replace(cfg, genotype=saved_spec)  # keep the run's record as it was
        else:
            genotype = load_genotype(cfg.genotype)
        self.cfg, self.genotype = cfg, genotype

        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.amp_dtype = resolve_precision(cfg.amp, device)
        self.channels_last = resolve_channels_last(cfg.channels_last, device)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True

        seed_everything(cfg.seed)
        self.data = make_data(cfg, device, self.channels_last, sets, world.rank, world.world_size)
        self.kind = network_kind(self.data.input_size)
        net = make_model(
            genotype, self.kind, cfg.channels, cfg.layers, cfg.builds_auxiliary, self.data.num_classes, device
        )
        self.params = count_params(net)
        self.mult_adds = count_mult_adds(net, (3, self.data.input_size, self.data.input_size))
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        use_fast_paths(net)
        self.net = net
        self.model = wrap_model(net, device)
        self.optimizer = make_optimizer(cfg, net)
        self.scheduler = make_scheduler(cfg, self.optimizer)
        self.scaler = torch.amp.GradScaler(device.type) if self.amp_dtype == torch.float16 else None
        self.criterion = make_criterion(cfg)
        self.steps_per_epoch = len(self.data.train)

        self.start_epoch, self.start_step, self.partial, self.train_time, self.last_test = 0, 0, None, 0.0, None
        self.kept: str | None = None  # what a failure leaves behind, as its message says
        self.resumed = ckpt is not None
        if ckpt is not None:
            self.restore(ckpt)

    def restore(self, ckpt: dict[str, Any]) -> None:
        if ckpt["network"]["num_classes"] != self.data.num_classes:
            raise UsageError(
                f"{self.ckpt_path}: trained for {ckpt['network']['num_classes']} classes, the data have "
                f"{self.data.num_classes}"
            )
        load_model_state(self.net, ckpt["model"], str(self.ckpt_path))
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if self.scaler is not None and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.data.train.load_state_dict(ckpt["loader"])  # refuses another number of processes
        # Each process draws its own drop-path masks, so a checkpoint of several keeps each one's generators.
        rng_ranks = ckpt.get("rng_ranks")
        runs.restore_rng(rng_ranks[self.world.rank] if rng_ranks else ckpt["rng"], self.device)
        self.start_epoch, self.train_time, self.last_test = ckpt["epoch"], ckpt["train_time_s"], ckpt.get("last_test")
        self.start_step, self.partial = ckpt.get("step", 0), ckpt.get("partial")
        self.kept = _checkpoint_name(self.start_epoch, self.start_step, self.steps_per_epoch)

    # --- checkpoints and failures -----------------------------------------------------------------------------

    def write_checkpoint(self, progress: dict[str, Any]) -> None:
        """Save `progress` (rank 0 writes; every process takes part) and wait until the file is in place.
        progress: epoch (epochs done), train_time_s, last_test and, within an epoch, step (its steps done) and
        partial (their summed loss, correct, seen, and time_s)."""
        from rarts.distributed import all_gather_objects, barrier

        # Every process's generator states, in rank order (a run of several processes).
        rng_ranks = all_gather_objects(runs.capture_rng(self.device)) if self.world.enabled else None
        if self.main:
            cfg = self.cfg
            state = {
                **progress,
                "model": unwrap(self.net).state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                # rank 0's, the one this process just gathered
                "rng": rng_ranks[0] if rng_ranks else runs.capture_rng(self.device),
                "rng_ranks": rng_ranks,
                "loader": self.data.train.state_dict(),
                "genotype": self.genotype.to_dict(),
                "config": config_to_dict(cfg),
                "network": network_spec(cfg, self.data, self.kind),
            }
            runs.save_checkpoint(self.ckpt_path, "train", state)
        barrier()  # until rank 0 has written the checkpoint: a resume on any process reads the new one
        self.kept = _checkpoint_name(progress["epoch"], progress.get("step", 0), self.steps_per_epoch)

    def kept_note(self, where: str = "") -> str:
        return runs.kept_note(f"{self.kept}{where}" if self.kept else None)

    def check_finite(self, loss: float, nonfinite_weights: float, where: str) -> None:
        """Stop before a checkpoint would save a diverged run (loss, or weights after the last step, not finite)."""
        runs.check_finite(nonfinite_weights, f"{where}; {self.kept_note(f' in {self.run_dir}')}", loss=loss)

    def mid_epoch_checkpoint(self, step: int, sums: dict[str, float], epoch: int, t0: float, before: float) -> None:
        """The checkpoint after `step` steps of `epoch` (sums: the steps' summed figures over all processes)."""
        sums = dict(sums)
        where = f"by step {step} of epoch {epoch + 1}/{self.cfg.epochs}"
        self.check_finite(sums["loss"], sums.pop("nonfinite_weights"), where)
        partial_sums = {**sums, "time_s": before + time.perf_counter() - t0}
        self.write_checkpoint(
            {
                "epoch": epoch,
                "step": step,
                "partial": partial_sums,
                "train_time_s": self.train_time,
                "last_test": self.last_test,
            }
        )

    # --- the epochs -------------------------------------------------------------------------------------------

    def start_records(self) -> Any:
        """config.json, genotype.json, environment.json and the metrics logger (rank 0), and the opening line."""
        from rarts.metrics_log import MetricsLogger

        cfg = self.cfg
        env = environment_info(self.device)
        env.update(
            precision=precision_name(self.amp_dtype),
            channels_last=self.channels_last,
            resumed_at_epoch=self.start_epoch,
        )
        env["world_size"] = self.world.world_size
        runs.write_records(self.run_dir, config_to_dict(cfg), env, self.resumed)
        write_json(self.run_dir / "genotype.json", self.genotype.to_dict())
        resume_step = self.start_epoch if self.resumed else None
        logger = MetricsLogger(self.run_dir, resume_step=resume_step, tensorboard=cfg.tensorboard)
        self.say(
            f"training {cfg.genotype} on {cfg.dataset} ({self.kind} network, channels={cfg.channels}, {cfg.layers} "
            f"cells): {self.params / 1e6:.3f}M params, {self.mult_adds / 1e6:.1f}M mult-adds; "
            f"{device_name(self.device)}, {precision_name(self.amp_dtype)}"
            f"{', channels_last' if self.channels_last else ''}; run folder {self.run_dir}"
        )
        return logger

    def run(self, stop_after: int | None, on_step: Callable[[int, int], None] | None) -> dict[str, Any] | None:
        cfg = self.cfg
        logger = self.start_records() if self.main else None
        end_epoch = cfg.epochs if stop_after is None else min(cfg.epochs, stop_after)
        self.epoch = self.start_epoch
        place = lambda: f"in epoch {self.epoch + 1}/{cfg.epochs}"  # noqa: E731
        try:
            with runs.memory_advice(self.device, cfg, place, self.kept_note):
                for epoch in range(self.start_epoch, end_epoch):
                    self.epoch = epoch
                    self.train_epoch(epoch, logger, on_step)
                    if epoch + 1 < cfg.epochs and runs.stop_requested():
                        raise runs.Terminated(f"after epoch {epoch + 1}/{cfg.epochs}")
        finally:
            if logger is not None:
                logger.close()
        if end_epoch < cfg.epochs:
            return None
        return self.finish()

    def train_epoch(self, epoch: int, logger: Any, on_step: Callable[[int, int], None] | None) -> None:
        from rarts.distributed import broadcast_state, rank_seed

        cfg, net = self.cfg, self.net
        t0 = time.perf_counter()
        first_step = self.start_step if epoch == self.start_epoch else 0
        time_before = self.partial["time_s"] if first_step and self.partial else 0.0
        lr = self.optimizer.param_groups[0]["lr"]
        net.drop_path_prob = drop_path_at(cfg, epoch)
        # Drop-path masks differ between processes, and an epoch started again redraws its own (one resumed
        # mid-way goes on with the generator states its checkpoint holds).
        if self.world.enabled and not first_step:
            torch.manual_seed(rank_seed(cfg.seed, epoch, self.world.rank))

        def checkpoint(step: int, sums: dict[str, float]) -> None:
            self.mid_epoch_checkpoint(step, sums, epoch, t0, time_before)

        stats = train_one_epoch(
            self.model,
            self.data.train,
            self.optimizer,
            self.criterion,
            dataclasses.replace(cfg, progress=False) if self.quiet else cfg,
            self.amp_dtype,
            self.scaler,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            start_step=first_step,
            partial=self.partial if first_step and self.main else None,
            checkpoint=checkpoint,
            on_step=None if on_step is None else (lambda step: on_step(epoch, step)),
        )
        self.check_finite(stats["train_loss"], stats.pop("nonfinite_weights", 0), f"in epoch {epoch + 1}/{cfg.epochs}")
        # The network evaluated is rank 0's: its running statistics, then no collective in the loop, so ranks
        # may hold different numbers of test batches (a streamed test set smaller than the processes, say).
        broadcast_state(net, buffers_only=True)
        self.last_test = last_test = evaluate(net, self.data.test, self.amp_dtype)
        where = f"in epoch {epoch + 1}/{cfg.epochs}; {self.kept_note(f' in {self.run_dir}')}"
        runs.check_finite(0, where, loss=last_test["test_loss"], what="test loss")
        self.scheduler.step()
        seconds = time_before + time.perf_counter() - t0
        self.train_time += seconds
        row = {"epoch": epoch, "lr": lr, "drop_path_prob": net.drop_path_prob, **stats}
        row.update({k: last_test[k] for k in ("test_loss", "test_top1", "test_top5")})
        row.update(epoch_time_s=seconds, elapsed_s=self.train_time)
        if self.main:
            logger.log(row)
        self.write_checkpoint({"epoch": epoch + 1, "train_time_s": self.train_time, "last_test": last_test})
        if self.main:
            self.say(
                f"epoch {epoch + 1}/{cfg.epochs}  lr {lr:.5f}  train loss {stats['train_loss']:.4f} "
                f"acc {stats['train_top1']:.2f}%  test acc {last_test['test_top1']:.2f}% "
                f"(top-5 {last_test['test_top5']:.2f}%)  {seconds:.1f}s"
            )

    def finish(self) -> dict[str, Any]:
        """result.json (rank 0 writes it); every process returns the result."""
        cfg, last_test, device = self.cfg, self.last_test, self.device
        result = {
            "genotype": self.genotype.to_dict(),
            "genotype_string": self.genotype.to_darts_string(),
            "dataset": cfg.dataset,
            "epochs": cfg.epochs,
            "seed": cfg.seed,
            "test_top1_error": 100.0 - last_test["test_top1"],
            "test_top5_error": 100.0 - last_test["test_top5"],
            "test_loss": last_test["test_loss"],
            "test_images": last_test["test_images"],
            "params": self.params,
            "params_with_auxiliary": count_params(self.net, include_auxiliary=True),
            "mult_adds": self.mult_adds,
            "train_time_s": self.train_time,
            "train_time_h": self.train_time / 3600.0,
            "device": device_name(device),
            "device_type": device.type,
            "precision": precision_name(self.amp_dtype),
            "channels_last": self.channels_last,
            "world_size": self.world.world_size,
        }
        if self.main:
            write_json(self.run_dir / "result.json", result)
        return result
