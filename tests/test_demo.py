"""Tests for the built-in demo set: XACLE layout, determinism, idempotence and honest targets."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mos.data.demo import CLASS_NAMES, MARKER, DemoConfig, build_demo

SMALL = DemoConfig(n_train=24, n_validation=8, seconds=1.0)


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def _params(out: Path, split: str) -> list[dict]:
    lines = (out / "meta_data" / f"{split}_params.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_demo(tmp_path_factory.mktemp("a"), SMALL)


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_demo(tmp_path_factory.mktemp("full"), DemoConfig(seconds=1.0))


def test_layout_and_headers(small: Path) -> None:
    assert small.name == "XACLE_dataset"
    assert (small / "DEMO.md").read_text().startswith("# Demo set")
    assert json.loads((small / MARKER).read_text())["config"]["n_train"] == 24
    first = {"train": 0, "validation": 24}
    for split, count in (("train", 24), ("validation", 8)):
        names = sorted(p.name for p in (small / "wav" / split).iterdir())
        assert names == [f"{first[split] + k:05d}.wav" for k in range(count)]
        info = sf.info(str(small / "wav" / split / names[0]))
        assert (info.samplerate, info.channels, info.subtype, info.frames) == (16000, 1, "PCM_16", 16000)

        header, rows = _read_csv(small / "meta_data" / f"{split}_average.csv")
        assert header == ["wav_file_name", "text", "average_score", "quality_score"]
        assert [r["wav_file_name"] for r in rows] == names
        assert all(8 <= len(r["text"].split()) <= 14 for r in rows)

        header, listener_rows = _read_csv(small / "meta_data" / f"{split}.csv")
        assert header == ["wav_file_name", "text", "score", "listener"]
        assert len(listener_rows) == count * SMALL.listeners
        by_clip: dict[str, list[str]] = {}
        for r in listener_rows:
            by_clip.setdefault(r["wav_file_name"], []).append(r["listener"])
        assert all(len(set(ids)) == SMALL.listeners for ids in by_clip.values())  # no listener twice on a clip
        assert len({i for ids in by_clip.values() for i in ids}) > SMALL.listeners  # drawn from a larger pool
        assert len(_params(small, split)) == count
    leftovers = [p.name for p in small.parent.iterdir() if p.name != "XACLE_dataset"]
    assert leftovers == []


def test_scores_in_range_and_listener_means(small: Path) -> None:
    for split in ("train", "validation"):
        _, rows = _read_csv(small / "meta_data" / f"{split}_average.csv")
        _, listener_rows = _read_csv(small / "meta_data" / f"{split}.csv")
        by_clip: dict[str, list[float]] = {}
        for r in listener_rows:
            score = float(r["score"])
            assert 0.0 <= score <= 10.0 and score * 2 == round(score * 2)
            by_clip.setdefault(r["wav_file_name"], []).append(score)
        for r in rows:
            avg, quality = float(r["average_score"]), float(r["quality_score"])
            assert 0.0 <= avg <= 10.0 and 0.0 <= quality <= 10.0
            assert r["average_score"] == f"{avg:.2f}"
            ratings = by_clip[r["wav_file_name"]]
            assert len(ratings) == SMALL.listeners
            assert abs(np.mean(ratings) - avg) <= 0.01


def test_deterministic(small: Path, tmp_path: Path) -> None:
    other = build_demo(tmp_path, SMALL)
    files = sorted(p.relative_to(small) for p in small.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(other) for p in other.rglob("*") if p.is_file())
    for rel in files:
        assert (small / rel).read_bytes() == (other / rel).read_bytes(), rel


def test_idempotent_and_rebuilds_incomplete(tmp_path: Path) -> None:
    out = build_demo(tmp_path, SMALL)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert build_demo(tmp_path, SMALL) == out
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == stamps

    # A folder without a matching marker (interrupted, or another config) is rebuilt from scratch.
    (out / MARKER).unlink()
    (out / "stray.txt").write_text("x")
    wav = out / "wav" / "train" / "00000.wav"
    original = wav.read_bytes()
    wav.write_bytes(b"broken")
    assert build_demo(tmp_path, SMALL) == out
    assert (out / MARKER).exists() and not (out / "stray.txt").exists()
    assert wav.read_bytes() == original

    smaller = DemoConfig(n_train=8, n_validation=4, seconds=1.0)
    build_demo(tmp_path, smaller)
    assert len(list((out / "wav" / "train").iterdir())) == 8
    assert [p.name for p in tmp_path.iterdir()] == ["XACLE_dataset"]


@pytest.mark.slow
def test_targets_follow_the_audio(full: Path) -> None:
    for split, count in (("train", 320), ("validation", 96)):
        params = _params(full, split)
        assert len(params) == count
        caption_counts = Counter(p["caption_class"] for p in params)
        assert set(caption_counts) == set(CLASS_NAMES)
        assert max(caption_counts.values()) - min(caption_counts.values()) <= 1

        align = np.array([p["average_score"] for p in params])
        quality = np.array([p["quality_score"] for p in params])
        assert align.std() > 1.5 and quality.std() > 1.5
        assert abs(np.corrcoef(align, quality)[0, 1]) < 0.5

        match = np.array([p["match"] for p in params])
        mismatch = np.array([p["condition"] == "mismatch" for p in params])
        assert align[match].mean() > align[mismatch].mean() + 4.0

        clean = np.array([(p["snr_db"] is None or p["snr_db"] > 30) and p["clip_level"] is None
                          and p["lowpass_hz"] is None for p in params])
        noisy = np.array([p["snr_db"] is not None and p["snr_db"] < 10 for p in params])
        assert clean.sum() >= 5 and noisy.sum() >= 5
        assert quality[clean].mean() > quality[noisy].mean() + 2.0
