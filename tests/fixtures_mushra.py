"""The MUSHRA ratings table in tests: the real one (public MUSHRA listening test of speech codecs,
BenjSta/bernoulli-var-speech-codec, CC-BY-4.0) when it sits beside the repository, and a tiny one
in the same layout that is always there (`ratings.csv`: path,signal,system,mean_score,n_ratings,
ratings; clip names such as ref.wav repeat in every audio/stim_XX/ folder)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

COLUMNS = "path=path,target:mushra=mean_score,system=system"


def _find_real() -> Path | None:
    for parent in Path(__file__).resolve().parents:
        folder = parent / "shared" / "data" / "mushra-speech-codec"
        if (folder / "ratings.csv").is_file():
            return folder
    return None


REAL_MUSHRA: Path | None = _find_real()
needs_real_mushra = pytest.mark.skipif(
    REAL_MUSHRA is None,
    reason="the real MUSHRA data (shared/data/mushra-speech-codec beside the repository) is absent; "
    "the tiny_mushra fixture covers the same code path",
)

# name in every stim_XX folder -> (system, base rating)
TINY_SYSTEMS = {"ref.wav": ("Reference", 92.0), "codec_a.wav": ("Codec A 6 kbps", 41.0),
                "codec_b.wav": ("Codec B 12 kbps", 63.0)}


def make_tiny_mushra(root: Path, stimuli: int = 4, seconds: float = 0.3) -> Path:
    """root/ratings.csv and root/audio/stim_XX/{ref,codec_a,codec_b}.wav; returns the table."""
    rng = np.random.default_rng(7)
    rows = []
    for s in range(1, stimuli + 1):
        for k, (name, (system, base)) in enumerate(TINY_SYSTEMS.items()):
            rel = f"audio/stim_{s:02d}/{name}"
            t = np.arange(int(16000 * seconds)) / 16000
            wave = 0.2 * np.sin(2 * np.pi * (150 + 40 * s + 90 * k) * t) + 0.01 * rng.standard_normal(len(t))
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            sf.write(root / rel, wave.astype(np.float32), 16000)
            ratings = [float(np.clip(round(base + 7 * s - 10 + rng.normal(0, 8)), 0, 100)) for _ in range(5)]
            rows.append([rel, f"VCTK_p{225 + s}_00{s}", system, f"{np.mean(ratings):.3f}", len(ratings),
                         json.dumps(ratings)])
    table = root / "ratings.csv"
    with table.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "signal", "system", "mean_score", "n_ratings", "ratings"])
        w.writerows(rows)
    return table


@pytest.fixture
def tiny_mushra(tmp_path: Path) -> Path:
    """A tiny ratings.csv in the real table's layout (4 stimuli x 3 systems, names repeated)."""
    return make_tiny_mushra(tmp_path / "mushra")


def read_table(table: Path) -> list[dict[str, str]]:
    with table.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))
