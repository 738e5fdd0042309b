"""The command-line reference, docs/cli.md, written from the commands themselves: each command's
docstring (what it does, examples, exit codes) and its arguments and options, grouped in the
panels of its `--help`, with their values and defaults. tests/test_cli_docs.py fails when the
checked-in file differs from what the code gives.

    python -m mos.cli_docs --write     # rewrite docs/cli.md (in a checkout)
    python -m mos.cli_docs             # print it
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
import types
import typing
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import typer

from mos.cli import COMMANDS, app
from mos.cli_group import load_function

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
REGENERATE = "python -m mos.cli_docs --write"

# What every command shares (Markdown); each command's docstring adds its own exit codes.
COMMON_EXIT_CODES = [
    ("0", "done"),
    ("1", "an unexpected error: a bug (the traceback says where; please report it)"),
    ("2", "a usage error (an unknown option, a bad value: the usage and the problem on stderr) or bad input "
          "(one line `error: ...` on stderr naming the file and the problem)"),
]


@dataclass
class Help:
    """A command's docstring in parts: the summary, more prose, the examples, the exit codes."""

    summary: str
    prose: list[str] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)
    exit_codes: list[tuple[str, str]] = field(default_factory=list)


def parse_help(text: str) -> Help:
    """Split a command's docstring: paragraph 1 is the summary; a paragraph starting `Examples:`
    (or `Example:`) holds one command line per line (`# comment` allowed); one starting
    `Exit codes:` holds `CODE  meaning` lines; other paragraphs are prose."""
    paragraphs = [p.strip("\n") for p in inspect.cleandoc(text).split("\n\n") if p.strip()]
    parsed = Help(summary=" ".join(paragraphs[0].split()))
    for paragraph in paragraphs[1:]:
        head, _, body = paragraph.partition("\n")
        if head.strip() in ("Examples:", "Example:"):
            parsed.examples += [line.strip() for line in body.splitlines() if line.strip()]
        elif head.strip() == "Exit codes:":
            for line in body.splitlines():
                code, _, meaning = line.strip().partition(" ")
                parsed.exit_codes.append((code, " ".join(meaning.split())))
        else:
            parsed.prose.append(" ".join(paragraph.split()))
    return parsed


def default_text(param: Any) -> str | None:
    """The default `--help` shows for a parameter (None: it shows none): the text of
    `show_default` when that is a description, the flag's name for an on/off pair, the value."""
    if isinstance(param.show_default, str):
        return param.show_default
    if param.show_default is False or param.default is None or getattr(param, "required", False):
        return None
    if getattr(param, "is_flag", False):
        if not param.secondary_opts:
            return None if not param.default else "on"
        return (param.opts[0] if param.default else param.secondary_opts[0]).lstrip("-")
    if isinstance(param.default, Enum):
        return str(param.default.value)
    if isinstance(param.default, (list, tuple)):
        return ", ".join(str(v) for v in param.default) or None
    return str(param.default)


def value_text(function: Any, param: Any) -> str:
    """What a parameter takes, from the function's annotation: `<int>`, `<path>`, `<a|b>`...;
    empty for a flag; a typer `min=`/`max=` adds its bounds."""
    annotation = typing.get_type_hints(function)[param.name]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if annotation is bool:
        return ""
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        label = "|".join(str(member.value) for member in annotation)
    else:
        label = {int: "int", float: "float", str: "str", Path: "path"}.get(annotation, getattr(annotation, "__name__", "value"))
    info = inspect.signature(function).parameters[param.name].default
    bounds = [f"{op} {v}" for op, v in ((">=", getattr(info, "min", None)), ("<=", getattr(info, "max", None)))
              if v is not None]
    return f"<{label}>" + (f" ({', '.join(bounds)})" if bounds else "")


def usage(name: str, command: Any) -> str:
    """`mos NAME [OPTIONS] ARGS`, as the usage line of `--help`."""
    ctx = typer.Context(command, info_name=name)
    return " ".join(["mos", name, *command.collect_usage_pieces(ctx)])


def _md(text: str) -> str:
    """Text for a Markdown table cell or paragraph: what Markdown would read as markup escaped."""
    text = re.sub(r"([\\`*<>|~\[\]])", r"\\\1", text)
    return re.sub(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])", r"\\_", text)


def _code(text: str) -> str:
    """A code span for a table cell (only `|` needs escaping there)."""
    return "`" + text.replace("|", "\\|") + "`"


def _names(param: Any) -> str:
    if param.param_type_name == "argument":
        return param.name.upper()
    names = ", ".join(sorted(param.opts, key=lambda o: not o.startswith("--")))
    return names + (" / " + ", ".join(param.secondary_opts) if param.secondary_opts else "")


def panels(command: Any) -> dict[str, list[Any]]:
    """Panel title -> its parameters, in the order `--help` shows them (Arguments first)."""
    grouped: dict[str, list[Any]] = {"Arguments": [], "Options": []}
    for param in command.params:
        if getattr(param, "hidden", False):
            continue
        default = "Arguments" if param.param_type_name == "argument" else "Options"
        grouped.setdefault(param.rich_help_panel or default, []).append(param)
    return {title: params for title, params in grouped.items() if params}


def _table(function: Any, params: list[Any]) -> list[str]:
    lines = ["| Name | Value | Default | Description |", "|---|---|---|---|"]
    for param in params:
        value, default = value_text(function, param), default_text(param)
        if param.required:
            default_cell = "required"
        elif default is None:
            default_cell = ""
        elif isinstance(param.show_default, str):  # a description, not a value
            default_cell = _md(default)
        else:
            default_cell = _code("--" + default if getattr(param, "is_flag", False) else default)
        cells = [_code(_names(param)), _code(value) if value else "", default_cell, _md(" ".join((param.help or "").split()))]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _anchor(name: str) -> str:
    return f"mos-{name}"


def command_section(name: str, command: Any, function: Any) -> list[str]:
    parsed = parse_help(command.help or "")
    out = [f"## mos {name}", "", f"`{usage(name, command)}`", "", _md(parsed.summary), ""]
    for paragraph in parsed.prose:
        out += [_md(paragraph), ""]
    for title, params in panels(command).items():
        out += [f"### {title}", "", *_table(function, params), ""]
    if parsed.examples:
        out += ["### Examples", "", "```console", *parsed.examples, "```", ""]
    if parsed.exit_codes:
        out += ["### Exit codes", "", "| Code | Meaning |", "|---|---|"]
        out += [f"| {_md(code)} | {_md(meaning)} |" for code, meaning in parsed.exit_codes]
        out += [""]
    return out


def render() -> str:
    """docs/cli.md as the code gives it."""
    root = typer.main.get_command(app)
    commands = {name: root.commands[name] for name in COMMANDS}
    out = [
        "# Command-line reference",
        "",
        f"<!-- Generated from the code by `{REGENERATE}`: edit the commands' docstrings and options, not this file. "
        "tests/test_cli_docs.py fails when it is out of date. -->",
        "",
        _md(root.help or ""),
        "",
        "| Command | What it does |",
        "|---|---|",
    ]
    out += [f"| [`mos {name}`](#{_anchor(name)}) | {_md(parse_help(c.help or '').summary)} |" for name, c in commands.items()]
    out += [
        "",
        "`mos COMMAND --help` lists a command's options, grouped as below; `mos --version` prints the version.",
        "",
        "Exit codes of every command (each adds its own below):",
        "",
        "| Code | Meaning |",
        "|---|---|",
        *[f"| {code} | {meaning} |" for code, meaning in COMMON_EXIT_CODES],
        "",
    ]
    for name, command in commands.items():
        out += command_section(name, command, load_function(COMMANDS[name]))
    return "\n".join(out).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the command-line reference (docs/cli.md) from the code.")
    parser.add_argument("--write", action="store_true", help=f"rewrite {DOC} instead of printing it")
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        DOC.write_text(text)
        print(f"wrote {DOC}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
