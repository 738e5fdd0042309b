"""The torch-free claim: a fresh venv with only the `[cpu]` extra (no torch) scores a folder with `mos score`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import mos
from fixtures_runtime import make_folder, read_csv_dicts, text_bundle  # noqa: F401

pytestmark = pytest.mark.slow

REPO = Path(mos.__file__).resolve().parents[1]
NETWORK_WORDS = ("Could not find a version", "No matching distribution", "Failed to establish", "Temporary failure",
                 "Network is unreachable", "ConnectionError", "Max retries exceeded")


def _source_copy(dst: Path) -> Path:
    """pyproject + README + the package, so pip's build leaves the working tree untouched."""
    dst.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / name).is_file():
            shutil.copy2(REPO / name, dst / name)
    shutil.copytree(REPO / "mos", dst / "mos", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dst


def _pip_for(venv: Path) -> list[str]:
    """A fresh venv and the pip command that installs into it: this interpreter's own pip with
    --python (pip 22.3+), so the venv needs no pip of its own (ensurepip takes a few seconds),
    else the venv's pip."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        outer = tuple(int(x) for x in version("pip").split(".")[:2])
    except (PackageNotFoundError, ValueError):
        outer = (0, 0)
    if outer >= (22, 3):
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        return [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python")]
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    return [str(venv / "bin" / "python"), "-m", "pip"]


@pytest.mark.slow
def test_mos_score_runs_where_torch_is_not_installed(tmp_path: Path, text_bundle) -> None:  # noqa: F811
    source = _source_copy(tmp_path / "src")
    venv = tmp_path / "venv"
    pip = _pip_for(venv)
    python, mos_bin = venv / "bin" / "python", venv / "bin" / "mos"
    # --no-compile: no .pyc for all of numpy/scipy/onnxruntime up front (what runs compiles on import)
    install = subprocess.run([*pip, "install", "--quiet", "--no-compile", f"{source}[cpu]"],
                             capture_output=True, text=True)
    if install.returncode != 0 and any(w in install.stderr for w in NETWORK_WORDS):
        pytest.skip(f"no package index reachable: {install.stderr.strip().splitlines()[-1]}")
    assert install.returncode == 0, install.stderr

    for heavy in ("torch", "torchaudio", "transformers"):
        probe = subprocess.run([str(python), "-c", f"import {heavy}"], capture_output=True, text=True)
        assert probe.returncode != 0 and "ModuleNotFoundError" in probe.stderr, heavy
    loaded = subprocess.run(
        [str(python), "-c", "import sys, mos.runtime, mos.runtime.command, mos.cli; "
         "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers')))"],
        capture_output=True, text=True,
    )
    assert loaded.returncode == 0 and loaded.stdout.strip() == "[]", loaded.stderr

    folder, captions = make_folder(tmp_path, 5)
    out = tmp_path / "scores.csv"
    run = subprocess.run(
        [str(mos_bin), "score", str(folder), "--bundle", str(text_bundle.path), "--captions", str(captions), "--out", str(out)],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    rows = read_csv_dicts(out)
    assert sorted(r["id"] for r in rows) == [f"clip_{i:03d}.wav" for i in range(5)]
    assert all(r["status"] == "ok" and 1.0 <= float(r["overall"]) <= 5.0 for r in rows)
    assert "provider CPUExecutionProvider" in run.stderr
