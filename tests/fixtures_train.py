"""Helpers for the trainer tests: a tiny demo tree, a MUSHRA-like ratings table, a quiet console."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import soundfile as sf
from rich.console import Console

from mos.data.demo import DemoConfig, build_demo

TINY_DEMO = DemoConfig(n_train=32, n_validation=12, seconds=0.5)
TABLE_COLUMNS = "path=path,target:mushra=mean_score,system=system,range:mushra=0:100"
SYSTEMS = ("clean", "light", "medium", "heavy")


def tiny_demo(root: Path) -> Path:
    """An XACLE-layout demo tree (32 train, 12 validation clips of 0.5 s); returns its parent."""
    build_demo(root, TINY_DEMO)
    return root


def make_table(root: Path, n_signals: int = 6, seconds: float = 0.5, rate: int = 16000) -> Path:
    """A ratings table laid out like the MUSHRA set: `audio/stim_XX/<system>.wav`, the same file
    names in every folder; `signal` = the utterance, `system` = the degradation; the score
    falls with the noise each system adds. Returns ratings.csv."""
    rows = [("path", "signal", "system", "mean_score")]
    t = np.arange(int(seconds * rate)) / rate
    for s in range(n_signals):
        rng = np.random.default_rng(s)
        clean = 0.3 * np.sin(2 * np.pi * (180 + 40 * s) * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
        for k, system in enumerate(SYSTEMS):
            noise = 0.05 * k * rng.standard_normal(len(t))
            rel = f"audio/stim_{s:02d}/{system}.wav"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            sf.write(root / rel, (clean + noise).astype(np.float32), rate)
            rows.append((rel, f"sig{s:02d}", system, f"{90 - 25 * k + 3 * (s % 3):.1f}"))
    table = root / "ratings.csv"
    with table.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    return table


def tiny_musiceval(root: Path, systems: int = 4, prompts: int = 8, seconds: float = 0.5, rate: int = 16000) -> Path:
    """A MusicEval-layout tree (`wav/`, `sets/{train,dev}_mos_list.txt`, `prompt_info.txt`): each
    system adds more noise (overall falls with it), each prompt names a pitch and a clip plays it
    or a wrong one (textual is high when it matches). Prompt 0 and 1 are the dev set. Returns the tree."""
    tree = root / "MusicEval-phase1"
    (tree / "wav").mkdir(parents=True, exist_ok=True)
    (tree / "sets").mkdir(exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    lines: dict[str, list[str]] = {"train": [], "dev": []}
    prompt_rows = []
    for p in range(prompts):
        pitch = 200 + 60 * p
        prompt_rows.append(f"P{p:03d}\ta steady tone at {pitch} hertz, {'bright' if p % 2 else 'soft'}")
        for s in range(systems):
            rng = np.random.default_rng(100 * p + s)
            matches = (p + s) % 3 != 0
            freq = pitch if matches else pitch * 1.5
            audio = 0.3 * np.sin(2 * np.pi * freq * t) + 0.06 * s * rng.standard_normal(len(t))
            name = f"audiomos2025-track1-S{s:03d}_P{p:03d}.wav"
            sf.write(tree / "wav" / name, audio.astype(np.float32), rate)
            overall = 4.6 - 0.9 * s + 0.1 * (p % 3)
            textual = 4.2 if matches else 1.8
            lines["dev" if p < 2 else "train"].append(f"{name},{overall:.2f},{textual:.2f}")
    for split, rows in lines.items():
        (tree / "sets" / f"{split}_mos_list.txt").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (tree / "prompt_info.txt").write_text("\n".join(prompt_rows) + "\n", encoding="utf-8")
    return tree


def quiet() -> tuple[Console, io.StringIO]:
    """A console that records what the trainer prints."""
    buf = io.StringIO()
    return Console(file=buf, width=300, highlight=False, soft_wrap=True), buf


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))
