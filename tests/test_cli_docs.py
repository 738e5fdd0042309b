"""docs/cli.md is what the code gives (mos.cli_docs), so the reference cannot drift from `--help`:
every command, every option in its panel with its value and default, examples and exit codes."""

from __future__ import annotations

import re

import pytest
import typer

from mos.cli import COMMANDS, app
from mos.cli_docs import DOC, REGENERATE, default_text, panels, parse_help, render

ROOT = typer.main.get_command(app)


def _plain(markdown: str) -> str:
    """Markdown with its backslash escapes undone."""
    return re.sub(r"\\(.)", r"\1", markdown)


def _section(text: str, name: str) -> str:
    """The part of the reference about `mos NAME`."""
    match = re.search(rf"^## mos {name}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"no section for mos {name}"
    return match.group(1)


def test_the_checked_in_reference_is_current() -> None:
    if not DOC.is_file() or DOC.read_text() != render():
        pytest.fail(f"docs/{DOC.name} is out of date with the commands' code: run `{REGENERATE}` and commit it", pytrace=False)


@pytest.mark.parametrize("name", list(COMMANDS))
@pytest.mark.slow
def test_the_reference_has_every_option_in_its_panel_with_its_default(name: str) -> None:
    command = ROOT.commands[name]  # type: ignore[attr-defined]
    section = _section(render(), name)
    parsed = parse_help(command.help)
    assert parsed.summary in _plain(section)
    headings = re.findall(r"^### (.+)$", section, re.M)
    grouped = panels(command)
    assert [h for h in headings if h not in ("Examples", "Exit codes")] == list(grouped)
    for title, params in grouped.items():
        table = re.search(rf"^### {re.escape(title)}\n(.*?)(?=^### |\Z)", section, re.S | re.M).group(1)
        for param in params:
            name_cell = param.name.upper() if param.param_type_name == "argument" else param.opts[0]
            row = next((r for r in table.splitlines() if r.startswith(f"| `{name_cell}")), None)
            assert row, f"mos {name}: {name_cell} is not in the {title} table"
            default = default_text(param)
            if default is not None:
                assert default in _plain(row), (row, default)
    for example in parsed.examples:
        assert f"\n{example}\n" in section
    for code, _ in parsed.exit_codes:
        assert re.search(rf"^\| {code} \|", section, re.M), code
