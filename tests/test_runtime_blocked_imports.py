"""The torch-free claim, offline: `python -m mos score` in a subprocess where importing torch,
torchaudio, transformers, onnx or onnxscript (or any of their submodules) fails, on a real
exported bundle and real wav files, gives the scores the in-process run gives.

The slow test in test_runtime_torchfree.py installs the package into a fresh venv (it needs the
package index); this one needs no network: a `sitecustomize` module put first on PYTHONPATH adds
an import hook that refuses those packages, as if they were not installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures_runtime import make_folder, read_csv_dicts, text_bundle  # noqa: F401
from test_runtime_cli import FAST, run_score_cli

REPO = Path(__file__).resolve().parents[1]
BLOCKED = ("torch", "torchaudio", "transformers", "onnx", "onnxscript")
BLOCKER = f'''"""Test hook: the packages in BLOCKED cannot be imported, as where they are not installed."""
import sys

BLOCKED = {BLOCKED!r}


class _Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the torch-free test)", name=name)
        return None


sys.meta_path.insert(0, _Blocked())
'''


def blocked_env(root: Path) -> dict[str, str]:
    """The environment of a Python whose `sitecustomize` blocks BLOCKED; this checkout first on its path."""
    hook = root / "blocker"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(BLOCKER, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = os.pathsep.join([str(hook), str(REPO)])
    return env


def test_the_blocker_blocks_every_heavy_package_and_its_submodules(tmp_path: Path) -> None:
    env = blocked_env(tmp_path)
    names = [*BLOCKED, "torch.nn", "torch.onnx", "transformers.models", "onnx.helper", "onnxscript.ir"]
    code = ("import importlib\n"
            f"for name in {names!r}:\n"
            "    try:\n"
            "        importlib.import_module(name)\n"
            "        print(name, 'imported')\n"
            "    except ModuleNotFoundError as exc:\n"
            "        print(name, 'blocked' if 'blocked by the torch-free test' in str(exc) else exc)\n"
            "import numpy, onnxruntime, soundfile, tokenizers, mos\n"
            "print('mos from', mos.__file__)\n")
    probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert probe.returncode == 0, probe.stderr
    lines = probe.stdout.splitlines()
    assert lines[:-1] == [f"{name} blocked" for name in names]
    assert lines[-1] == f"mos from {REPO / 'mos' / '__init__.py'}"  # this checkout, not an installed copy
    # And the plain `import torch` a user would type fails there too.
    plain = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True, text=True, env=env)
    assert plain.returncode != 0 and "ModuleNotFoundError: No module named 'torch'" in plain.stderr


@pytest.mark.slow
def test_mos_score_without_torch_transformers_or_onnx_gives_the_in_process_scores(tmp_path: Path,
                                                                                 text_bundle) -> None:  # noqa: F811
    folder, captions = make_folder(tmp_path, 6)
    args = [str(folder), "--captions", str(captions), "--bundle", str(text_bundle.path), *FAST]
    blocked_out = tmp_path / "blocked.csv"
    run = subprocess.run([sys.executable, "-m", "mos", "score", *args, "--out", str(blocked_out)],
                         capture_output=True, text=True, env=blocked_env(tmp_path), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "scored 6, failed 0" in run.stderr and "Traceback" not in run.stderr

    here_out = tmp_path / "in_process.csv"
    code, _, stderr = run_score_cli(*args, "--out", here_out)
    assert code == 0, stderr
    blocked, here = read_csv_dicts(blocked_out), read_csv_dicts(here_out)
    assert [r["id"] for r in blocked] == [f"clip_{i:03d}.wav" for i in range(6)]
    assert all(r["status"] == "ok" and r["caption"] for r in blocked)
    assert blocked == here  # every column, every score as written, the same
