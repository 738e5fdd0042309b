"""int8 variant: static QDQ on the convolutions (per-channel), front end in fp32, calibrated on clips.

The variant is measured through the runtime's own engine (the sessions `mos score` opens): size,
speed, mean abs difference to fp32 (on held-out validation clips when there are any, else on the
calibration clips), padding invariance, and the validation SRCC of fp32 vs int8. It must stay
within INT8_MAE_FRACTION of each target's range and INT8_PADDING_TOL (never overridable), and
lose at most MAX_SRCC_DROP of validation SRCC on any target (`mos export --force` overrides that).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from mos.errors import MosError
from mos.export.bench import ms_per_clip, padding_gap, scores_alone
from mos.export.graph import front_end
from mos.metrics import compute_metrics
from mos.runtime.batching import pad_token_features, pad_waveforms
from mos.runtime.engine import ScoreEngine

INT8_MODEL = "audio.int8.onnx"
MAX_CALIBRATION_CLIPS = 32
# int8 must stay within this fraction of each target's range width (mean abs diff to fp32).
INT8_MAE_FRACTION = 0.02
INT8_PADDING_TOL = 1e-4
# int8 may lose at most this much validation SRCC on any target (fp32 SRCC - int8 SRCC).
MAX_SRCC_DROP = 0.01
# Conv-only for the CNN encoders (conv, aisfx); transformer encoders also quantize their MatMuls.
CNN_ENCODERS = ("conv", "aisfx")


def method(op_types: Sequence[str]) -> str:
    return (f"onnxruntime quantize_static, QDQ, per-channel, {' and '.join(op_types)} only, MinMax; "
            "front end (DFT conv and MatMul, mel MatMul) fp32")


@dataclass
class Int8Report:
    path: Path
    method: str
    excluded_nodes: list[str]
    calibration_clips: int
    fp32_bytes: int
    int8_bytes: int
    fp32_ms: float  # median ms per window-long clip, batch 1, 2 threads
    int8_ms: float
    fp32_ms_best: float  # fastest run: steadier than the median when the CPU is shared
    int8_ms_best: float
    bench_seconds: float  # length of the clip the speed was measured on (the model's window)
    mae: dict[str, float]
    max_abs: dict[str, float]
    mae_tolerance: dict[str, float]
    mae_clips: int
    mae_on: str  # "validation" (held-out clips, scored as mos score does) or "calibration"
    padding_gap: float
    # target -> (fp32 SRCC, int8 SRCC) on the validation clips, when given
    validation_srcc: dict[str, tuple[float, float]] = field(default_factory=dict)
    validation_clips: int = 0
    dropped: bool = False  # set by the exporter when the variant is not written
    forced: bool = False  # set by the exporter when --force wrote it despite the SRCC rule
    calibration: str = ""  # where the calibration clips came from (set by the exporter)
    warnings: list[str] = field(default_factory=list)  # e.g. synthetic calibration, rule not applied

    @property
    def speedup(self) -> float:
        return self.fp32_ms / self.int8_ms if self.int8_ms > 0 else float("nan")

    @property
    def srcc_drop(self) -> dict[str, float]:
        """target -> fp32 SRCC - int8 SRCC on the validation clips (NaN when not measurable)."""
        return {k: a - b for k, (a, b) in self.validation_srcc.items()}

    @property
    def srcc_checked(self) -> bool:
        """Whether the validation SRCC rule could be applied (validation clips, finite SRCCs)."""
        return bool(self.validation_srcc) and all(math.isfinite(d) for d in self.srcc_drop.values())

    @property
    def ok(self) -> bool:
        """Within the MAE and padding tolerances (these cannot be overridden)."""
        within = all(self.mae[k] <= self.mae_tolerance[k] for k in self.mae)
        return within and self.padding_gap <= INT8_PADDING_TOL

    def failure(self) -> str:
        """Why the variant misses its MAE/padding tolerance ('' when it holds)."""
        bad = [f"MAE vs fp32 {self.mae[k]:.4f} on '{k}' > {self.mae_tolerance[k]:.3g}"
               for k in self.mae if self.mae[k] > self.mae_tolerance[k]]
        if self.padding_gap > INT8_PADDING_TOL:
            bad.append(f"padding gap {self.padding_gap:.1e} > {INT8_PADDING_TOL:.0e}")
        return "; ".join(bad)

    def srcc_failure(self) -> str:
        """The targets whose validation SRCC drops more than MAX_SRCC_DROP, worst first ('' when none)."""
        bad = [f"validation SRCC of '{k}' drops {d:.4f} ({self.validation_srcc[k][0]:.4f} -> "
               f"{self.validation_srcc[k][1]:.4f} on {self.validation_clips} clips), more than the "
               f"{MAX_SRCC_DROP:g} allowed"
               for k, d in sorted(self.srcc_drop.items(), key=lambda kv: -kv[1])
               if math.isfinite(d) and d > MAX_SRCC_DROP]
        return "; ".join(bad)

    def summary(self) -> dict[str, object]:
        """What mos.json records about the variant."""
        out: dict[str, object] = {
            "method": self.method,
            "calibration": self.calibration,
            "calibration_clips": self.calibration_clips,
            "mae_vs_fp32": {k: round(v, 6) for k, v in self.mae.items()},
            "mae_measured_on": f"{self.mae_clips} {self.mae_on} clips",
            "mae_tolerance": self.mae_tolerance,
            "padding_gap": self.padding_gap,
            "max_srcc_drop": MAX_SRCC_DROP,
        }
        if self.validation_srcc:
            out["validation_srcc"] = {k: {"fp32": round(a, 4), "int8": round(b, 4), "drop": round(a - b, 4)}
                                      for k, (a, b) in self.validation_srcc.items()}
            out["validation_clips"] = self.validation_clips
        if self.forced:
            out["forced"] = f"written with --force: {self.srcc_failure()}"
        if self.warnings:
            out["warnings"] = list(self.warnings)
        return out


# (clips, their captions or None, ratings [n, targets] on the target scales)
ValidationData = tuple[Sequence[np.ndarray], Sequence[str] | None, np.ndarray]


class _Reader(CalibrationDataReader):
    """onnxruntime CalibrationDataReader over prepared feeds (one clip per batch)."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        super().__init__()
        self._it: Iterator[dict[str, np.ndarray]] = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def run_quantize_static(src: Path, out: Path, feeds: list[dict[str, np.ndarray]], op_types: Sequence[str],
                        exclude: Sequence[str], quantize_outputs: bool = True) -> None:
    """quantize_static `src` -> `out`: QDQ, per-channel int8 weights, uint8 activations, MinMax
    calibrated on `feeds`; only `op_types`, never the nodes in `exclude`; with `quantize_outputs`
    False their outputs stay fp32 (ORT then fuses MatMul into MatMulIntegerToFloat); onnxruntime's
    logging quiet."""
    extra = {} if quantize_outputs else {"OpTypesToExcludeOutputQuantization": list(op_types)}
    log = logging.getLogger()
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            quantize_static(
                str(src),
                str(out),
                _Reader(feeds),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=list(op_types),
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=list(exclude),
                extra_options=extra,
            )
    finally:
        log.setLevel(level)
    # quantize_static leaves its augmented copy next to the output in some versions
    for leftover in out.parent.glob("augmented_model*.onnx"):
        leftover.unlink()


def pick_calibration(clips: Sequence[np.ndarray], window: int) -> tuple[list[np.ndarray], list[int]]:
    """At most MAX_CALIBRATION_CLIPS non-empty clips, evenly spread, each cut to one window; with
    their indices in `clips` (to pair them with their captions)."""
    idx = [i for i, c in enumerate(clips) if len(c) > 0]
    if len(idx) > MAX_CALIBRATION_CLIPS:
        idx = [idx[int(k)] for k in np.linspace(0, len(idx) - 1, MAX_CALIBRATION_CLIPS).round()]
    return [np.asarray(clips[i], dtype=np.float32)[:window] for i in idx], idx


def _calibration_feeds(reference: ScoreEngine, clips: Sequence[np.ndarray],
                       captions: Sequence[str | None]) -> list[dict[str, np.ndarray]]:
    """audio.onnx feeds, one clip each, padded by the runtime's own helpers."""
    feats = reference.text.encode([c or "" for c in captions]) if reference.text is not None else None
    feeds = []
    for i, clip in enumerate(clips):
        wave, lengths = pad_waveforms([clip])
        feed = {"waveform": wave, "lengths": lengths}
        if feats is not None:
            feed["text"], feed["text_lengths"] = pad_token_features([feats[i]])
        feeds.append(feed)
    return feeds


def quantize_int8(
    reference: ScoreEngine,
    out: Path,
    clips: Sequence[np.ndarray],
    captions: Sequence[str | None],
    bench_clip: np.ndarray,
    bench_caption: str | None,
    validation: ValidationData | None = None,
) -> Int8Report:
    """Write `out` from the fp32 audio model of `reference` (an engine on CPU with 2 threads) and
    measure it with an engine of the same options: size, speed, MAE and padding gap, and the SRCC
    of fp32 vs int8 against the ratings of `validation`, scored the way `mos score` scores."""
    if not clips:
        raise MosError("int8: no calibration clips")
    fp32 = reference.bundle.audio_model()
    model = onnx.load(str(fp32))
    fe = front_end(model)
    dft, mel = fe.dft_convs, fe.matmuls
    kind = (reference.bundle.meta["audio"].get("encoder") or {}).get("kind", "conv")
    op_types = ["Conv"] if kind in CNN_ENCODERS else ["Conv", "MatMul"]
    if not dft and kind == "conv":
        raise MosError(f"{fp32.name}: cannot find the front-end DFT Conv (a Conv fed by 'waveform') to keep in fp32")
    run_quantize_static(fp32, out, _calibration_feeds(reference, clips, captions), op_types, dft + mel)

    int8 = ScoreEngine(reference.bundle, reference.options, audio_path=out, text=reference.text)
    names = reference.targets
    gap_clips = [clips[k % len(clips)][: max(1, len(clips[k % len(clips)]) // d)] for k, d in enumerate((1, 3, 7))]
    gap_caps = [captions[k % len(captions)] for k in range(3)]
    gap, _, _ = padding_gap(int8, gap_clips, gap_caps)
    fp32_ms, int8_ms = ms_per_clip([reference, int8], bench_clip, bench_caption)
    srcc: dict[str, tuple[float, float]] = {}
    if validation is not None and len(validation[0]) > 0:
        v_clips, v_caps, v_true = validation
        v_captions: list[str | None] = list(v_caps) if v_caps is not None else [None] * len(v_clips)
        ref = reference.score_arrays(list(v_clips), v_captions)
        got = int8.score_arrays(list(v_clips), v_captions)
        mae_on = "validation"
        if len(v_clips) >= 2:
            for j, n in enumerate(names):
                srcc[n] = (compute_metrics(ref[:, j], v_true[:, j]).srcc, compute_metrics(got[:, j], v_true[:, j]).srcc)
    else:
        ref, got = scores_alone(reference, clips, captions), scores_alone(int8, clips, captions)
        mae_on = "calibration"
    diff = np.abs(np.asarray(got, dtype=np.float64) - np.asarray(ref, dtype=np.float64))
    ranges = {t.name: t.high - t.low for t in reference.bundle.targets}
    return Int8Report(
        path=out,
        method=method(op_types),
        excluded_nodes=dft + mel,
        calibration_clips=len(clips),
        fp32_bytes=fp32.stat().st_size,
        int8_bytes=out.stat().st_size,
        fp32_ms=fp32_ms[0],
        int8_ms=int8_ms[0],
        fp32_ms_best=fp32_ms[1],
        int8_ms_best=int8_ms[1],
        bench_seconds=len(bench_clip) / reference.sample_rate,
        mae={n: float(diff[:, j].mean()) for j, n in enumerate(names)},
        max_abs={n: float(diff[:, j].max()) for j, n in enumerate(names)},
        mae_tolerance={n: INT8_MAE_FRACTION * ranges[n] for n in names},
        mae_clips=len(diff),
        mae_on=mae_on,
        padding_gap=gap,
        validation_srcc=srcc,
        validation_clips=len(validation[0]) if srcc and validation is not None else 0,
    )
