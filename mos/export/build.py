"""export_bundle: checkpoint -> audio.onnx (+ text.onnx, tokenizer, variants) + mos.json, verified."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from mos.bundle import MANIFEST_NAME, sha256_file, write_manifest
from mos.errors import MosError
from mos.export.clips import caption_for, synthetic_clip, synthetic_clips
from mos.export.fp16 import FP16_MODEL, convert_fp16
from mos.export.manifest import WINDOW_SECONDS, build_meta
from mos.export.onnx_io import embed_metadata, export_torchscript
from mos.export.ort_side import OrtText
from mos.export.quantize import INT8_MODEL, pick_calibration, quantize_int8
from mos.export.report import ExportReport
from mos.export.text import TEXT_MODEL, TOKENIZER, export_text
from mos.export.verify import verify_bundle
from mos.export.wrapper import (
    TEXT_MODEL_INPUTS,
    AudioExport,
    audio_dynamic_axes,
    audio_input_names,
    audio_output_names,
)
from mos.model import MosModel
from mos.trainer.checkpoint import find_checkpoint, load_model

AUDIO_MODEL = "audio.onnx"
# Trace shapes: batch 2 (batch 1 would fix the batch axis) and lengths no check uses.
TRACE_SECONDS = (3.7, 2.2)
TRACE_TOKENS = (9, 5)
SYNTHETIC_CALIBRATION = 16


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


def _caption_features(ort_text: OrtText, captions: list[str]) -> list[np.ndarray]:
    """Features per caption, each distinct caption encoded once (alone, as the runtime may)."""
    distinct = {c: ort_text.features([c])[0] for c in dict.fromkeys(captions)}
    return [distinct[c] for c in captions]


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
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST_NAME).is_file():
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
    validation: tuple[Sequence[np.ndarray], Sequence[str] | None, np.ndarray] | None = None,
) -> ExportReport:
    """Export a run folder or checkpoint to a bundle at `out` (default `<run dir>/bundle`).

    quantize: None or "int8" (static QDQ, calibrated on `calibration_clips` at the model rate,
    paired with `calibration_captions`; synthetic noise+tones when None). `validation` =
    (clips, captions or None, ratings [n, n_targets] on the target scales) adds the validation
    SRCC of fp32 vs int8 to the int8 report. Verification failure
    raises MosError naming the worst case and leaves no bundle behind.
    """
    source = Path(source)
    if quantize not in (None, "int8"):
        raise MosError(f"--quantize {quantize!r}: only 'int8' is supported")
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
        report = _export_into(work, out, model, ckpt, checkpoint, opset, quantize, fp16,
                              calibration_clips, calibration_captions, validation, verify, stages)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    _install(work, out)
    report.bundle = out
    if report.verify is not None:
        report.verify.bundle = out
    for name in (AUDIO_MODEL, TEXT_MODEL, TOKENIZER, INT8_MODEL, FP16_MODEL, MANIFEST_NAME):
        if (out / name).is_file():
            report.files[name] = (out / name).stat().st_size
    if report.int8 is not None and not report.int8.dropped:
        report.int8.path = out / INT8_MODEL
    if report.fp16 is not None:
        report.fp16.path = out / FP16_MODEL
    return report


def _export_into(
    work: Path, out: Path, model: MosModel, ckpt: dict[str, Any], checkpoint: Path, opset: int,
    quantize: str | None, fp16: bool, calibration_clips: list[np.ndarray] | None,
    calibration_captions: Sequence[str] | None,
    validation: tuple[Sequence[np.ndarray], Sequence[str] | None, np.ndarray] | None,
    verify: bool, stages: dict[str, float],
) -> ExportReport:
    cfg = model.cfg
    report = ExportReport(out, checkpoint, opset, seconds=stages)
    inputs, outputs = audio_input_names(model), audio_output_names(model)

    t = time.perf_counter()
    export_torchscript(AudioExport(model), _trace_inputs(model), work / AUDIO_MODEL, opset,
                       inputs, outputs, audio_dynamic_axes(inputs, outputs))
    stages["audio.onnx"] = time.perf_counter() - t

    encoder = None
    text_meta: dict[str, Any] | None = None
    ort_text: OrtText | None = None
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
                     "max_tokens": int(cfg.max_text_tokens), "dim": int(encoder.dim)}
        stages["text.onnx"] = time.perf_counter() - t

    sr = cfg.sample_rate
    window = int(WINDOW_SECONDS * sr)
    bench_clip = synthetic_clip(WINDOW_SECONDS, sr, seed=999)
    bench_text = None
    if cfg.uses_text:
        ort_text = OrtText(work / TEXT_MODEL, work / TOKENIZER, cfg.max_text_tokens)
        bench_text = ort_text.features([caption_for(0)])[0]

    variants: dict[str, str] = {}
    variant_info: dict[str, Any] = {}
    if quantize == "int8":
        t = time.perf_counter()
        synthetic = calibration_clips is None
        clips, picked = pick_calibration(calibration_clips if calibration_clips is not None
                                         else synthetic_clips(SYNTHETIC_CALIBRATION, WINDOW_SECONDS, sr), window)
        text = None
        if ort_text is not None:
            caps = list(calibration_captions) if calibration_captions else None
            text = _caption_features(ort_text, [caps[i % len(caps)] if caps else caption_for(i) for i in picked])
        val = None
        if validation is not None:
            v_clips, v_caps, v_true = validation
            v_text = None
            if ort_text is not None:
                if v_caps is None:
                    raise MosError("validation: this model uses text; give the validation captions")
                v_text = _caption_features(ort_text, list(v_caps))
            val = (list(v_clips), v_text, np.asarray(v_true, dtype=np.float64).reshape(len(v_clips), -1))
        ranges = {tg.name: float(tg.high - tg.low) for tg in cfg.targets}
        report.int8 = quantize_int8(work / AUDIO_MODEL, work / INT8_MODEL, clips, text, ranges, bench_clip, bench_text,
                                    val)
        if synthetic:
            report.int8.notes.append("calibrated on synthetic noise+tones (no calibration clips given)")
        if report.int8.ok:
            variants["int8"] = INT8_MODEL
            variant_info["int8"] = report.int8.summary()
            files.append(INT8_MODEL)
        else:  # keep what holds: the fp32 bundle, without a variant that misses its tolerance
            (work / INT8_MODEL).unlink()
            report.int8.dropped = True
            report.notes.append(f"int8 variant NOT written: {report.int8.failure()}")
        stages["int8"] = time.perf_counter() - t
    if fp16:
        t = time.perf_counter()
        report.fp16 = convert_fp16(work / AUDIO_MODEL, work / FP16_MODEL, bench_clip, bench_text)
        variants["fp16"] = FP16_MODEL
        variant_info["fp16"] = {"method": "onnxruntime.transformers.float16 (keep_io_types)",
                                "runs_on_cpu": report.fp16.runs_on_cpu}
        files.append(FP16_MODEL)
        stages["fp16"] = time.perf_counter() - t

    t = time.perf_counter()
    meta = build_meta(model, ckpt, checkpoint, sha256_file(checkpoint), out, opset,
                      {name: "" for name in files}, inputs, outputs, text_meta, variants, variant_info)
    mirrored = {k: v for k, v in meta.items() if k != "files"}
    for name in files:
        if name.endswith(".onnx"):
            embed_metadata(work / name, mirrored)
    write_manifest(work, meta)
    stages["metadata"] = time.perf_counter() - t

    if verify:
        t = time.perf_counter()
        report.verify = verify_bundle(work, model, text_encoder=encoder)
        stages["verify"] = time.perf_counter() - t
    return report
