"""The `mos` command line as a user runs it: real subprocesses on fabricated dataset trees."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mos.data.musiceval import split_clip_name
from mos.metrics import Metrics, compute_metrics, system_level

pytest.importorskip("torch")


def mos(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mos", *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def _tone(path: Path, i: int, seconds: float = 0.5, rate: int = 16000) -> None:
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t) + 0.02 * (i % 3) * np.random.default_rng(i).standard_normal(len(t))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x.astype(np.float32), rate)


def make_musiceval_tree(root: Path, n_train: int = 16, n_dev: int = 8) -> Path:
    """MusicEval's layout and names (`audiomos2025-track1-S002_P044.wav`: system S002, prompt
    P044): 4 systems, each with several clips in both splits, so system level means something."""
    (root / "sets").mkdir(parents=True)
    lines_by_split: dict[str, list[str]] = {}
    prompts = {}
    for split, n, off in (("train", n_train, 0), ("dev", n_dev, 100)):
        lines = []
        for i in range(n):
            name = f"audiomos2025-track1-S{(i % 4):03d}_P{off + i:03d}.wav"
            prompts[f"P{off + i:03d}"] = f"a calm piano piece number {off + i} with soft strings"
            _tone(root / "wav" / name, off + i)
            lines.append(f"{name},{1 + (i % 5) * 0.9:.2f},{1 + ((i * 3) % 5) * 0.8:.2f}")
        lines_by_split[split] = lines
        (root / "sets" / f"{split}_mos_list.txt").write_text("\n".join(lines) + "\n")
    (root / "prompt_info.txt").write_text("".join(f"{k}\t{v}\n" for k, v in prompts.items()))
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


@pytest.mark.slow
def test_version_and_help(tmp_path: Path) -> None:
    out = mos("--version", cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.startswith("mos ")
    for cmd in ("train", "eval"):
        h = mos(cmd, "--help", cwd=tmp_path)
        assert h.returncode == 0 and "Example" in h.stdout, h.stdout


@pytest.mark.slow
def test_train_on_xacle_tree(tmp_path: Path) -> None:
    make_xacle_tree(tmp_path / "data")
    out = mos("train", "--data", str(tmp_path / "data"), "--name", "x", "--epochs", "2", "--batch-size", "4",
              cwd=tmp_path)
    assert out.returncode == 0, out.stderr + out.stdout
    assert "EPOCH 2:" in out.stdout and "score: SRCC=" in out.stdout
    assert (tmp_path / "runs" / "x" / "checkpoints" / "best.pt").is_file()
    assert "run folder: runs/x" in out.stdout


def _expected_system_level(predictions: Path, truth: dict[str, tuple[float, float]] | None = None) -> dict[str, Metrics]:
    """System-level metrics computed by hand from a trainer prediction file: mean prediction per
    system against the mean rating of its clips (or `truth`: system -> (overall, textual))."""
    rows = list(csv.DictReader(predictions.open(encoding="utf-8")))
    systems = [split_clip_name(r["id"])[0] for r in rows]
    out = {}
    for col, target in enumerate(("overall", "textual")):
        p = np.array([float(r[target]) for r in rows])
        t = np.array([float(r[f"true_{target}"]) for r in rows])
        sys_p, sys_t, names = system_level(p, t, systems)
        if truth is not None:
            sys_t = np.array([truth[s][col] for s in names])
        out[target] = compute_metrics(sys_p, sys_t)
    return out


@pytest.mark.slow
def test_train_on_musiceval_tree_audio_only_and_eval(tmp_path: Path) -> None:
    make_musiceval_tree(tmp_path / "me")
    out = mos("train", str(tmp_path / "me"), "--name", "me", "--epochs", "1", "--batch-size", "4",
              "--text-encoder", "none", cwd=tmp_path)
    assert out.returncode == 0, out.stderr + out.stdout
    assert "overall: SRCC=" in out.stdout and "textual: SRCC=" in out.stdout
    assert "[SYSTEM]" in out.stdout  # MusicEval has systems: system-level metrics are reported
    predictions = tmp_path / "runs" / "me" / "val_predictions.csv"
    rows = list(csv.DictReader(predictions.open(encoding="utf-8")))
    assert len({split_clip_name(r["id"])[0] for r in rows}) == 4  # 8 dev clips of 4 systems
    dev_list = tmp_path / "me" / "sets" / "dev_mos_list.txt"
    expected = _expected_system_level(predictions)
    # the trainer's prediction file as it is, and the same written as an AudioMOS answer file
    answer = tmp_path / "answer.txt"
    answer.write_text("".join(f"{r['id'][:-4]},{r['overall']},{r['textual']}\n" for r in rows))
    for pred in (predictions, answer):
        ev = mos("eval", str(pred), str(dev_list), "--json", str(tmp_path / "eval.json"), cwd=tmp_path)
        assert ev.returncode == 0, ev.stderr
        system = ev.stdout.split("==========SYSTEM===========")[1]
        for target, name in (("overall", "OVERALL QUALITY"), ("textual", "TEXTUAL ALIGNMENT")):
            m = expected[target]
            block = system.split(f"======{name}=======")[1]
            assert f"[SYSTEM] Test error= {m.mse:f}" in block and f"[SYSTEM] Linear correlation coefficient= {m.lcc:f}" in block
            assert f"[SYSTEM] Spearman rank correlation coefficient= {m.srcc:f}" in block
        assert "mean rating of its clips" in ev.stdout
        doc = json.loads((tmp_path / "eval.json").read_text())
        assert doc["results"]["overall"]["system"]["n"] == 4 and doc["results"]["overall"]["utterance"]["n"] == 8
    # with the tree's system_mos file, system-level truth comes from it (as the baseline's predict.py)
    truth = {"S000": (3.9, 2.1), "S001": (2.2, 3.3), "S002": (3.1, 4.6), "S003": (1.7, 2.8)}
    system_mos = tmp_path / "me" / "system_mos" / "system_mos_phase1.csv"
    system_mos.parent.mkdir()
    system_mos.write_text("".join(f"{s},{o},{t}\n" for s, (o, t) in truth.items()))
    ev = mos("eval", str(answer), str(dev_list), cwd=tmp_path)
    assert ev.returncode == 0, ev.stderr
    m = _expected_system_level(predictions, truth)["overall"]
    assert f"[SYSTEM] Test error= {m.mse:f}" in ev.stdout and "system_mos_phase1.csv" in ev.stdout


@pytest.mark.slow
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
