"""The benchmark workload: deterministic speech-like clips written as wav files (so decoding is
real), each with its own caption of about 12 words, plus a captions CSV `mos score` reads."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from mos.audio import AUDIO_EXTENSIONS
from mos.errors import MosError

# Caption slots; a caption is one word from each, chosen by a mixed-radix code of the clip index,
# so captions are distinct for up to prod(len(slot)) clips and about 12 words long.
_SLOTS: tuple[tuple[str, ...], ...] = (
    ("a", "one", "the", "some"),
    ("calm", "tired", "cheerful", "nervous", "young", "elderly", "distant", "hurried"),
    ("woman", "man", "child", "teacher", "announcer", "reporter", "guide", "caller", "singer", "doctor"),
    ("speaks", "reads", "talks", "whispers", "explains", "announces", "recites"),
    ("slowly", "quickly", "clearly", "softly", "loudly", "gently"),
    ("in a small room", "over a phone line", "near a busy road", "in a large hall", "beside an open window",
     "inside a moving car", "at a train station", "in a quiet studio", "on a windy beach"),
    ("while", "as", "and then", "before"),
    ("rain falls", "birds sing", "a door closes", "music plays", "people chatter", "a fan hums", "dogs bark"),
)
_RADICES = tuple(len(s) for s in _SLOTS)
_COMBINATIONS = int(np.prod(_RADICES))
_STRIDE = 7919  # a prime coprime to _COMBINATIONS: consecutive clips get very different captions


def caption(index: int) -> str:
    """The workload caption of clip `index` (distinct for index < ~1.2 million)."""
    code = (index * _STRIDE + 12345) % _COMBINATIONS
    words = []
    for slot, radix in zip(_SLOTS, _RADICES):
        words.append(slot[code % radix])
        code //= radix
    return " ".join(words)


def speech_like(seconds: float, sample_rate: int, seed: int) -> np.ndarray:
    """A voiced/unvoiced syllable pattern with a moving pitch over low noise, float32 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    n = max(1, int(round(seconds * sample_rate)))
    t = np.arange(n, dtype=np.float64) / sample_rate
    f0 = rng.uniform(90, 220) * (1.0 + 0.15 * np.sin(2 * np.pi * rng.uniform(0.2, 0.7) * t))
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    voiced = sum((0.6 / k) * np.sin(k * phase) for k in range(1, 6))
    syllables = np.clip(np.sin(2 * np.pi * rng.uniform(3.0, 5.0) * t + rng.uniform(0, 6.3)), 0.0, None) ** 2
    x = 0.25 * voiced * syllables + rng.normal(0.0, rng.uniform(0.003, 0.03), n)
    return np.clip(x, -1.0, 1.0).astype(np.float32)


@dataclass
class Workload:
    """Audio files to score, their captions (id -> text) and the captions CSV, plus what they are."""

    inputs: Path  # a folder (scored whole) or a list file
    files: list[Path]
    ids: list[str]
    captions: dict[str, str]
    captions_csv: Path
    generated: bool
    clip_seconds: float | None  # per clip for a generated workload
    sample_rate: int | None

    def describe(self) -> dict[str, object]:
        """What the report says about the workload (where it lies is the caller's to record:
        `inputs` may be a temporary folder or list file)."""
        return {
            "kind": "generated" if self.generated else "folder",
            "clips": len(self.files),
            "clip_seconds": self.clip_seconds,
            "sample_rate": self.sample_rate,
            "format": "wav PCM 16-bit mono" if self.generated else "as found",
            "captions": "one per clip, about 12 words, all distinct",
        }


def write_captions(path: Path, captions: dict[str, str]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["wav_file_name", "text"])
        for key, text in captions.items():
            w.writerow([key, text])
    return path


def generate(root: Path, clips: int, seconds: float = 10.0, sample_rate: int = 16000, seed: int = 0,
             distinct_audio: int | None = None) -> Workload:
    """Write `clips` wav files to root/audio and root/captions.csv (deterministic for a seed).

    `distinct_audio`: synthesise only that many clips and hard-link the rest to them (the
    memory test's 10,000 files); each name is still its own file to decode, with its own caption.
    """
    audio = root / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    width = max(5, len(str(clips)))
    files: list[Path] = []
    ids: list[str] = []
    captions: dict[str, str] = {}
    distinct = clips if distinct_audio is None else max(1, min(distinct_audio, clips))
    for k in range(clips):
        name = f"clip_{k:0{width}d}.wav"
        path = audio / name
        if k < distinct:
            sf.write(path, speech_like(seconds, sample_rate, seed * 100003 + k), sample_rate, subtype="PCM_16")
        else:
            source = files[k % distinct]
            try:
                os.link(source, path)
            except OSError:  # no hard links here: a copy does as well
                path.write_bytes(source.read_bytes())
        files.append(path)
        ids.append(name)
        captions[name] = caption(k)
    csv_path = write_captions(root / "captions.csv", captions)
    return Workload(audio, files, ids, captions, csv_path, True, seconds, sample_rate)


def from_folder(folder: Path, root: Path, clips: int, captions_file: Path | None = None) -> Workload:
    """The first `clips` audio files of a user folder (sorted, recursive). Captions: from
    `captions_file` when given (passed to `mos score` as is), else a generated one per file."""
    from mos.data.folder import find_audio_files

    folder = Path(folder)
    if not folder.is_dir():
        raise MosError(f"--data {folder}: not a folder")
    found = find_audio_files(folder)
    if not found:
        raise MosError(f"--data {folder}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) in this folder")
    files = found[: max(1, clips)]
    if len(files) == len(found):
        inputs = folder
        ids = [f.relative_to(folder).as_posix() for f in files]
    else:  # a list file of absolute paths: `mos score` scores just these
        inputs = root / "inputs.txt"
        inputs.write_text("".join(f"{f.resolve()}\n" for f in files), encoding="utf-8")
        ids = [f.resolve().as_posix() for f in files]
    if captions_file is not None:
        from mos.runtime.inputs import read_caption_file

        table = read_caption_file(captions_file)
        captions = {i: table.lookup(i) or "" for i in ids}
        csv_path = Path(captions_file)
    else:
        captions = {i: caption(k) for k, i in enumerate(ids)}
        csv_path = write_captions(root / "captions.csv", captions)
    return Workload(inputs, files, ids, captions, csv_path, False, None, None)
