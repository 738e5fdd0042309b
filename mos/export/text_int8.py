"""int8 text variant: static QDQ on text.onnx's weight MatMuls (per-channel), calibrated on captions.

Static activation scales keep a caption's features independent of the other captions in its
batch (dynamic quantization would not). Only the MatMuls' inputs are quantized (their outputs stay
fp32, so ORT runs them as MatMulIntegerToFloat; quantizing the outputs too was slower and cost
accuracy). Embeddings (Gather), LayerNorm, Softmax and the attention MatMuls (activation x
activation: Q.K^T and attention.V) stay fp32. The variant is measured
through the runtime: batch independence (TEXT_INT8_BATCH_TOL, never overridable), cosine of
mean-pooled features to fp32, speed per caption, and the outputs of fp32 audio + int8 text and of
int8 audio + int8 text (what `mos score --int8` runs) against fp32: the latter must pass the int8
rule of `mos.export.agreement` on the validation clips (`mos export --force` overrides it).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx

from mos.errors import MosError
from mos.export.agreement import Agreement, SrccChange, measure, srcc_changes
from mos.export.bench import score_clips
from mos.export.clips import CAPTIONS, LONG_CAPTION
from mos.export.quantize import ValidationData, run_quantize_static
from mos.runtime.engine import ScoreEngine, open_text_encoder
from mos.runtime.session import SessionConfig
from mos.runtime.text import TextEncoder, pad_token_ids

TEXT_INT8_MODEL = "text.int8.onnx"
TEXT_INT8_VARIANT = "text_int8"  # its key in mos.json "variants"
MAX_CALIBRATION_CAPTIONS = 128
CALIBRATION_BATCH = 16
# A caption's int8 features alone vs in a padded batch of other captions (max abs diff).
TEXT_INT8_BATCH_TOL = 1e-4
BENCH_BATCH = 64
BENCH_REPEATS = 5
METHOD = ("onnxruntime quantize_static, QDQ, per-channel, inputs of the weight MatMuls only (outputs fp32), "
          "MinMax; embeddings, LayerNorm, Softmax and attention MatMuls (Q.K^T, attention.V) fp32")
METHOD_DOWN_FP32 = "; FFN down-projections (the MatMuls fed by GELU, weight rows > columns) fp32 too"


def weight_matmuls(model: onnx.ModelProto) -> tuple[list[str], list[str]]:
    """(MatMul nodes with a weight initializer, MatMul nodes of two activations) of a graph."""
    inits = {i.name for i in model.graph.initializer}
    inits |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    weights, activations = [], []
    for node in model.graph.node:
        if node.op_type == "MatMul":
            (weights if any(i in inits for i in node.input) else activations).append(node.name)
    return weights, activations


def down_projections(model: onnx.ModelProto) -> list[str]:
    """MatMul nodes whose 2-D weight initializer has more rows than columns: a transformer's FFN
    output (fed by GELU, whose outliers int8 activations cope with worst)."""
    dims = {i.name: tuple(i.dims) for i in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type == "MatMul"
            and any(len(dims.get(i, ())) == 2 and dims[i][0] > dims[i][1] for i in n.input)]


def pick_captions(captions: Sequence[str], limit: int = MAX_CALIBRATION_CAPTIONS) -> list[str]:
    """At most `limit` distinct non-empty captions, evenly spread over `captions`."""
    distinct = [c for c in dict.fromkeys(captions) if c]
    if len(distinct) > limit:
        distinct = [distinct[int(k)] for k in np.linspace(0, len(distinct) - 1, limit).round()]
    return distinct


def calibration_feeds(encoder: TextEncoder, captions: Sequence[str]) -> list[dict[str, np.ndarray]]:
    """text.onnx feeds as the runtime makes them: captions sorted by token count, CALIBRATION_BATCH
    at a time, padded to the longest (TextEncoder's padding)."""
    ids = sorted(encoder.ids(list(captions)), key=len)
    return [pad_token_ids(ids[k: k + CALIBRATION_BATCH]) for k in range(0, len(ids), CALIBRATION_BATCH)]


def quantize_text(src: Path, out: Path, feeds: list[dict[str, np.ndarray]], down_fp32: bool = False) -> list[str]:
    """Write the int8 text model `out` from `src` (with `down_fp32`, the FFN down-projections stay
    fp32 too); returns the MatMul nodes kept fp32."""
    model = onnx.load(str(src))
    weights, keep = weight_matmuls(model)
    if down_fp32:
        keep += [n for n in down_projections(model) if n not in keep]
    if not [w for w in weights if w not in keep]:
        raise MosError(f"{src.name}: no MatMul with a weight to quantize")
    del model
    run_quantize_static(src, out, feeds, ["MatMul"], keep, quantize_outputs=False)
    return keep


def batch_gap(encoder: TextEncoder, captions: Sequence[str]) -> float:
    """Max abs difference of each caption's features encoded alone vs in one padded batch."""
    ids = encoder.ids(list(captions))
    together = encoder.features(ids)
    alone = [encoder.features([seq])[0] for seq in ids]
    return max(float(np.abs(a - b).max()) for a, b in zip(alone, together))


def pooled_cosines(fp32: TextEncoder, int8: TextEncoder, captions: Sequence[str]) -> np.ndarray:
    """Cosine of the mean-pooled features of fp32 and int8 per caption (each encoded by the runtime)."""
    a = np.stack([f.mean(axis=0) for f in fp32.encode(list(captions))]).astype(np.float64)
    b = np.stack([f.mean(axis=0) for f in int8.encode(list(captions))]).astype(np.float64)
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)


def ms_per_caption(encoders: Sequence[TextEncoder], captions: Sequence[str], batch: int = BENCH_BATCH,
                   repeats: int = BENCH_REPEATS) -> list[float]:
    """Median ms per caption of one text-model run on `batch` captions (cycled from `captions`),
    tokenizing excluded, runs interleaved; one warm-up each."""
    cycled = [captions[k % len(captions)] for k in range(batch)]
    feeds = pad_token_ids(sorted(encoders[0].ids(cycled), key=len))
    for enc in encoders:
        enc.runner.run(feeds)
    times: list[list[float]] = [[] for _ in encoders]
    for _ in range(repeats):
        for k, enc in enumerate(encoders):
            start = time.perf_counter()
            enc.runner.run(feeds)
            times[k].append((time.perf_counter() - start) * 1000.0 / batch)
    return [statistics.median(t) for t in times]


@dataclass
class TextInt8Report:
    path: Path
    method: str
    excluded_nodes: list[str]
    calibration_captions: int
    fp32_bytes: int
    int8_bytes: int
    fp32_ms: float  # median ms per caption, batch BENCH_BATCH, the reference engine's threads
    int8_ms: float
    threads: int
    batch_gap: float
    cosine_min: float
    cosine_median: float
    cosine_captions: int
    agreement: Agreement  # int8 audio + int8 text vs fp32: every output, the validation SRCC per target
    # target -> validation SRCC of fp32 vs fp32 audio + int8 text (reported, not judged)
    text_srcc: dict[str, SrccChange] = field(default_factory=dict)
    calibration: str = ""
    dropped: bool = False
    forced: bool = False
    why_dropped: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def speedup(self) -> float:
        return self.fp32_ms / self.int8_ms if self.int8_ms > 0 else float("nan")

    def failure(self) -> str:
        """Why the variant misses its batch tolerance ('' when it holds; not overridable)."""
        if self.batch_gap > TEXT_INT8_BATCH_TOL:
            return (f"a caption's features differ by {self.batch_gap:.1e} alone vs in a batch "
                    f"(tolerance {TEXT_INT8_BATCH_TOL:.0e})")
        return ""

    def rule_failure(self) -> str:
        """Why the int8 rule refuses int8 audio + int8 text ('' when it passes; --force overrides it)."""
        return "; ".join(f"with int8 audio + int8 text: {f}" for f in self.agreement.failures())

    def summary(self) -> dict[str, object]:
        """What mos.json records about the variant (under export.variants.int8.text)."""
        out: dict[str, object] = {
            "method": self.method,
            "calibration": self.calibration,
            "calibration_captions": self.calibration_captions,
            "batch_gap": self.batch_gap,
            "pooled_cosine_vs_fp32": {"min": round(self.cosine_min, 6), "median": round(self.cosine_median, 6),
                                      "captions": self.cosine_captions},
            "ms_per_caption": {"fp32": round(self.fp32_ms, 3), "int8": round(self.int8_ms, 3),
                               "batch": BENCH_BATCH, "threads": self.threads},
            "agreement_with_int8_audio": self.agreement.summary(),
        }
        if self.agreement.srcc:
            out["validation_srcc"] = {
                k: {"fp32": s.summary()["fp32"], "int8_text": self.text_srcc[k].summary()["int8"],
                    "int8_audio_and_text": s.summary()["int8"], "drop": s.summary()["drop"],
                    "drop_bound": s.summary()["drop_bound"]}
                for k, s in self.agreement.srcc.items()}
            out["validation_clips"] = self.agreement.clips
        if self.forced:
            out["forced"] = f"written with --force: {self.rule_failure()}"
        if self.warnings:
            out["warnings"] = list(self.warnings)
        return out

    def format(self) -> list[str]:
        """Lines for the export report."""
        state = f" - NOT WRITTEN: {self.why_dropped}" if self.dropped else " - written with --force" if self.forced else ""
        lines = [
            f"text int8 ({self.method}){state}",
            f"  calibration: {self.calibration_captions} captions from {self.calibration}",
            *[f"  WARNING: {w}" for w in self.warnings],
            f"  size {self.fp32_bytes / 1e6:.2f} MB -> {self.int8_bytes / 1e6:.2f} MB; ms per caption (batch "
            f"{BENCH_BATCH}, {self.threads} threads, median) {self.fp32_ms:.2f} -> {self.int8_ms:.2f} ({self.speedup:.2f}x)",
            f"  pooled features vs fp32 on {self.cosine_captions} captions: cosine min {self.cosine_min:.4f}, "
            f"median {self.cosine_median:.4f}; alone vs batched max abs diff {self.batch_gap:.1e} "
            f"(tolerance {TEXT_INT8_BATCH_TOL:.0e})",
            *self.agreement.lines("int8 audio + int8 text"),
        ]
        if self.agreement.srcc:
            per = ", ".join(f"'{k}' {s.fp32:.4f} -> text int8 {self.text_srcc[k].variant:.4f} "
                            f"({-self.text_srcc[k].drop:+.4f}) -> audio+text int8 {s.variant:.4f} ({-s.drop:+.4f}; "
                            f"lower 95% bound of the drop {s.drop_bound:+.4f})" for k, s in self.agreement.srcc.items())
            lines.append(f"  validation SRCC fp32 on {self.agreement.clips} clips: {per}")
        return lines


def quantize_text_int8(
    reference: ScoreEngine,
    audio_int8: Path,
    out: Path,
    calibration: Sequence[str],
    clips: Sequence[np.ndarray],
    clip_captions: Sequence[str],
    validation: ValidationData | None = None,
    down_fp32: bool = False,
    fp32_scores: np.ndarray | None = None,
) -> TextInt8Report:
    """Write `out` from the fp32 text model of `reference` (an engine on CPU), calibrated on the
    captions `calibration`, and measure it: batch gap, pooled cosine and speed on the validation
    captions (else the calibration ones), and the scores of fp32 audio + int8 text and of
    `audio_int8` + int8 text vs `reference` on `validation` (else on `clips` with `clip_captions`);
    `fp32_scores` are `reference`'s outputs on those clips when already scored. `down_fp32` keeps
    the FFN down-projections fp32 (slower, closer to fp32)."""
    bundle = reference.bundle
    if not bundle.uses_text:
        raise MosError("text int8: this bundle has no text model")
    captions = pick_captions(calibration)
    if not captions:
        raise MosError("text int8: no calibration captions")
    cfg = SessionConfig(device="cpu", threads=reference.options.threads)
    fp32_text = open_text_encoder(bundle, cfg)
    src = bundle.text_model()
    excluded = quantize_text(src, out, calibration_feeds(fp32_text, captions), down_fp32)
    int8_text = open_text_encoder(bundle, cfg, path=out)

    v_caps = list(validation[1] or []) if validation is not None else []
    probe = pick_captions(v_caps) or captions
    cos = pooled_cosines(fp32_text, int8_text, probe)
    # with a caption truncated at max_tokens and a short one: every other caption gets padded
    gap = batch_gap(int8_text, [*probe[:CALIBRATION_BATCH], LONG_CAPTION, CAPTIONS[5]])
    fp32_ms, int8_ms = ms_per_caption([fp32_text, int8_text], probe)

    text_only = ScoreEngine(bundle, reference.options, text=int8_text)
    both = ScoreEngine(bundle, reference.options, audio_path=audio_int8, text=int8_text)
    text_srcc: dict[str, SrccChange] = {}
    if validation is not None and len(validation[0]) > 0 and validation[1] is not None:
        v_clips, ratings = validation[0], validation[2]
        v_captions: list[str | None] = list(validation[1])
        ref = fp32_scores if fp32_scores is not None else score_clips(reference, v_clips, v_captions)
        got = score_clips(both, v_clips, v_captions)
        agreement = measure(ref, got, reference.columns, True, ratings, reference.targets)
        if ratings is not None:
            text_srcc = srcc_changes(ref, score_clips(text_only, v_clips, v_captions), ratings, reference.targets)
    else:
        caps: list[str | None] = list(clip_captions)
        ref = fp32_scores if fp32_scores is not None else score_clips(reference, clips, caps)
        agreement = measure(ref, score_clips(both, clips, caps), reference.columns, False)
    return TextInt8Report(
        path=out,
        method=METHOD + (METHOD_DOWN_FP32 if down_fp32 else ""),
        excluded_nodes=excluded,
        calibration_captions=len(captions),
        fp32_bytes=src.stat().st_size,
        int8_bytes=out.stat().st_size,
        fp32_ms=fp32_ms,
        int8_ms=int8_ms,
        threads=reference.options.threads,
        batch_gap=gap,
        cosine_min=float(cos.min()),
        cosine_median=float(np.median(cos)),
        cosine_captions=len(probe),
        agreement=agreement,
        text_srcc=text_srcc,
    )
