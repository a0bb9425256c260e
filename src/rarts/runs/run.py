"""How a resumable run starts, fails and is driven from the command line, the same for every task.

    result = run_task(SEARCH, cfg, run_dir, resume, body, say=..., checkpoint=None)

`run_task` joins the process group (under torchrun), checks the run folder, reads the checkpoint once (or takes
the one the command read), checks that the settings allow a resume, and returns the finished run's result when
there is nothing left to do; otherwise `body(world, device, checkpoint, say)` does the task's work. A task keeps
its own state, step and epoch end; what a failure says (`memory_advice`, `kept_note`) and what Ctrl-C says
(`say_how_to_resume`) are shared.

`--resume` on a folder whose run stopped before its first checkpoint (it holds its config.json and nothing a new
run would overwrite) starts the run afresh with a one-line note.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from rarts.errors import RunFailed, UsageError
from rarts.runs.checkpoint import CHECKPOINT_NAME, load_checkpoint
from rarts.runs.folder import check_out_folder, run_folder_holds
from rarts.runs.resume import check_resumable, config_class
from rarts.utils import is_out_of_memory, read_json

Say = Callable[[str], None]


@dataclass(frozen=True)
class Task:
    """What the shared machinery needs to know of a task."""

    name: str  # "search" or "train": the command, and the checkpoint's format rarts-<name>-checkpoint
    noun: str  # "search" or "training", as messages say it ("a training run")
    result_name: str  # the file a finished run writes last
    result_key: str  # a key that file holds when it is the run's own result


SEARCH = Task("search", "search", "summary.json", "genotype")
TRAIN = Task("train", "training", "result.json", "test_top1_error")


def read_checkpoint(task: Task, run_dir: Path, say: Say) -> Optional[dict[str, Any]]:
    """The checkpoint to resume from, or None (with a note) when the run stopped before writing its first one."""
    path = run_dir / CHECKPOINT_NAME
    if path.is_file():
        return load_checkpoint(path, task.name)
    if (run_dir / "config.json").is_file() and run_folder_holds(run_dir) is None:
        say(f"{run_dir}: the run stopped before its first checkpoint; starting it afresh")
        return None
    raise UsageError(f"--resume: {run_dir} holds no {CHECKPOINT_NAME} to resume from")


def run_task(
    task: Task,
    cfg: Any,
    run_dir: Path,
    resume: bool,
    body: Callable[[Any, torch.device, Optional[dict[str, Any]], Say], Any],
    *,
    say: Say,
    quiet: bool = False,
    checkpoint: Optional[dict[str, Any]] = None,
    check: Optional[Callable[[dict[str, Any]], None]] = None,
) -> Any:
    """Run `body` for cfg in run_dir (see the module docstring). say: how rank 0 reports (quiet: not at all).
    checkpoint: the one the caller read from run_dir already. check(checkpoint): the task's own resume check,
    made before the settings are compared (training: the same cells)."""
    from rarts.distributed import process_group

    with process_group(cfg.device) as (world, device):
        if quiet or not world.is_main:
            say = _silent
        check_out_folder(run_dir, f"{task.noun} run", resume)
        if resume and checkpoint is None:
            checkpoint = read_checkpoint(task, run_dir, say)
        if checkpoint is not None:
            if check is not None:
                check(checkpoint)
            check_resumable(cfg, checkpoint["config"])
            done = run_dir / task.result_name
            if checkpoint["epoch"] >= cfg.epochs and done.is_file():
                result = read_json(done)
                if isinstance(result, dict) and task.result_key in result:
                    say(f"{run_dir}: the {task.noun} has finished already")
                    return result
                # A result file that is not the run's (overwritten, cut short): written again from the checkpoint.
        return body(world, device, checkpoint, say)


def _silent(_: str) -> None:
    pass


def kept_note(checkpoint: Optional[str]) -> str:
    """What a failed run leaves behind: `checkpoint` (its description) is intact, or no checkpoint yet."""
    return f"{checkpoint} is intact" if checkpoint else "no checkpoint had been written yet"


@contextlib.contextmanager
def memory_advice(
    device: torch.device, cfg: Any, place: Callable[[], str], kept: Callable[[], str], also: str = ""
) -> Iterator[None]:
    """Turn running out of memory into a RunFailed that says where, what is kept and what to try.
    place(): where the run stood ("in epoch 2/10"); kept(): kept_note's text; also: a further thing to try."""
    try:
        yield
    except (RuntimeError, MemoryError) as e:
        if not is_out_of_memory(e):
            raise
        where = "GPU" if device.type == "cuda" else "CPU"
        raise RunFailed(
            f"out of {where} memory {place()} (batch_size={cfg.batch_size}, channels={cfg.channels}, layers="
            f"{cfg.layers}); {kept()}: try a smaller batch_size or fewer channels, e.g. batch_size="
            f"{max(1, cfg.batch_size // 2)}{also}"
        ) from e


# --- the command line ---------------------------------------------------------------------------------------------


def command_config(
    task: Task, args: Any, flags: dict[str, Any], make_config: Callable[..., Any]
) -> tuple[Any, Optional[dict[str, Any]]]:
    """The config of `rarts <task>` and the checkpoint to resume from (read once, here), or None for a new run.
    Without --preset a resumed run takes the saved settings, with the key=value overrides and flags on top."""
    from rarts.config import build_config, parse_overrides
    from rarts.distributed import world_from_env

    overrides = parse_overrides(args.overrides)
    if not args.resume:
        return make_config(args.preset, overrides, flags), None
    if not args.out:
        raise UsageError("--resume needs --out: the run folder to continue")
    run_dir = Path(args.out)
    if run_dir.exists() and not run_dir.is_dir():
        check_out_folder(run_dir, f"{task.noun} run", True)
    say = _stderr if world_from_env().is_main else _silent
    checkpoint = read_checkpoint(task, run_dir, say)
    if args.preset is not None:
        return make_config(args.preset, overrides, flags), checkpoint
    saved = checkpoint["config"] if checkpoint is not None else read_json(run_dir / "config.json")
    return build_config(config_class(task.name), saved, overrides, flags), checkpoint


def run_command(task: Task, out: str, run: Callable[[], Any]) -> Any:
    """run(), saying after Ctrl-C how to resume the run in `out`."""
    from rarts.distributed import world_from_env

    try:
        return run()
    except KeyboardInterrupt:
        if world_from_env().is_main:
            say_how_to_resume(out, task.name)
        raise


def say_how_to_resume(out: str | Path, command: str) -> None:
    """After Ctrl-C: tell the user whether a checkpoint was kept and the command that continues the run."""
    if (Path(out) / CHECKPOINT_NAME).is_file():
        print(
            f"rarts: the last checkpoint in {out} is intact; continue with: rarts {command} --out {out} --resume",
            file=sys.stderr,
        )
    else:
        print(f"rarts: no checkpoint had been written to {out} yet", file=sys.stderr)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
