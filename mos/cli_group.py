"""How `mos` builds its command line from plain functions: one table names every command's
function ("module:function"), a command's module is imported only when that command runs or
shows its help, and help pages read the same under every supported typer (arguments in capitals
in the usage line, no value type after a flag).

mos.cli holds the table (COMMANDS) and the app; mos.cli_docs writes the reference from the same
commands.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup


def load_function(target: str) -> Callable[..., Any]:
    """'mos.runtime.command:score' -> the function (its module imported now)."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def _no_type_after_flags(params: Iterable[Any]) -> None:
    """A flag takes no value, so its help row shows no value type (typer 0.29 writes `<bool>`)."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""


class _BareHelpFlag:
    """`--help` is a flag too: no value type after it."""

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)  # type: ignore[misc]
        if option is not None:
            _no_type_after_flags([option])
        return option


class MosCommand(_BareHelpFlag, TyperCommand):
    """A `mos` command: typer's, with arguments named in capitals (`INPUTS`) in the usage line
    (`[DATA]` when optional; typer 0.27+ writes `{inputs}`), the Arguments panel and errors, and
    no value type after flags."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _no_type_after_flags(self.params)
        for param in self.params:
            if param.param_type_name == "argument" and param.metavar is None and param.name:
                param.metavar = param.name.upper()

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name != "argument":
                pieces.extend(param.get_usage_pieces(ctx))
                continue
            name = (param.metavar or param.name or "").upper() + ("..." if param.nargs != 1 else "")
            pieces.append(name if param.required else f"[{name}]")
        return pieces


def build_command(name: str, function: Callable[..., Any]) -> Any:
    """The click command typer makes of `function`, named `name` (a MosCommand)."""
    single = typer.Typer(add_completion=False)
    single.command(name, cls=MosCommand)(function)
    return typer.main.get_command(single)


class CommandTable(Mapping[str, Any]):
    """Command name -> click command, each built from its "module:function" on first use."""

    def __init__(self, targets: Mapping[str, str]) -> None:
        self.targets = dict(targets)
        self._built: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._built:
            target = self.targets[name]  # KeyError: no such command
            try:
                self._built[name] = build_command(name, load_function(target))
            except KeyError as exc:  # not "no such command": a real error while importing it
                raise RuntimeError(f"mos {name}: loading {target} failed: {exc!r}") from exc
        return self._built[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.targets)

    def __len__(self) -> int:
        return len(self.targets)


class CommandGroup(_BareHelpFlag, TyperGroup):
    """A typer group whose commands come from `table` (name -> "module:function"), in its order,
    each imported only when used. Subclass it with the table: `class Mos(CommandGroup): table = ...`."""

    table: Mapping[str, str] = {}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.commands = CommandTable(self.table)
        _no_type_after_flags(self.params)

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)  # the names only: listing imports nothing
