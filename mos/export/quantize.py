"""int8 variant: static QDQ on the convolutions (per-channel), front end in fp32, calibrated on clips.

After quantizing, the constant part of int8's error is removed: the mean difference of each output
from fp32's on the calibration clips is added to it inside the graph (`mos.export.bias`).
The variant is measured through the runtime's own engine (the sessions `mos score` opens): size,
speed, padding invariance (INT8_PADDING_TOL, never overridable) and its agreement with fp32 on
every held-out validation clip, output by output (`mos.export.agreement`: rank agreement, error
relative to the spread of fp32's outputs, and the validation SRCC where there are ratings).
Missing that rule, or measured on no held-out clips, it is not written unless `mos export --force`.
"""

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

from mos.bundle import EMBEDDING_OUTPUT
from mos.errors import MosError
from mos.export.agreement import Agreement, measure
from mos.export.bench import ms_per_clip, padding_gap, score_clips, scores_alone
from mos.export.bias import BiasCorrection, fold_offsets, measure_offsets
from mos.export.graph import fitted_head_nodes, front_end
from mos.runtime.batching import pad_token_features, pad_waveforms
from mos.runtime.engine import ScoreEngine

INT8_MODEL = "audio.int8.onnx"
MAX_CALIBRATION_CLIPS = 32
INT8_PADDING_TOL = 1e-4
# Conv-only for the CNN encoders (conv, aisfx); transformer encoders also quantize their MatMuls.
CNN_ENCODERS = ("conv", "aisfx")


def method(op_types: Sequence[str], fitted_head: bool = False) -> str:
    return (f"onnxruntime quantize_static, QDQ, per-channel, {' and '.join(op_types)} only, MinMax; "
            "front end (DFT conv and MatMul, mel MatMul)" + (" and the fitted head" if fitted_head else "") + " fp32")


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
    padding_gap: float
    agreement: Agreement  # int8 audio (fp32 text) vs fp32, every output, on the validation clips
    bias_correction: BiasCorrection  # what was added to int8's outputs (measured on the calibration clips)
    dropped: bool = False  # set by the exporter when the variant is not written
    forced: bool = False  # set by the exporter when --force wrote it despite the rule
    calibration: str = ""  # where the calibration clips came from (set by the exporter)
    warnings: list[str] = field(default_factory=list)  # e.g. synthetic calibration
    # fp32's outputs on the clips the agreement was measured on (reused by the text int8 variant)
    reference_scores: np.ndarray | None = field(default=None, repr=False)

    @property
    def speedup(self) -> float:
        return self.fp32_ms / self.int8_ms if self.int8_ms > 0 else float("nan")

    @property
    def ok(self) -> bool:
        """Within the padding tolerance (never overridable)."""
        return self.padding_gap <= INT8_PADDING_TOL

    def failure(self) -> str:
        """Why the variant misses its padding tolerance ('' when it holds)."""
        return "" if self.ok else f"padding gap {self.padding_gap:.1e} > {INT8_PADDING_TOL:.0e}"

    def rule_failure(self) -> str:
        """Why the agreement rule refuses the variant ('' when it passes; --force overrides it)."""
        return "; ".join(self.agreement.failures())

    def summary(self) -> dict[str, object]:
        """What mos.json records about the variant."""
        out: dict[str, object] = {
            "method": self.method,
            "calibration": self.calibration,
            "calibration_clips": self.calibration_clips,
            "padding_gap": self.padding_gap,
            "bias_correction": self.bias_correction.summary(),
            "agreement": self.agreement.summary(),
        }
        if self.agreement.srcc:
            out["validation_srcc"] = {k: s.summary() for k, s in self.agreement.srcc.items()}
            out["validation_clips"] = self.agreement.clips
        if self.forced:
            out["forced"] = f"written with --force: {self.rule_failure()}"
        if self.warnings:
            out["warnings"] = list(self.warnings)
        return out


# (clips, their captions or None, ratings [n, targets] on the target scales or None)
ValidationData = tuple[Sequence[np.ndarray], Sequence[str] | None, np.ndarray | None]


class _Reader(CalibrationDataReader):
    """onnxruntime CalibrationDataReader over prepared feeds (one clip per batch)."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        super().__init__()
        self._it: Iterator[dict[str, np.ndarray]] = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def run_quantize_static(src: Path, out: Path, feeds: list[dict[str, np.ndarray]], op_types: Sequence[str],
                        exclude: Sequence[str], quantize_outputs: bool = True, aside: Sequence[str] = ()) -> None:
    """quantize_static `src` -> `out`: QDQ, per-channel int8 weights, uint8 activations, MinMax
    calibrated on `feeds`; only `op_types`, never the nodes in `exclude`; with `quantize_outputs`
    False their outputs stay fp32 (ORT then fuses MatMul into MatMulIntegerToFloat); onnxruntime's
    logging quiet. The graph outputs named in `aside` (the pooled embedding) are taken out while
    quantizing, so that they change nothing in how the scores are quantized, and put back after."""
    if aside:
        model = onnx.load(str(src))
        kept = [o for o in model.graph.output if o.name not in aside]
        removed = [o for o in model.graph.output if o.name in aside]
        if removed:
            del model.graph.output[:]
            model.graph.output.extend(kept)
            plain = out.with_name(f".{out.stem}.plain.onnx")
            onnx.save(model, str(plain))
            try:
                _quantize_static(plain, out, feeds, op_types, exclude, quantize_outputs)
            finally:
                plain.unlink(missing_ok=True)
            q = onnx.load(str(out))
            made = {name for node in q.graph.node for name in node.output}
            lost = [o.name for o in removed if o.name not in made]
            if lost:
                raise MosError(f"{out.name}: the quantizer removed the nodes of output(s) {', '.join(lost)}")
            q.graph.output.extend(removed)
            onnx.save(q, str(out))
            return
    _quantize_static(src, out, feeds, op_types, exclude, quantize_outputs)


def _quantize_static(src: Path, out: Path, feeds: list[dict[str, np.ndarray]], op_types: Sequence[str],
                     exclude: Sequence[str], quantize_outputs: bool) -> None:
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


def correct_bias(reference: ScoreEngine, variant: Path, clips: Sequence[np.ndarray],
                 captions: Sequence[str | None]) -> BiasCorrection:
    """Fold into the audio model `variant` the mean difference of each of its outputs (scores and
    spreads: the quantiles follow from them) from `reference`'s on the calibration `clips`, each
    scored alone and unclamped; spreads stay >= 0."""
    int8 = ScoreEngine(reference.bundle, reference.options, audio_path=variant, text=reference.text)
    names = reference.targets + reference.spread_names
    correction = measure_offsets(scores_alone(reference, clips, captions), scores_alone(int8, clips, captions), names)
    del int8
    fold_offsets(variant, correction.offsets, nonnegative=reference.spread_names)
    return correction


def quantize_int8(
    reference: ScoreEngine,
    out: Path,
    clips: Sequence[np.ndarray],
    captions: Sequence[str | None],
    bench_clip: np.ndarray,
    bench_caption: str | None,
    validation: ValidationData | None = None,
) -> Int8Report:
    """Write `out` from the fp32 audio model of `reference` (an engine on CPU with 2 threads, made
    with `agreement.gate_options`) and measure it with an engine of the same options: size, speed,
    padding gap, and its agreement with fp32 on every clip of `validation` (scored the way `mos
    score` scores them; without validation clips, on the calibration clips, which judges nothing).
    Before it is measured, its bias is corrected on the calibration `clips` (never on
    `validation`): each output's mean difference from fp32's there is added to it in the graph."""
    if not clips:
        raise MosError("int8: no calibration clips")
    fp32 = reference.bundle.audio_model()
    model = onnx.load(str(fp32))
    fe = front_end(model)
    head = fitted_head_nodes(model)
    dft, mel = fe.dft_convs, fe.matmuls + head
    kind = (reference.bundle.meta["audio"].get("encoder") or {}).get("kind", "conv")
    op_types = ["Conv"] if kind in CNN_ENCODERS else ["Conv", "MatMul"]
    if not dft and kind == "conv":
        raise MosError(f"{fp32.name}: cannot find the front-end DFT Conv (a Conv fed by 'waveform') to keep in fp32")
    run_quantize_static(fp32, out, _calibration_feeds(reference, clips, captions), op_types, dft + mel,
                        aside=[EMBEDDING_OUTPUT])
    correction = correct_bias(reference, out, clips, captions)

    int8 = ScoreEngine(reference.bundle, reference.options, audio_path=out, text=reference.text)
    gap_clips = [clips[k % len(clips)][: max(1, len(clips[k % len(clips)]) // d)] for k, d in enumerate((1, 3, 7))]
    gap_caps = [captions[k % len(captions)] for k in range(3)]
    gap, _, _ = padding_gap(int8, gap_clips, gap_caps)
    fp32_ms, int8_ms = ms_per_clip([reference, int8], bench_clip, bench_caption)
    if validation is not None and len(validation[0]) > 0:
        v_clips, v_caps, ratings = validation
        v_captions: list[str | None] = list(v_caps) if v_caps is not None else [None] * len(v_clips)
        ref, got = score_clips(reference, v_clips, v_captions), score_clips(int8, v_clips, v_captions)
        agreement = measure(ref, got, reference.columns, True, ratings, reference.targets)
    else:
        ref, got = score_clips(reference, clips, captions), score_clips(int8, clips, captions)
        agreement = measure(ref, got, reference.columns, False)
    return Int8Report(
        path=out,
        method=method(op_types, bool(head)),
        excluded_nodes=dft + mel,
        calibration_clips=len(clips),
        fp32_bytes=fp32.stat().st_size,
        int8_bytes=out.stat().st_size,
        fp32_ms=fp32_ms[0],
        int8_ms=int8_ms[0],
        fp32_ms_best=fp32_ms[1],
        int8_ms_best=int8_ms[1],
        bench_seconds=len(bench_clip) / reference.sample_rate,
        padding_gap=gap,
        agreement=agreement,
        bias_correction=correction,
        reference_scores=ref,
    )
