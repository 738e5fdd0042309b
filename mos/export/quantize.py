"""int8 variant: static QDQ on the convolutions (per-channel), front end in fp32, calibrated on clips."""

from __future__ import annotations

import contextlib
import io
import logging
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
from mos.export.ort_side import OrtAudio, pad_batch
from mos.metrics import compute_metrics

INT8_MODEL = "audio.int8.onnx"
MAX_CALIBRATION_CLIPS = 32
# int8 must stay within this fraction of each target's range width (mean abs diff to fp32).
INT8_MAE_FRACTION = 0.02
INT8_PADDING_TOL = 1e-4
METHOD = "onnxruntime quantize_static, QDQ, per-channel, Conv only, MinMax; front end (DFT conv, mel MatMul) fp32"


@dataclass
class Int8Report:
    path: Path
    method: str
    excluded_nodes: list[str]
    calibration_clips: int
    fp32_bytes: int
    int8_bytes: int
    fp32_ms: float  # median ms per 10 s clip, batch 1, 2 threads
    int8_ms: float
    fp32_ms_best: float  # fastest run: steadier than the median when the CPU is shared
    int8_ms_best: float
    mae: dict[str, float]
    max_abs: dict[str, float]
    mae_tolerance: dict[str, float]
    padding_gap: float
    notes: list[str] = field(default_factory=list)
    # target -> (fp32 SRCC, int8 SRCC) on the validation clips, when given
    validation_srcc: dict[str, tuple[float, float]] = field(default_factory=dict)
    validation_clips: int = 0
    dropped: bool = False  # set by the exporter when the variant missed its tolerance

    @property
    def speedup(self) -> float:
        return self.fp32_ms / self.int8_ms if self.int8_ms > 0 else float("nan")

    @property
    def ok(self) -> bool:
        within = all(self.mae[k] <= self.mae_tolerance[k] for k in self.mae)
        return within and self.padding_gap <= INT8_PADDING_TOL

    def failure(self) -> str:
        """Why the variant misses its tolerance ('' when it holds)."""
        bad = [f"MAE vs fp32 {self.mae[k]:.4f} on '{k}' > {self.mae_tolerance[k]:.3g}"
               for k in self.mae if self.mae[k] > self.mae_tolerance[k]]
        if self.padding_gap > INT8_PADDING_TOL:
            bad.append(f"padding gap {self.padding_gap:.1e} > {INT8_PADDING_TOL:.0e}")
        return "; ".join(bad)

    def summary(self) -> dict[str, object]:
        """What mos.json records about the variant."""
        out: dict[str, object] = {
            "method": self.method,
            "calibration_clips": self.calibration_clips,
            "mae_vs_fp32": {k: round(v, 6) for k, v in self.mae.items()},
            "mae_tolerance": self.mae_tolerance,
            "padding_gap": self.padding_gap,
        }
        if self.validation_srcc:
            out["validation_srcc"] = {k: {"fp32": round(a, 4), "int8": round(b, 4)}
                                      for k, (a, b) in self.validation_srcc.items()}
            out["validation_clips"] = self.validation_clips
        return out


ValidationData = tuple[Sequence[np.ndarray], Sequence[np.ndarray] | None, np.ndarray]


class _Reader(CalibrationDataReader):
    """onnxruntime CalibrationDataReader over prepared feeds (one clip per batch)."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        super().__init__()
        self._it: Iterator[dict[str, np.ndarray]] = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def pick_calibration(clips: Sequence[np.ndarray], window: int) -> tuple[list[np.ndarray], list[int]]:
    """At most MAX_CALIBRATION_CLIPS non-empty clips, evenly spread, each cut to one window; with
    their indices in `clips` (to pair them with their captions)."""
    idx = [i for i, c in enumerate(clips) if len(c) > 0]
    if len(idx) > MAX_CALIBRATION_CLIPS:
        idx = [idx[int(k)] for k in np.linspace(0, len(idx) - 1, MAX_CALIBRATION_CLIPS).round()]
    return [np.asarray(clips[i], dtype=np.float32)[:window] for i in idx], idx


def quantize_int8(
    fp32: Path,
    out: Path,
    clips: Sequence[np.ndarray],
    text: Sequence[np.ndarray] | None,
    ranges: dict[str, float],
    bench_clip: np.ndarray,
    bench_text: np.ndarray | None,
    validation: ValidationData | None = None,
) -> Int8Report:
    """Write `out` from `fp32` and measure it: size, speed (2 threads), MAE and padding gap, and
    SRCC fp32 vs int8 on `validation` (clips, their caption features or None, ratings [n, targets])."""
    if not clips:
        raise MosError("int8: no calibration clips")
    model = onnx.load(str(fp32))
    fe = front_end(model)
    dft, mel = fe.dft_convs, fe.matmuls
    if not dft:
        raise MosError(f"{fp32.name}: cannot find the front-end DFT Conv (a Conv fed by 'waveform') to keep in fp32")
    feeds = []
    for i, c in enumerate(clips):
        f = pad_batch([c], [text[i]] if text is not None else None)
        feeds.append({v.name: f[v.name] for v in model.graph.input})
    reader = _Reader(feeds)
    log = logging.getLogger()
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            quantize_static(
                str(fp32),
                str(out),
                reader,
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=["Conv"],
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=dft + mel,
            )
    finally:
        log.setLevel(level)
    # quantize_static leaves its augmented copy next to the output in some versions
    for leftover in out.parent.glob("augmented_model*.onnx"):
        leftover.unlink()

    f32, i8 = OrtAudio(fp32, threads=2), OrtAudio(out, threads=2)
    ref = scores_alone(f32, clips, text)
    got = scores_alone(i8, clips, text)
    names = f32.output_names
    diff = np.abs(got - ref)
    gap_clips = [clips[k % len(clips)][: max(1, len(clips[k % len(clips)]) // d)] for k, d in enumerate((1, 3, 7))]
    gap_text = [text[k % len(text)] for k in range(3)] if text is not None else None
    gap, _, _ = padding_gap(i8, gap_clips, gap_text)
    fp32_ms, int8_ms = ms_per_clip([f32, i8], bench_clip, bench_text)
    srcc: dict[str, tuple[float, float]] = {}
    if validation is not None and len(validation[0]) >= 2:
        v_clips, v_text, v_true = validation
        v_ref, v_got = scores_alone(f32, v_clips, v_text), scores_alone(i8, v_clips, v_text)
        for j, n in enumerate(names):
            srcc[n] = (compute_metrics(v_ref[:, j], v_true[:, j]).srcc, compute_metrics(v_got[:, j], v_true[:, j]).srcc)
    return Int8Report(
        path=out,
        method=METHOD,
        excluded_nodes=dft + mel,
        calibration_clips=len(clips),
        fp32_bytes=fp32.stat().st_size,
        int8_bytes=out.stat().st_size,
        fp32_ms=fp32_ms[0],
        int8_ms=int8_ms[0],
        fp32_ms_best=fp32_ms[1],
        int8_ms_best=int8_ms[1],
        mae={n: float(diff[:, j].mean()) for j, n in enumerate(names)},
        max_abs={n: float(diff[:, j].max()) for j, n in enumerate(names)},
        mae_tolerance={n: INT8_MAE_FRACTION * ranges[n] for n in names},
        padding_gap=gap,
        validation_srcc=srcc,
        validation_clips=len(validation[0]) if srcc and validation is not None else 0,
    )
