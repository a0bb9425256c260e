"""The `rarts` command line: a thin dispatcher over per-command modules in rarts.commands.

Each module in COMMANDS has `register(subparsers)`, which adds its parser and sets `func` to a
callable taking the parsed arguments and returning an exit code (or None for 0). Heavy imports
happen inside those callables, so `rarts --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from rarts import __version__
from rarts.errors import RartsError, UsageError

COMMANDS = (
    "rarts.commands.toy",
    "rarts.commands.data",
    "rarts.commands.latency",
    "rarts.commands.genotype",
    "rarts.commands.train",
    "rarts.commands.compare",
    "rarts.commands.search",
    "rarts.commands.bench",
)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line error message (no usage block) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="rarts",
        description="Differentiable architecture search: RARTS, DARTS 1st/2nd order, MiLeNAS, random.",
    )
    parser.add_argument("--version", action="version", version=f"rarts {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    _describe_subcommands(parser)
    return parser


def _describe_subcommands(parser: argparse.ArgumentParser) -> None:
    """Give every subcommand without a description its one-line help as one, so `rarts X Y --help` says what
    X Y does, not only its flags."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                if sub.description is None and helps.get(name):
                    sub.description = helps[name][0].upper() + helps[name][1:] + "."
                _describe_subcommands(sub)


def _rank() -> int:
    """This process's rank under torchrun (0 otherwise, or when RANK is unreadable)."""
    import os

    try:
        return int(os.environ.get("RANK", "0") or 0)
    except ValueError:
        return 0


def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit code: 0, 1 a run that started and could not go on (its last checkpoint kept), 2 a
    refused input, 130 Ctrl-C, 141 a closed pipe, 143 a run stopped by SIGTERM after checkpointing its step."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except RartsError as e:
        rank = _rank()
        if rank == 0:
            print(f"rarts: error: {e}", file=sys.stderr)
        elif not isinstance(e, UsageError):  # refused settings are refused alike by every process: rank 0 says it
            print(f"rarts [rank {rank}]: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("rarts: interrupted", file=sys.stderr)
        return 130
    except (FileExistsError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as e:
        # A path given on the command line that cannot be written or read as asked (an --out that is a file, a
        # folder that cannot be created): the system's reason and the path, in one line.
        where = f": {e.filename}" if e.filename else ""
        print(f"rarts: error: {e.strerror or e}{where}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away: stop quietly, and keep Python from complaining at exit.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return int(code or 0)
