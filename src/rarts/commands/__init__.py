"""One module per `rarts` subcommand; each exposes register(subparsers)."""

from __future__ import annotations

import argparse
from typing import Optional


def add_layers_argument(
    parser: argparse.ArgumentParser, what: str, default_text: str, default: Optional[int] = None, prefix: str = ""
) -> None:
    """`--{prefix}layers N`, a network's number of cells: `layers`, its one name in rarts's settings, with the older
    flag `--{prefix}cells` still read."""
    flag, old = f"--{prefix}layers", f"--{prefix}cells"
    parser.add_argument(
        flag,
        old,
        dest=f"{prefix.replace('-', '_')}layers",
        type=int,
        default=default,
        help=f"{what} (default: {default_text}; {old}: older name)",
    )
