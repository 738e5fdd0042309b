"""Clips from the data a run was trained on, for `--quantize int8`: calibration (training clips)
and the int8 rule (every validation clip, with its ratings where it has them), read with the
runtime's decoder. The validation clips are kept in a temporary file (ClipStore), not in memory.

The data is found from the run folder, whatever the current directory: config.json's `data_dir`
(the absolute path the trainer records), else, for runs written before it, the recorded relative
`train.data` resolved against the directory training ran in and the run folder's parents. When
nothing resolves, export falls back to synthetic clips and says so loudly. Unreadable files are
skipped and named.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from mos.audio import iter_audio_windows
from mos.data.manifest import Item
from mos.errors import MosError, one_line

if TYPE_CHECKING:
    from mos.export.report import ExportReport
    from mos.model import ModelConfig

N_CALIBRATION = 32
# Validation clips are scored as `mos score` scores them (windows averaged), up to this long.
VALIDATION_MAX_SECONDS = 60.0
SHOW_SKIPPED = 5


class ClipStore(Sequence[np.ndarray]):
    """float32 clips appended to one file in a temporary folder and read back as memory maps, so
    that a validation set larger than memory stays on disk until each clip is scored. `close`
    (or garbage collection) removes the folder."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="mos-int8-")
        self._path = Path(self._dir.name) / "clips.f32"
        self._writer: Any = self._path.open("wb")
        self._offsets = [0]
        self._data: np.ndarray | None = None

    def append(self, clip: np.ndarray) -> None:
        if self._writer is None:
            raise ValueError("ClipStore: read from already; cannot append")
        self._writer.write(np.ascontiguousarray(clip, dtype=np.float32).tobytes())
        self._offsets.append(self._offsets[-1] + len(clip))

    def _array(self) -> np.ndarray:
        if self._data is None:
            self._writer.close()
            self._writer = None
            total = self._offsets[-1]
            self._data = (np.memmap(self._path, dtype=np.float32, mode="r", shape=(total,)) if total
                          else np.zeros(0, np.float32))
        return self._data

    def __len__(self) -> int:
        return len(self._offsets) - 1

    @overload
    def __getitem__(self, i: int) -> np.ndarray: ...
    @overload
    def __getitem__(self, i: slice) -> list[np.ndarray]: ...

    def __getitem__(self, i: int | slice) -> np.ndarray | list[np.ndarray]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i %= len(self)
        return self._array()[self._offsets[i]: self._offsets[i + 1]]

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._data = None
        self._dir.cleanup()


@dataclass
class RunClips:
    """Calibration and validation clips of a run; `calibration` None means: use synthetic clips.
    `validation` = (clips, captions or None, ratings [n, targets] with NaN where a clip has none,
    or None when the validation data rates none of the model's targets)."""

    calibration: list[np.ndarray] | None = None
    calibration_captions: list[str] | None = None
    validation: tuple[Sequence[np.ndarray], list[str] | None, np.ndarray | None] | None = None
    source: str = ""  # where the clips came from and how that was found
    warnings: list[str] = field(default_factory=list)
    data: Path | None = None  # the run's training data, when found
    text_captions: list[str] | None = None  # the training set's captions (text.int8.onnx calibration)

    def close(self) -> None:
        """Remove the validation clips' temporary file."""
        if self.validation is not None and isinstance(self.validation[0], ClipStore):
            self.validation[0].close()


def _shown(path: Path) -> str:
    """A path as the user sees it: relative when it lies below the current directory."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _candidates(run_dir: Path, config: dict[str, Any]) -> tuple[list[tuple[Path, str]], str]:
    """Where the run's training data may be, best first, each with how it was derived; and what
    config.json recorded."""
    if config.get("data_dir"):
        return [(Path(config["data_dir"]), "config.json data_dir")], "config.json data_dir"
    train = config.get("train") or {}
    if train.get("data"):
        recorded = Path(train["data"])
        what = f"config.json train.data '{train['data']}'"
    else:  # the built-in demo set, generated under demo_dir
        recorded = Path(train.get("demo_dir") or "data/demo") / "XACLE_dataset"
        what = f"the demo set under config.json train.demo_dir '{train.get('demo_dir')}'"
    if recorded.is_absolute():
        return [(recorded, what)], what
    run_dir = run_dir.resolve()
    bases: list[tuple[Path, str]] = []
    runs_dir = Path(train.get("runs_dir") or "runs")
    if not runs_dir.is_absolute() and ".." not in runs_dir.parts and run_dir.name == train.get("name"):
        # training ran in the directory that holds <runs_dir>/<name>
        base = run_dir.parent
        for _ in runs_dir.parts:
            base = base.parent
        bases.append((base, f"the directory holding {runs_dir / run_dir.name}"))
    bases += [(parent, "a parent of the run folder") for parent in run_dir.parents]
    out: list[tuple[Path, str]] = []
    for base, where in bases:
        if all(base / recorded != p for p, _ in out):
            shown = "the current directory" if base == Path.cwd().resolve() else str(base)
            out.append((base / recorded, f"{what} resolved against {where} ({shown}); config.json has no data_dir"))
    if all(Path.cwd() / recorded != p for p, _ in out):
        out.append((Path.cwd() / recorded, f"{what} resolved against the current directory; config.json has no data_dir"))
    return out, what


def find_run_data(run_dir: Path) -> tuple[Path | None, str]:
    """(the run's training data, how it was found) or (None, why not)."""
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        return None, f"{config_path} not found, so the run's data is unknown"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"{config_path}: not valid JSON ({one_line(exc, limit=80)})"
    candidates, what = _candidates(run_dir, config)
    for path, how in candidates:
        if path.exists():
            return path.resolve(), f"{_shown(path)} (from {how})"
    looked = ", ".join(str(p) for p, _ in candidates[:4]) + (" ..." if len(candidates) > 4 else "")
    return None, f"{what} does not resolve (looked at {looked})"


def _read(items: Iterable[Item], sample_rate: int, seconds: float, window_seconds: float, want: int,
          need_caption: bool, skipped: list[str], sink: Any = None) -> tuple[Any, list[Item]]:
    """Up to `want` clips (the first `seconds` of each) from `items` in order, appended to `sink`
    (a new list by default), skipping (and naming in `skipped`) files that cannot be read and, for
    text models, clips without a caption."""
    clips = [] if sink is None else sink
    kept: list[Item] = []
    limit = max(1, int(round(seconds * sample_rate)))
    for item in items:
        if len(clips) >= want:
            break
        if need_caption and not item.caption:
            skipped.append(f"{item.path} (no caption)")
            continue
        try:
            pieces: list[np.ndarray] = []
            got = 0
            for window in iter_audio_windows(item.path, sample_rate, window_seconds):
                pieces.append(window)
                got += len(window)
                if got >= limit:
                    break
            clip = np.concatenate(pieces)[:limit] if pieces else np.zeros(0, np.float32)
        except Exception as exc:  # a bad file must not end the export: skip it and name it
            skipped.append(one_line(exc, path=item.path, limit=120))
            continue
        if len(clip) == 0:
            skipped.append(f"{item.path} (empty)")
            continue
        clips.append(clip)
        kept.append(item)
    return clips, kept


def _skipped_line(what: str, skipped: list[str]) -> str:
    shown = "; ".join(skipped[:SHOW_SKIPPED])
    more = f"; and {len(skipped) - SHOW_SKIPPED} more" if len(skipped) > SHOW_SKIPPED else ""
    return f"skipped {len(skipped)} unreadable {what} clip(s): {shown}{more}"


def run_clips(run_dir: Path, cfg: ModelConfig, n_calibration: int = N_CALIBRATION) -> RunClips:
    """The run's clips for int8 (every validation clip, in a ClipStore: `close` the RunClips when
    done); without them, a RunClips with calibration None and the reason."""
    data, how = find_run_data(run_dir)
    fallback = "int8 calibration FELL BACK to synthetic noise+tones: "
    if data is None:
        return RunClips(warnings=[fallback + how])
    from mos.trainer.run import run_splits

    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    try:
        splits = run_splits(config, data)
    except MosError as exc:
        return RunClips(warnings=[fallback + f"the run's data {data} cannot be split as in training ({one_line(exc, limit=200)})"])
    sr, window = int(cfg.sample_rate), float(cfg.window_seconds)
    uses_text = bool(cfg.uses_text)
    warnings: list[str] = []

    train_items = splits.train.items
    order = np.random.default_rng(0).permutation(len(train_items))
    skipped: list[str] = []
    cal, cal_items = _read((train_items[i] for i in order), sr, window, window, n_calibration, uses_text, skipped)
    if skipped:
        warnings.append(_skipped_line("training", skipped))
    if not cal:
        return RunClips(warnings=warnings + [fallback + f"no readable training clip in {data}"])

    skipped = []
    store = ClipStore()
    try:
        val, val_items = _read(splits.validation.items, sr, VALIDATION_MAX_SECONDS, window,
                               len(splits.validation.items), uses_text, skipped, store)
    except BaseException:
        store.close()
        raise
    if skipped:
        warnings.append(_skipped_line("validation", skipped))
    names = list(cfg.target_names)
    missing = [n for n in names if n not in splits.validation.target_names]
    validation = None
    if not val_items:
        store.close()
    else:
        ratings = None
        if missing and len(missing) < len(names):  # none rated: export_bundle says so
            warnings.append(f"the run's validation data has no ratings for {', '.join(missing)}: "
                            "its validation SRCC is not measured")
        if len(missing) < len(names):
            ratings = np.array([[it.targets.get(n, np.nan) for n in names] for it in val_items], dtype=np.float64)
        validation = (val, [it.caption or "" for it in val_items] if uses_text else None, ratings)
    return RunClips(
        calibration=cal,
        calibration_captions=[it.caption or "" for it in cal_items] if uses_text else None,
        text_captions=[it.caption for it in train_items if it.caption] if uses_text else None,
        validation=validation,
        source=f"the run's training data {how}",
        warnings=warnings,
        data=data,
    )


def export_run(source: Path, out: Path | None = None, opset: int = 17, quantize: str | None = None,
               fp16: bool = False, verify: bool = True, log: Callable[[str], None] = print,
               force: bool = False) -> "ExportReport":
    """`mos export`: export a run or checkpoint; int8 is calibrated on the run's own training clips
    and judged by the int8 rule on all its validation clips; without them (the run's data is gone)
    it is written only with `force`."""
    from mos.export.build import export_bundle, run_dir_of
    from mos.trainer.checkpoint import find_checkpoint, load_model

    if quantize not in (None, "int8"):
        raise MosError(f"--quantize {quantize}: only 'int8' is supported")
    source = Path(source)
    clips = RunClips()
    if quantize:
        model, _ = load_model(source)
        clips = run_clips(run_dir_of(source, find_checkpoint(source)), model.cfg)
        del model
        if clips.calibration is not None and clips.data is not None:
            n_val = len(clips.validation[0]) if clips.validation else 0
            log(f"int8: {len(clips.calibration)} calibration and {n_val} validation clips from {_shown(clips.data)}")
    try:
        return export_bundle(
            source, out, opset=opset, quantize=quantize, fp16=fp16, verify=verify,
            calibration_clips=clips.calibration,
            calibration_captions=clips.calibration_captions,
            validation=clips.validation,
            force=force,
            calibration_source=clips.source or None,
            calibration_warnings=clips.warnings,
            text_calibration_captions=clips.text_captions,
        )
    finally:
        clips.close()
