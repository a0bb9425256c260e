"""One resumable run for every task (search, training): folder, checkpoint, generator states, resume policy.

- `folder`: the run folder (refused when it holds another run), config.json, environment.json, accuracy units.
- `checkpoint`: the checkpoint file's format and version, one writer and one reader (older versions upgraded).
- `rng`: every random generator's state, one capture and one restore.
- `finite`: what is checked before a checkpoint is written (weights and loss not inf or nan).
- `resume`: which settings a resumed run may change, declared on the config fields; one resume check.
- `run`: the start of a run (process group, checkpoint read once, "finished already"), failure messages, SIGTERM,
  refused writes, orphan temporary files, and the command-line glue.

A task supplies its state, its step and its epoch end (rarts.search.loop, rarts.train.run).
"""

from rarts.runs.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from rarts.runs.finite import check_finite, count_nonfinite
from rarts.runs.folder import accuracy_scale, check_out_folder, run_folder_holds, write_environment, write_records
from rarts.runs.resume import check_resumable, free, resume_free_settings
from rarts.runs.rng import capture_rng, restore_rng
from rarts.runs.run import (
    SEARCH,
    TRAIN,
    Stopped,
    Task,
    Terminated,
    command_config,
    kept_note,
    memory_advice,
    remove_orphans,
    run_command,
    run_task,
    stop_requested,
)

__all__ = [
    "CHECKPOINT_NAME",
    "SEARCH",
    "TRAIN",
    "Stopped",
    "Task",
    "Terminated",
    "accuracy_scale",
    "capture_rng",
    "check_finite",
    "check_out_folder",
    "check_resumable",
    "command_config",
    "count_nonfinite",
    "free",
    "kept_note",
    "load_checkpoint",
    "memory_advice",
    "remove_orphans",
    "restore_rng",
    "resume_free_settings",
    "run_command",
    "run_folder_holds",
    "run_task",
    "save_checkpoint",
    "stop_requested",
    "write_environment",
    "write_records",
]
