"""Recipes: named presets of TrainConfig settings, shipped as `<name>.toml` beside this module
(`mos train --recipe NAME`).

A recipe's top-level keys are TrainConfig fields. Its optional `[requires]` table names the
settings a user must give (on the command line or in --config), each with what it is and where
to get it; `missing` turns the absent ones into one line.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from importlib import resources
from typing import Any

from mos.errors import MosError
from mos.trainer.config import TrainConfig, parse_toml


@dataclass
class Recipe:
    name: str
    text: str  # the TOML file as shipped, comments included
    settings: dict[str, Any]  # TrainConfig fields
    requires: dict[str, str]  # TrainConfig field -> what the user must give and where to get it


def known_recipes() -> list[str]:
    return sorted(f.name[: -len(".toml")] for f in resources.files(__name__).iterdir() if f.name.endswith(".toml"))


def load_recipe(name: str) -> Recipe:
    """The shipped recipe `name`, or a one-line MosError listing the known ones."""
    known = known_recipes()
    if name not in known:
        raise MosError(f"--recipe {name}: no such recipe (known: {', '.join(known)})")
    text = resources.files(__name__).joinpath(f"{name}.toml").read_text(encoding="utf-8")
    raw = parse_toml(text)
    requires = raw.pop("requires", {})
    source = f"recipe {name}"
    TrainConfig.check_keys(raw, source)
    TrainConfig.check_keys(requires, f"{source} [requires]")
    return Recipe(name, text, raw, requires)


def flag_name(field: str) -> str:
    """How the user gives a TrainConfig field on the command line."""
    return "DATA" if field == "data" else "--" + field.replace("_", "-")


def missing(recipe: Recipe, given: Collection[str]) -> str | None:
    """One line saying what `recipe` still needs beyond the settings `given`, or None."""
    absent = [f"{flag_name(k)}, {why}" for k, why in recipe.requires.items() if k not in given]
    if not absent:
        return None
    return f"--recipe {recipe.name} needs " + "; and ".join(absent)


def to_toml(settings: dict[str, Any]) -> str:
    """TrainConfig settings as TOML lines (a --config file); unset (None) values are left out."""
    return "".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items() if v is not None)
