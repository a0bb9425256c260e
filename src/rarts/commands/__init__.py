"""One module per `rarts` subcommand; each exposes register(subparsers)."""

from __future__ import annotations

import sys
from pathlib import Path


def say_how_to_resume(out: str | Path, command: str) -> None:
    """After Ctrl-C: tell the user whether a checkpoint was kept and the command that continues the run."""
    if (Path(out) / "checkpoint.pt").is_file():
        print(
            f"rarts: the last checkpoint in {out} is intact; continue with: rarts {command} --out {out} --resume",
            file=sys.stderr,
        )
    else:
        print(f"rarts: no checkpoint had been written to {out} yet", file=sys.stderr)
