"""`--help` of `mos` and of every command reads as typer documents it: flags show no value type,
usage lines name arguments in capitals (`INPUTS`, not `{inputs}`), no help text is lost to rich
markup (a bracketed "[default: ...]" inside a help string vanishes and leaves a stray " ."), and
`mos bench` shows the default of every option that takes a value.

Each help page is rendered by the real CLI (typer's CliRunner) at a fixed width."""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from mos.cli import app

WIDTH = "100"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
ROOT = typer.main.get_command(app)
COMMANDS = sorted(ROOT.commands)  # type: ignore[attr-defined]
PAGES = [[], *([name] for name in COMMANDS)]


def _help(args: list[str]) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], prog_name="mos",
                                env={"COLUMNS": WIDTH, "TERMINAL_WIDTH": WIDTH, "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    return ANSI.sub("", result.output)


def _command(args: list[str]) -> Any:
    return ROOT if not args else ROOT.commands[args[0]]  # type: ignore[attr-defined]


def _rows(text: str) -> list[str]:
    """The lines of the help's panels, without the box drawing."""
    return [line.strip("│ \t") for line in text.splitlines()]


def _option_blocks(text: str, command: Any) -> dict[str, str]:
    """Option name -> the text of its row in the Options panel (the row's wrapped lines joined)."""
    names = {p.opts[0]: p for p in command.params if getattr(p, "param_type_name", "") == "option"}
    blocks: dict[str, str] = {}
    current = None
    for row in _rows(text):
        first = row.split(" ", 1)[0]
        if first.startswith("-"):
            current = first if first in names or first == "--help" else None
            if current:
                blocks[current] = row
        elif current and row and not row.startswith("╰"):
            blocks[current] += " " + row
        else:
            current = None
    return blocks


def test_every_command_is_covered() -> None:
    assert {"train", "export", "score", "bench", "eval", "demo"} <= set(COMMANDS)


@pytest.mark.parametrize("args", PAGES, ids=lambda a: " ".join(["mos", *a]))
def test_flags_take_no_value_and_show_none(args: list[str]) -> None:
    text = _help(args)
    assert "<bool>" not in text and "BOOLEAN" not in text
    flags = [p for p in _command(args).params if getattr(p, "is_flag", False)]
    blocks = _option_blocks(text, _command(args))
    for flag in flags:
        row = blocks[flag.opts[0]]
        names = set(flag.opts) | set(flag.secondary_opts)
        words = [w for w in row.split() if w not in names]
        help_start = " ".join(flag.help.split()[:2])
        assert " ".join(words).startswith(help_start), f"{flag.opts[0]}: {row!r}"
    assert re.search(r"--help\s+Show this message and exit", text)


@pytest.mark.parametrize("args", PAGES, ids=lambda a: " ".join(["mos", *a]))
def test_usage_names_arguments_in_capitals(args: list[str]) -> None:
    text = _help(args)
    usage = next(line for line in text.splitlines() if "Usage:" in line)
    assert not re.search(r"\{[^}]*\}", usage), usage
    for param in _command(args).params:
        if getattr(param, "param_type_name", "") == "argument":
            assert re.search(rf"(?<![\w-]){param.name.upper()}(?![\w-])", usage), usage


@pytest.mark.parametrize("args", PAGES, ids=lambda a: " ".join(["mos", *a]))
def test_no_help_text_is_swallowed_by_markup(args: list[str]) -> None:
    text = _help(args)
    joined = " ".join(_rows(text))
    assert not re.search(r"\s[.,;](\s|$)", joined), re.findall(r".{30}\s[.,;](?:\s|$).{0,10}", joined)
    for param in _command(args).params:
        for piece in re.findall(r"\[[^\]]*\]", getattr(param, "help", None) or ""):
            assert piece in joined, f"{param.name}: {piece!r} is not shown"


def test_bench_shows_its_defaults() -> None:
    text = _help(["bench"])
    command = _command(["bench"])
    blocks = _option_blocks(text, command)
    for param in command.params:
        if getattr(param, "param_type_name", "") != "option" or (param.is_flag and not param.secondary_opts):
            continue  # a plain on/off flag is off unless given
        assert "[default:" in blocks[param.opts[0]], f"{param.opts[0]}: {blocks[param.opts[0]]!r}"
    joined = " ".join(_rows(text))
    for shown in ("[default: (200; --quick: 48)]", "[default: (3; --quick: 1)]", "[default: (1,8,16,32; --quick: 1,16)]",
                  "[default: runs/demo/bundle]"):
        assert shown in joined, shown
