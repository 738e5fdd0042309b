"""The wheel that the README tells users to build (`pip wheel --no-deps .`) is the project's own:
distribution `mos-toolkit` (PyPI's `mos` is someone else's project), the `mos` package and
command, the Apache-2.0 licence text, and a runtime-only dependency list (no torch). And the
repository stands alone: the documents it refers to are in it."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from test_runtime_torchfree import NETWORK_WORDS, _source_copy

pytestmark = pytest.mark.slow


@pytest.mark.slow
def test_wheel_is_mos_toolkit_with_its_license_and_the_mos_command(tmp_path: Path) -> None:
    source = _source_copy(tmp_path / "src")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", str(source), "-w",
                            str(tmp_path / "dist")], capture_output=True, text=True)
    if built.returncode != 0 and any(w in built.stderr for w in NETWORK_WORDS):
        pytest.skip(f"no package index reachable for the build backend: {built.stderr.strip().splitlines()[-1]}")
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    assert wheel.name.startswith("mos_toolkit-")

    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(z.read(f"{info}/METADATA").decode())
        entry_points = z.read(f"{info}/entry_points.txt").decode()
        licence = z.read(next(n for n in names if n.startswith(f"{info}/") and n.endswith("LICENSE"))).decode()

    assert meta["Name"] == "mos-toolkit"
    assert meta["License-Expression"] == "Apache-2.0"
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence and "END OF TERMS AND CONDITIONS" in licence
    assert "mos = mos.cli:main" in entry_points
    assert {n.split("/")[0] for n in names if not n.startswith(info)} == {"mos"}
    recipes = {n for n in names if n.startswith("mos/trainer/recipes/") and n.endswith(".toml")}
    assert {"musiceval-baseline", "xacle-audiomos", "xacle-clap"} <= {n.rsplit("/", 1)[1][:-5] for n in recipes}
    required = [r for r in meta.get_all("Requires-Dist") if "extra ==" not in r]
    assert required and not any(r.split("<")[0].split(">")[0].split("=")[0].strip() in ("torch", "torchaudio", "transformers")
                                for r in required)


REPO = Path(__file__).resolve().parents[1]
TEXT_FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "benchmarks").rglob("*.md")),
              *sorted((REPO / "mos").rglob("*.py")), *sorted((REPO / "benchmarks").rglob("*.py"))]


def test_the_project_stands_alone() -> None:
    """Every document the project points to is in it; nothing points at design notes or data
    that only existed next to the repository."""
    assert (REPO / "docs" / "design.md").is_file() and (REPO / "docs" / "onnx-notes.md").is_file()
    missing, outside = [], []
    for path in TEXT_FILES:
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(REPO).as_posix()
        missing += [f"{rel}: {ref}" for ref in re.findall(r"\bdocs/[\w.-]+\.md", text) if not (REPO / ref).is_file()]
        outside += [f"{rel}: {m}" for m in re.findall(r"DESIGN\.md|ONNX-FINDINGS\.md", text)]
        if path.suffix == ".md" or rel.startswith("mos/"):
            outside += [f"{rel}: {m}" for m in re.findall(r"\.\./shared\b", text)]
    assert missing == [] and outside == []


def test_ci_runs_the_readmes_test_command() -> None:
    """.ci/run runs the README's test command to the letter (and docs/install.md shows the same)."""
    ci = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if line.startswith("python3 -m venv")]
    assert len(ci) == 1 and "-m pytest" in ci[0]
    for doc in ("README.md", "docs/install.md"):
        assert ci[0] in (REPO / doc).read_text().splitlines(), doc
