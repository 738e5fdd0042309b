"""`mos --help` and each command's `--help` show what the code declares: every option with its
default where it has one, the command's description, examples and exit codes (its docstring,
none of it lost to rich markup), and for train, distill, score and bench every option inside its
panel. Flags show no value type (`<bool>`) and usage lines name arguments in capitals (no
`{inputs}`). The checks read content, not layout, so they hold for every supported typer.

Each page is rendered by the real CLI (typer's CliRunner); a wide terminal keeps rows whole."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from mos.cli import COMMANDS, app, main
from mos.cli_docs import default_text, parse_help

WIDTH = "200"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
ROOT = typer.main.get_command(app)
PAGES = [[], *([name] for name in COMMANDS)]
PANELLED = ["train", "distill", "score", "bench"]


def _help(args: list[str]) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], prog_name="mos",
                                env={"COLUMNS": WIDTH, "TERMINAL_WIDTH": WIDTH, "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    return ANSI.sub("", result.output)


def _command(args: list[str]) -> Any:
    return ROOT if not args else ROOT.commands[args[0]]  # type: ignore[attr-defined]


def _flat(text: str) -> str:
    """Text without whitespace and box drawing, so that wrapped help compares with declared text."""
    return re.sub(r"[\s│╭╮╰╯─]+", "", text)


def _options(command: Any) -> list[Any]:
    return [p for p in command.params if p.param_type_name == "option"]


def _rows(text: str) -> list[str]:
    return [line.strip("│ \t") for line in text.splitlines()]


def _blocks(text: str, command: Any) -> dict[str, tuple[str, str]]:
    """Option name -> (its panel's title, the text of its row with the row's wrapped lines joined)."""
    names = {p.opts[0] for p in _options(command)} | {"--help"}
    blocks: dict[str, tuple[str, str]] = {}
    panel, current = "", None
    for line in text.splitlines():
        title = re.match(r"\s*╭─ (.+?) ─", line)
        if title:
            panel, current = title.group(1), None
            continue
        row = line.strip("│ \t")
        first = row.split(" ", 1)[0]
        if first.startswith("-"):
            current = first if first in names else None
            if current:
                blocks[current] = (panel, row)
        elif current and row and not row.startswith("╰"):
            blocks[current] = (panel, blocks[current][1] + " " + row)
        else:
            current = None
    return blocks


def test_every_command_is_listed_in_order() -> None:
    assert list(COMMANDS) == ["train", "export", "score", "eval", "bench", "distill", "demo"]
    assert ROOT.list_commands(None) == list(COMMANDS)  # type: ignore[attr-defined]
    text = _help([])
    shown = [row.split()[0] for row in _rows(text) if row.split() and row.split()[0] in COMMANDS]
    assert shown == list(COMMANDS)
    for name in COMMANDS:
        assert _flat(parse_help(_command([name]).help).summary) in _flat(text), name


@pytest.mark.parametrize("args", PAGES, ids=lambda a: " ".join(["mos", *a]))
def test_every_option_is_shown_with_its_help_and_default(args: list[str]) -> None:
    text = _help(args)
    command = _command(args)
    blocks = _blocks(text, command)
    for param in _options(command):
        _, block = blocks[param.opts[0]]
        for name in [*param.opts, *param.secondary_opts]:
            assert name in block.split(), f"{name}: {block!r}"
        assert _flat(param.help) in _flat(block), f"{param.opts[0]}: {block!r}"
        default = default_text(param)
        if default is not None:
            assert re.search(rf"\[default:\(?{re.escape(_flat(default))}\)?\]", _flat(block)), \
                f"{param.opts[0]}: no [default: {default}] in {block!r}"
        else:
            assert "[default:" not in block, f"{param.opts[0]} has no default, yet: {block!r}"
    assert re.search(r"--help\s+Show this message and exit", text)


@pytest.mark.parametrize("args", PAGES, ids=lambda a: " ".join(["mos", *a]))
def test_flags_show_no_value_type(args: list[str]) -> None:
    text = _help(args)
    assert "<bool>" not in text and "BOOLEAN" not in text
    command = _command(args)
    blocks = _blocks(text, command)
    for flag in [p for p in _options(command) if p.is_flag]:
        _, block = blocks[flag.opts[0]]
        words = [w for w in block.split() if w not in {*flag.opts, *flag.secondary_opts}]
        assert " ".join(words).startswith(" ".join(flag.help.split()[:2])), f"{flag.opts[0]}: {block!r}"


@pytest.mark.parametrize("args", PAGES, ids=lambda a: " ".join(["mos", *a]))
def test_usage_names_arguments_in_capitals(args: list[str]) -> None:
    text = _help(args)
    usage = next(line for line in text.splitlines() if "Usage:" in line)
    assert not re.search(r"\{[^}]*\}", usage), usage
    for param in _command(args).params:
        if param.param_type_name == "argument":
            name = param.name.upper()
            shown = name if param.required else rf"\[{name}\]"
            assert re.search(rf"(?<![\w\[-]){shown}(?![\w\]-])", usage), usage


@pytest.mark.parametrize("name", ["score", "eval", "distill"])
def test_a_missing_argument_is_named_as_the_usage_line_names_it(name: str) -> None:
    result = CliRunner().invoke(app, [name], prog_name="mos", env={"COLUMNS": WIDTH, "NO_COLOR": "1"})
    first = next(p for p in _command([name]).params if p.param_type_name == "argument")
    assert result.exit_code == 2 and f"Missing argument '{first.name.upper()}'" in ANSI.sub("", result.output), result.output


@pytest.mark.parametrize("name", list(COMMANDS))
def test_the_docstring_is_shown_whole_with_examples_and_exit_codes(name: str) -> None:
    """Every line of the command's docstring is in its help (rich markup swallows none of it),
    and the docstring has examples of this command and its exit codes, 0 first."""
    text = _flat(_help([name]))
    doc = inspect.cleandoc(_command([name]).help)
    for line in doc.splitlines():
        assert _flat(line) in text, f"mos {name} --help lost: {line!r}"
    parsed = parse_help(doc)
    assert parsed.examples and all(e.startswith(f"mos {name}") for e in parsed.examples), parsed.examples
    assert parsed.exit_codes and parsed.exit_codes[0][0] == "0", parsed.exit_codes
    assert all(re.fullmatch(r"\d+|N", code) and meaning for code, meaning in parsed.exit_codes), parsed.exit_codes


@pytest.mark.parametrize("name", PANELLED)
def test_every_option_is_in_its_panel(name: str) -> None:
    command = _command([name])
    text = _help([name])
    blocks = _blocks(text, command)
    titles = re.findall(r"╭─ (.+?) ─", text)
    panels = list(dict.fromkeys(p.rich_help_panel for p in _options(command)))
    assert len(panels) >= 4 and None not in panels, f"mos {name}: options outside a panel: {panels}"
    assert [t for t in titles if t in panels] == panels, titles  # each panel once, in the declared order
    for param in _options(command):
        assert blocks[param.opts[0]][0] == param.rich_help_panel, (param.opts[0], blocks[param.opts[0]][0])


@pytest.mark.slow
def test_score_help_loads_only_the_score_command() -> None:
    """Commands load on use: `mos score --help` imports no other command's module, no numpy,
    ONNX Runtime or torch (its cold start), and `mos train --help` no scoring runtime."""
    probe = ("import sys; from mos.cli import main\n"
             "try:\n    main([sys.argv[1], '--help'])\nexcept SystemExit:\n    pass\n"
             "heavy = ('numpy', 'onnxruntime', 'torch', 'mos.runtime.scorer', 'mos.runtime.command',\n"
             "         'mos.bench.command', 'mos.distill.command')\n"
             "print('LOADED', sorted(m for m in heavy if m in sys.modules))")
    loaded = {}
    for name in ("score", "train"):
        run = subprocess.run([sys.executable, "-c", probe, name], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        loaded[name] = run.stdout.rsplit("LOADED", 1)[1].strip()
    assert loaded == {"score": "['mos.runtime.command']", "train": "[]"}


@pytest.mark.slow
def test_stand_alone_entry_points_run_the_same_commands(capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m mos.bench` and `python -m mos.runtime.command` are `mos bench` / `mos score`."""
    for module, name in (("mos.bench", "bench"), ("mos.runtime.command", "score")):
        run = subprocess.run([sys.executable, "-m", module, *(["score"] if name == "score" else []), "--help"],
                             capture_output=True, text=True, env={**os.environ, "COLUMNS": WIDTH, "NO_COLOR": "1"})
        assert run.returncode == 0, run.stderr
        assert f"Usage: mos {name} [OPTIONS]" in run.stdout, run.stdout[:300]
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code in (0, None) and capsys.readouterr().out.startswith("mos ")
