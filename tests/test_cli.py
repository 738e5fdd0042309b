"""The `mos` command line as a user runs it: real subprocesses on fabricated dataset trees."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("torch")


def mos(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mos", *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def _tone(path: Path, i: int, seconds: float = 0.5, rate: int = 16000) -> None:
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t) + 0.02 * (i % 3) * np.random.default_rng(i).standard_normal(len(t))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x.astype(np.float32), rate)


def make_musiceval_tree(root: Path, n_train: int = 16, n_dev: int = 8) -> Path:
    (root / "sets").mkdir(parents=True)
    prompts = {f"P{p:03d}": f"a calm piano piece number {p} with soft strings" for p in range(4)}
    (root / "prompt_info.txt").write_text("".join(f"{k}\t{v}\n" for k, v in prompts.items()))
    for split, n, off in (("train", n_train, 0), ("dev", n_dev, 100)):
        lines = []
        for i in range(n):
            name = f"audiomos2025-track1-S{(i % 4):03d}-{off + i}_P{(i % 4):03d}.wav"
            _tone(root / "wav" / name, off + i)
            lines.append(f"{name},{1 + (i % 5) * 0.9:.2f},{1 + ((i * 3) % 5) * 0.8:.2f}")
        (root / "sets" / f"{split}_mos_list.txt").write_text("\n".join(lines) + "\n")
    return root


def make_xacle_tree(root: Path, n_train: int = 16, n_val: int = 8) -> Path:
    tree = root / "XACLE_dataset"
    (tree / "meta_data").mkdir(parents=True)
    for split, n, off in (("train", n_train, 0), ("validation", n_val, 100)):
        rows = ["wav_file_name,text,average_score"]
        for i in range(n):
            name = f"{off + i:05d}.wav"
            _tone(tree / "wav" / split / name, off + i)
            rows.append(f'{name},"A tone, number {i % 3}, hums",{(i * 7) % 11 * 0.9:.2f}')
        (tree / "meta_data" / f"{split}_average.csv").write_text("\n".join(rows) + "\n")
    return root


def test_version_and_help(tmp_path: Path) -> None:
    out = mos("--version", cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.startswith("mos ")
    for cmd in ("train", "eval"):
        h = mos(cmd, "--help", cwd=tmp_path)
        assert h.returncode == 0 and "Example" in h.stdout, h.stdout


def test_train_on_xacle_tree(tmp_path: Path) -> None:
    make_xacle_tree(tmp_path / "data")
    out = mos("train", "--data", str(tmp_path / "data"), "--name", "x", "--epochs", "2", "--batch-size", "4",
              cwd=tmp_path)
    assert out.returncode == 0, out.stderr + out.stdout
    assert "EPOCH 2:" in out.stdout and "score: SRCC=" in out.stdout
    assert (tmp_path / "runs" / "x" / "checkpoints" / "best.pt").is_file()
    assert "run folder: runs/x" in out.stdout


def test_train_on_musiceval_tree_audio_only_and_eval(tmp_path: Path) -> None:
    make_musiceval_tree(tmp_path / "me")
    out = mos("train", str(tmp_path / "me"), "--name", "me", "--epochs", "1", "--batch-size", "4",
              "--text-encoder", "none", cwd=tmp_path)
    assert out.returncode == 0, out.stderr + out.stdout
    assert "overall: SRCC=" in out.stdout and "textual: SRCC=" in out.stdout
    assert "[SYSTEM]" in out.stdout  # MusicEval has systems: system-level metrics are reported
    # mos eval on the run's validation predictions written as an AudioMOS answer file
    rows = (tmp_path / "runs" / "me" / "val_predictions.csv").read_text().splitlines()[1:]
    answer = tmp_path / "answer.txt"
    answer.write_text("".join(f"{r.split(',')[0][:-4]},{r.split(',')[1]},{r.split(',')[3]}\n" for r in rows))
    ev = mos("eval", str(answer), str(tmp_path / "me" / "sets" / "dev_mos_list.txt"), cwd=tmp_path)
    assert ev.returncode == 0, ev.stderr
    assert "==========UTTERANCE===========" in ev.stdout and "[SYSTEM] Spearman rank correlation coefficient=" in ev.stdout


def test_bad_data_is_one_line_error(tmp_path: Path) -> None:
    make_xacle_tree(tmp_path / "data")
    csv = tmp_path / "data" / "XACLE_dataset" / "meta_data" / "train_average.csv"
    lines = csv.read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 1)[0] + ",abc"
    csv.write_text("\n".join(lines) + "\n")
    out = mos("train", str(tmp_path / "data"), "--epochs", "1", cwd=tmp_path)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    err = out.stderr.strip().splitlines()
    assert len(err) == 1 and "train_average.csv:4" in err[0] and "abc" in err[0], out.stderr
