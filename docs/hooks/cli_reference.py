"""MkDocs hook: fill the CLI reference page from the argument parsers themselves, so it cannot go stale.

The page `cli.md` holds the marker `<!-- cli-reference -->`; at build time it is replaced by one section per
subcommand (nested ones included): its description, its usage line and a table of its arguments, all read from
`rarts.cli.build_parser()`. rarts is imported when the page is rendered, not when the hook is loaded, and from the
`src/` folder beside mkdocs.yml when there is one, so the reference describes the checkout being built.
"""

from __future__ import annotations

import argparse
import html
import sys
from pathlib import Path

MARKER = "<!-- cli-reference -->"
PAGE = "cli.md"
WIDTH = 100


def on_page_markdown(markdown, page, config, files):
    if page.file.src_uri != PAGE or MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, render_reference(config))


def render_reference(config) -> str:
    src = Path(config.config_file_path).parent / "src"
    if src.is_dir() and str(src) not in sys.path:
        sys.path.insert(0, str(src))
    from rarts.cli import build_parser

    return "\n".join(render_parser(parser) for parser in subcommands(build_parser()))


def subcommands(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every subcommand parser below `parser`, depth first, in the order `--help` lists them."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found.append(sub)
                found.extend(subcommands(sub))
    return found


def render_parser(parser: argparse.ArgumentParser) -> str:
    depth = parser.prog.count(" ")  # "rarts toy" is 1, "rarts toy run" is 2
    lines = [f"{'#' * (depth + 1)} `{parser.prog}`", ""]
    if parser.description:
        lines += [prose(parser.description), ""]
    formatter = parser.formatter_class(prog=parser.prog, width=WIDTH)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    lines += ["```text", formatter.format_help().strip(), "```", ""]
    rows = [render_action(parser, a) for a in parser._actions if shown(a)]
    if rows:
        lines += ["| argument | what it does |", "|---|---|", *rows, ""]
    if parser.epilog:
        lines += [prose(parser.epilog), ""]
    return "\n".join(lines)


def shown(action: argparse.Action) -> bool:
    return not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)) and (
        action.help is not argparse.SUPPRESS
    )


def render_action(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    if action.option_strings:
        metavar = "" if action.nargs == 0 else " " + argument_metavar(parser, action)
        name = ", ".join(f"`{flag}{metavar}`" for flag in action.option_strings)
    else:
        name = f"`{argument_metavar(parser, action)}`"
    text = help_text(parser, action)
    has_default = action.nargs != 0 and action.option_strings and action.default not in (None, argparse.SUPPRESS)
    if has_default and "default" not in text:
        text += f" (default: {action.default})"
    return f"| {cell(name)} | {cell(prose(text))} |"


def argument_metavar(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    formatter = parser.formatter_class(prog=parser.prog, width=WIDTH)
    default = action.dest.upper() if action.option_strings else action.dest
    return formatter._format_args(action, default)


def help_text(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    if not action.help:
        return ""
    formatter = parser.formatter_class(prog=parser.prog, width=WIDTH)
    return " ".join(formatter._expand_help(action).split())


def prose(text: str) -> str:
    """Help text as Markdown text: `<method>` is a placeholder to show, not an HTML tag."""
    return html.escape(text, quote=False)


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")
