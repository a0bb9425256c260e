"""How a resumable run starts, fails and is driven from the command line, the same for every task.

    result = run_task(SEARCH, cfg, run_dir, resume, body, say=..., checkpoint=None)

`run_task` joins the process group (under torchrun), checks the run folder, reads the checkpoint once (or takes
the one the command read), checks that the settings allow a resume, and returns the finished run's result when
there is nothing left to do; otherwise `body(world, device, checkpoint, say)` does the task's work. A task keeps
its own state, step and epoch end; what a failure says (`memory_advice`, `kept_note`) and what Ctrl-C says
(`say_how_to_resume`) are shared.

`--resume` on a folder whose run stopped before its first checkpoint (it holds its config.json and nothing a new
run would overwrite) starts the run afresh with a one-line note.

Faults `run_task` turns into one line (rarts.cli prints it):
- SIGTERM (SLURM, Kubernetes, `timeout`): while a run of one process is going, the handler only asks it to stop;
  the task finishes its step, checkpoints it when its last checkpoint is older (`stop_requested`), and raises
  `Terminated`, which becomes a `Stopped` (exit code 143) saying what is kept and how to resume. Under torchrun
  the launcher's own signal handling applies.
- An OSError while writing the run folder (no space, read-only, permission, quota): a RunFailed naming the file;
  the writes are atomic (rarts.utils), so the earlier checkpoint is intact and no temporary file is left.
- The temporary files an atomic write leaves when killed mid-write (`.checkpoint.pt.k2j4x_9q.tmp`) are removed
  when a run starts or resumes in the folder (`remove_orphans`).
"""

from __future__ import annotations

import contextlib
import errno
import re
import signal
import sys
import threading
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


class Terminated(Exception):
    """Raised by a task that stopped on SIGTERM after its step (and checkpoint); its text: where it stood."""


class Stopped(RunFailed):
    """A run stopped by SIGTERM, its last checkpoint kept: exit code 143 (128 + SIGTERM), as a shell reports it."""

    exit_code = 128 + signal.SIGTERM


# Set by the SIGTERM handler while a run is going; the task looks at it after every step.
_TERM = {"requested": False}


def stop_requested() -> bool:
    """Whether SIGTERM has asked the run going in this process to stop after its current step."""
    return _TERM["requested"]


@contextlib.contextmanager
def _sigterm_stops(enabled: bool) -> Iterator[None]:
    """While the run goes: SIGTERM sets stop_requested() (main thread only; the previous handler comes back)."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    def ask_to_stop(signum: int, frame: Any) -> None:
        _TERM["requested"] = True

    previous = signal.signal(signal.SIGTERM, ask_to_stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        _TERM["requested"] = False


# The temporary files of rarts.utils.atomic_write_bytes: "." + the file's name + "." + mkstemp's 8 characters.
_ORPHAN = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


def remove_orphans(run_dir: Path) -> list[Path]:
    """Remove the temporary files that atomic writes left in run_dir when a run was killed mid-write, and only
    those (hidden, named by the pattern above); returns the paths removed."""
    if not run_dir.is_dir():
        return []
    removed = []
    for path in sorted(run_dir.iterdir()):
        if _ORPHAN.match(path.name) and path.is_file():
            path.unlink()
            removed.append(path)
    return removed


# errno values of a write the file system refused: a full disk or quota, a read-only mount, no permission.
_WRITE_FAULTS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


def _write_fault(e: OSError, run_dir: Path) -> bool:
    """Whether `e` is a refused write of the run folder (not, say, a data file that cannot be read)."""
    if e.errno not in _WRITE_FAULTS:
        return False
    if e.filename is None:
        return e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    try:
        Path(e.filename).resolve().relative_to(run_dir.resolve())
    except ValueError:
        return False
    return True


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
        if world.is_main:
            remove_orphans(run_dir)
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
        try:
            with _sigterm_stops(enabled=not world.enabled):
                return body(world, device, checkpoint, say)
        except Terminated as e:
            raise Stopped(f"stopped by SIGTERM {e}; {how_to_resume(run_dir, task.name)}") from None
        except OSError as e:
            if not _write_fault(e, run_dir):
                raise
            where = e.filename or run_dir
            raise RunFailed(f"cannot write {where}: {e.strerror}; {how_to_resume(run_dir, task.name)}") from e


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
    print(f"rarts: {how_to_resume(out, command)}", file=sys.stderr)


def how_to_resume(out: str | Path, command: str) -> str:
    """Whether a checkpoint was kept in `out` and, if so, the command that continues the run."""
    if (Path(out) / CHECKPOINT_NAME).is_file():
        return f"the last checkpoint in {out} is intact; continue with: rarts {command} --out {out} --resume"
    return f"no checkpoint had been written to {out} yet"


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
