"""export_bundle: checkpoint -> audio.onnx (+ text.onnx, tokenizer, variants) + mos.json, verified."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from mos.bundle import EMBEDDING_OUTPUT, BUNDLE_META_FILE, bundle_from_meta, write_bundle_meta
from mos.errors import MosError
from mos.files import sha256_file
from mos.export.bundle_meta import build_meta
from mos.export.clips import CAPTIONS, caption_for, synthetic_clip, synthetic_clips
from mos.export.fp16 import FP16_MODEL, convert_fp16
from mos.export.onnx_io import embed_metadata, export_torchscript
from mos.export.agreement import gate_options
from mos.export.quantize import INT8_MODEL, Int8Report, pick_calibration, quantize_int8
from mos.export.report import ExportReport
from mos.export.text import TEXT_MODEL, TOKENIZER, export_text
from mos.export.text_int8 import TEXT_INT8_MODEL, TEXT_INT8_VARIANT, TextInt8Report, quantize_text_int8
from mos.export.verify import BATCH_SECONDS, SINGLE_SECONDS, verify_bundle
from mos.export.wrapper import (
    TEXT_MODEL_INPUTS,
    AudioExport,
    audio_dynamic_axes,
    audio_input_names,
    audio_output_names,
)
from mos.model import MosModel
from mos.runtime.engine import EngineOptions, ScoreEngine
from mos.trainer.checkpoint import find_checkpoint, load_model

AUDIO_MODEL = "audio.onnx"
# Trace shapes: batch 2 (batch 1 would fix the batch axis) and lengths no check uses, with checked
# lengths on both sides of them, so a shape the tracer baked in as a constant fails verification.
TRACE_SECONDS = (3.7, 2.2)
TRACE_TOKENS = (9, 5)
SYNTHETIC_CALIBRATION = 16
# (clips, their captions or None, ratings [n, n_targets] on the target scales or None)
Validation = tuple[Sequence[np.ndarray], Sequence[str] | None, np.ndarray | None]


def check_trace_lengths(trace: Sequence[float] | None = None, checked: Sequence[float] | None = None) -> None:
    """MosError unless the verified clip lengths avoid every trace length and lie on both sides of
    them: verification must run the graph on lengths the tracer never saw."""
    trace = TRACE_SECONDS if trace is None else trace
    checked = (*SINGLE_SECONDS, *BATCH_SECONDS) if checked is None else checked
    same = sorted(set(trace) & set(checked))
    if same:
        raise MosError(f"trace length(s) {', '.join(f'{s:g} s' for s in same)} are also verified lengths: "
                       "verification would not see a shape the tracer baked in")
    if not (min(checked) < min(trace) and max(checked) > max(trace)):
        raise MosError(f"verified lengths ({min(checked):g}-{max(checked):g} s) must lie on both sides of the "
                       f"trace lengths ({min(trace):g}-{max(trace):g} s)")


def run_dir_of(source: Path, checkpoint: Path) -> Path:
    if source.is_dir():
        return source
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


def _trace_inputs(model: MosModel) -> tuple[torch.Tensor, ...]:
    cfg = model.cfg
    gen = torch.Generator().manual_seed(0)
    n = [int(s * cfg.sample_rate) + 13 for s in TRACE_SECONDS]
    wave = torch.randn(2, max(n), generator=gen) * 0.1
    args: tuple[torch.Tensor, ...] = (wave, torch.tensor(n, dtype=torch.long))
    if cfg.uses_text:
        text = torch.randn(2, max(TRACE_TOKENS), cfg.text_dim, generator=gen)
        args += (text, torch.tensor(TRACE_TOKENS, dtype=torch.long))
    return args


def _check_names(model: MosModel) -> None:
    names = model.cfg.target_names
    reserved = set(audio_input_names(model)) | set(TEXT_MODEL_INPUTS)
    clash = [n for n in names if n in reserved]
    if clash or len(set(names)) != len(names):
        raise MosError(f"target names {names} must be distinct and not an input name ({sorted(reserved)})")


def _prepare_out(out: Path) -> Path:
    """A fresh sibling work directory; `out` itself is only replaced when the export verified."""
    if out.exists() and not out.is_dir():
        raise MosError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / BUNDLE_META_FILE).is_file():
        raise MosError(f"{out}: exists, is not empty and is not a mos bundle; choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.parent / f".{out.name}.export-tmp"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir()
    return work


def _install(work: Path, out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    work.rename(out)


def export_bundle(
    source: Path,
    out: Path | None = None,
    opset: int = 17,
    quantize: str | None = None,
    fp16: bool = False,
    calibration_clips: list[np.ndarray] | None = None,
    verify: bool = True,
    calibration_captions: Sequence[str] | None = None,
    validation: Validation | None = None,
    force: bool = False,
    calibration_source: str | None = None,
    calibration_warnings: Sequence[str] = (),
    text_calibration_captions: Sequence[str] | None = None,
) -> ExportReport:
    """Export a run folder or checkpoint to a bundle at `out` (default `<run dir>/bundle`).

    quantize: None or "int8" (static QDQ, calibrated on `calibration_clips` at the model rate,
    paired with `calibration_captions`; synthetic noise+tones, with a warning, when None).
    `validation` = (clips, captions or None, ratings [n, n_targets] on the target scales, or None
    when unrated): the held-out clips the int8 rule (`mos.export.agreement`) judges the variant on,
    every clip; it is written only when it passes, or with `force` (what it missed is then recorded
    in mos.json). Without validation clips nothing can judge it: it is written only with `force`.
    `calibration_source` says where the clips came from and `calibration_warnings` what went wrong
    finding them (both recorded with the variant). A model with text also gets text.int8.onnx,
    calibrated on `text_calibration_captions` (the run's training captions) and the calibration
    captions, kept when int8 audio + int8 text pass the same rule. Verification failure raises
    MosError naming the worst case and leaves no bundle behind.
    """
    source = Path(source)
    if quantize not in (None, "int8"):
        raise MosError(f"--quantize {quantize!r}: only 'int8' is supported")
    check_trace_lengths()
    stages: dict[str, float] = {}
    t = time.perf_counter()
    checkpoint = find_checkpoint(source)
    model, ckpt = load_model(source)
    model.eval()
    _check_names(model)
    out = Path(out) if out is not None else run_dir_of(source, checkpoint) / "bundle"
    work = _prepare_out(out)
    stages["load"] = time.perf_counter() - t
    try:
        int8 = Int8Inputs(calibration_clips, calibration_captions, validation, force, calibration_source,
                          list(calibration_warnings), list(text_calibration_captions or [])) if quantize == "int8" else None
        report = _export_into(work, out, model, ckpt, checkpoint, opset, int8, fp16, verify, stages)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    _install(work, out)
    report.bundle = out
    if report.verify is not None:
        report.verify.bundle = out
    for name in (AUDIO_MODEL, TEXT_MODEL, TOKENIZER, INT8_MODEL, TEXT_INT8_MODEL, FP16_MODEL, BUNDLE_META_FILE):
        if (out / name).is_file():
            report.files[name] = (out / name).stat().st_size
    if report.int8 is not None and not report.int8.dropped:
        report.int8.path = out / INT8_MODEL
    if report.text_int8 is not None and not report.text_int8.dropped:
        report.text_int8.path = out / TEXT_INT8_MODEL
    if report.fp16 is not None:
        report.fp16.path = out / FP16_MODEL
    return report


@dataclass
class Int8Inputs:
    """What `--quantize int8` works from (see export_bundle)."""

    clips: list[np.ndarray] | None
    captions: Sequence[str] | None
    validation: Validation | None
    force: bool
    source: str | None
    warnings: list[str]
    text_captions: list[str]  # the run's training captions, for text.int8.onnx


def _int8_variant(work: Path, reference: ScoreEngine, inputs: Int8Inputs, bench_clip: np.ndarray,
                  bench_caption: str | None, report: ExportReport) -> bool:
    """Quantize, measure and decide; True when audio.int8.onnx stays in the bundle."""
    cfg_sr, window_s = reference.sample_rate, reference.window_seconds
    warnings = list(inputs.warnings)
    raw = inputs.clips
    if raw is None:
        raw = synthetic_clips(SYNTHETIC_CALIBRATION, window_s, cfg_sr)
        if not warnings:
            warnings.append("calibrated on synthetic noise+tones: no calibration clips given")
    clips, picked = pick_calibration(raw, reference.window_samples)
    captions: list[str | None] = [None] * len(clips)
    if reference.uses_text:
        caps = list(inputs.captions) if inputs.captions else None
        captions = [caps[i % len(caps)] if caps else caption_for(i) for i in picked]
    val = None
    if inputs.validation is not None:
        v_clips, v_caps, v_true = inputs.validation
        if reference.uses_text and v_caps is None:
            raise MosError("validation: this model uses text; give the validation captions")
        val = (v_clips, list(v_caps) if reference.uses_text and v_caps is not None else None,
               None if v_true is None else np.asarray(v_true, dtype=np.float64).reshape(len(v_clips), -1))
        if v_true is None and len(v_clips):
            warnings.append("the validation clips have no ratings: int8 judged label-free only (no validation SRCC)")
    q: Int8Report = quantize_int8(reference, work / INT8_MODEL, clips, captions, bench_clip, bench_caption, val)
    q.calibration = inputs.source or ("synthetic noise+tones" if inputs.clips is None else f"{len(clips)} given clips")
    q.warnings = warnings
    hard, rule = q.failure(), q.rule_failure()
    if hard or (rule and not inputs.force):
        (work / INT8_MODEL).unlink()
        q.dropped = True
        why = hard or f"{rule}; `mos export --force` writes it anyway"
        report.notes.append(f"int8 variant NOT written: {why}")
    elif rule:
        q.forced = True
        report.notes.append(f"int8 variant written with --force although: {rule}")
    report.int8 = q
    if reference.uses_text:
        if q.dropped:
            report.notes.append("text int8 variant not built: it runs only with audio.int8.onnx, which was not written")
        else:
            _text_int8_variant(work, reference, inputs, clips, captions, val, q.reference_scores, report)
    return not q.dropped


def _text_int8_variant(work: Path, reference: ScoreEngine, inputs: Int8Inputs, clips: list[np.ndarray],
                       captions: list[str | None], val: Validation | None, fp32_scores: np.ndarray | None,
                       report: ExportReport) -> bool:
    """Quantize text.onnx, measure it with audio.int8.onnx and decide; True when text.int8.onnx stays."""
    given = [c for c in inputs.captions or [] if c]
    calibration = [c for c in inputs.text_captions if c] + given
    warnings: list[str] = []
    if inputs.text_captions:
        source = f"the run's training captions ({len(inputs.text_captions)})"
    elif given:
        source = "the calibration clips' captions"
    elif val is not None and val[1]:
        calibration, source = [c for c in val[1] if c], "the validation captions"
    else:
        calibration, source = list(CAPTIONS), "the built-in example captions"
        warnings.append("text int8 calibration FELL BACK to the built-in example captions: no captions given")
    # All weight MatMuls first; when that misses a rule, again with the FFN down-projections in fp32
    # (unless nothing held out can judge it: keeping more in fp32 cannot change that).
    for down_fp32 in (False, True):
        q = quantize_text_int8(reference, work / INT8_MODEL, work / TEXT_INT8_MODEL, calibration, clips,
                               [c or "" for c in captions], val, down_fp32=down_fp32, fp32_scores=fp32_scores)
        missed = q.failure() or q.rule_failure()
        if not missed or down_fp32 or not q.agreement.judged:
            break
        warnings.append(f"with every weight MatMul int8: {missed}; the FFN down-projections were kept fp32")
    q.calibration, q.warnings = source, warnings
    hard, rule = q.failure(), q.rule_failure()
    if hard or (rule and not inputs.force):
        (work / TEXT_INT8_MODEL).unlink()
        q.dropped = True
        q.why_dropped = hard or f"{rule}; `mos export --force` writes it anyway"
        report.notes.append(f"text int8 variant NOT written (audio.int8.onnx kept, runs with text.onnx): {q.why_dropped}")
    elif rule:
        q.forced = True
        report.notes.append(f"text int8 variant written with --force although: {rule}")
    report.text_int8 = q
    return not q.dropped


def _export_into(
    work: Path, out: Path, model: MosModel, ckpt: dict[str, Any], checkpoint: Path, opset: int,
    int8: Int8Inputs | None, fp16: bool, verify: bool, stages: dict[str, float],
) -> ExportReport:
    cfg = model.cfg
    report = ExportReport(out, checkpoint, opset, seconds=stages)
    inputs, outputs = audio_input_names(model), audio_output_names(model)

    t = time.perf_counter()
    export_torchscript(AudioExport(model), _trace_inputs(model), work / AUDIO_MODEL, opset,
                       inputs, outputs, audio_dynamic_axes(inputs, outputs), {EMBEDDING_OUTPUT: {1: cfg.audio_dim}})
    stages["audio.onnx"] = time.perf_counter() - t

    encoder = None
    text_meta: dict[str, Any] | None = None
    files = [AUDIO_MODEL]
    if cfg.uses_text:
        from mos.model.text_encoder import FrozenTextEncoder

        t = time.perf_counter()
        encoder = FrozenTextEncoder(cfg.text_encoder, max_tokens=cfg.max_text_tokens, expected_sha256=cfg.text_encoder_sha256)
        if encoder.dim != cfg.text_dim:
            raise MosError(f"text encoder {cfg.text_encoder!r} gives {encoder.dim}-d features; the model expects {cfg.text_dim}")
        export_text(encoder, work, opset)
        files += [TEXT_MODEL, TOKENIZER]
        text_meta = {"encoder": encoder.name, "model": TEXT_MODEL, "tokenizer": TOKENIZER,
                     "max_tokens": int(cfg.max_text_tokens), "dim": int(encoder.dim), "pooled": bool(encoder.pooled)}
        stages["text.onnx"] = time.perf_counter() - t

    checkpoint_sha256 = sha256_file(checkpoint)

    def meta_for(variants: dict[str, str], variant_info: dict[str, Any]) -> dict[str, Any]:
        return build_meta(model, ckpt, checkpoint, checkpoint_sha256, out, opset,
                          {name: "" for name in files}, inputs, outputs, text_meta, variants, variant_info)

    variants: dict[str, str] = {}
    variant_info: dict[str, Any] = {}
    if int8 is not None or fp16:
        # The variants are measured with the runtime's engine on the files written so far.
        # With the quantiles the int8 rule judges, so that it scores every output it compares.
        bundle = bundle_from_meta(work, meta_for({}, {}))
        reference = ScoreEngine(bundle, gate_options(bundle, EngineOptions(device="cpu", threads=2)))
        bench_clip = synthetic_clip(reference.window_seconds, reference.sample_rate, seed=999)
        bench_caption = caption_for(0) if cfg.uses_text else None
        if int8 is not None:
            t = time.perf_counter()
            if _int8_variant(work, reference, int8, bench_clip, bench_caption, report):
                assert report.int8 is not None
                variants["int8"] = INT8_MODEL
                variant_info["int8"] = report.int8.summary()
                files.append(INT8_MODEL)
            if report.text_int8 is not None and "int8" in variant_info:
                t8 = report.text_int8
                variant_info["int8"]["text"] = ({"written": False, "why": t8.why_dropped} if t8.dropped
                                                else {"written": True, "file": TEXT_INT8_MODEL, **t8.summary()})
                if not t8.dropped:
                    variants[TEXT_INT8_VARIANT] = TEXT_INT8_MODEL
                    files.append(TEXT_INT8_MODEL)
            stages["int8"] = time.perf_counter() - t
        if fp16:
            t = time.perf_counter()
            report.fp16 = convert_fp16(reference, work / FP16_MODEL, bench_clip, bench_caption)
            variants["fp16"] = FP16_MODEL
            variant_info["fp16"] = {"method": "onnxruntime.transformers.float16 (keep_io_types)",
                                    "runs_on_cpu": report.fp16.runs_on_cpu}
            files.append(FP16_MODEL)
            stages["fp16"] = time.perf_counter() - t
        del reference

    t = time.perf_counter()
    meta = meta_for(variants, variant_info)
    mirrored = {k: v for k, v in meta.items() if k != "files"}
    for name in files:
        if name.endswith(".onnx"):
            embed_metadata(work / name, mirrored)
    write_bundle_meta(work, meta)
    stages["metadata"] = time.perf_counter() - t

    if verify:
        t = time.perf_counter()
        report.verify = verify_bundle(work, model, text_encoder=encoder)
        stages["verify"] = time.perf_counter() - t
    return report
