"""Verify a bundle: onnx.checker, interface vs mos.json, the recorded checkpoint unchanged, ORT vs
PyTorch parity, padding, variants. ONNX Runtime is driven through the runtime's own engine, so what
is verified is what `mos score` runs."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from mos.bundle import EMBEDDING_OUTPUT, Bundle, load_bundle
from mos.distribution import spread_column
from mos.errors import MosError, one_line
from mos.export.bench import padding_gap, scores_alone
from mos.export.clips import CAPTIONS, LONG_CAPTION, synthetic_clip
from mos.export.onnx_io import check_onnx, interface, read_metadata
from mos.export.agreement import gate_options
from mos.export.bench import score_clips
from mos.export.quantize import INT8_PADDING_TOL
from mos.export.wrapper import TEXT_MODEL_INPUTS, TEXT_MODEL_OUTPUT, expected_dims, text_output_dims
from mos.files import sha256_file
from mos.runtime.engine import EngineOptions, ScoreEngine
from mos.runtime.text import TextEncoder

if TYPE_CHECKING:
    from mos.model import MosModel
    from mos.model.text_encoder import FrozenTextEncoder

PARITY_TOL = 1e-4
PADDING_TOL = 1e-4
# int8 on the verification clips may not move an output by as much as fp32's output varies between
# real clips (an error of that size leaves it at chance level); export's int8 rule is the decision.
INT8_SANITY = 1.0
SINGLE_SECONDS = (0.3, 1.0, 7.3, 10.0, 30.0, 60.0)
BATCH_SECONDS = (0.3, 2.5, 7.3)


@dataclass
class Check:
    """One verification step: `worst` vs `tolerance` when it is a measurement."""

    name: str
    ok: bool
    detail: str
    worst: float | None = None
    tolerance: float | None = None

    @property
    def severity(self) -> float:
        if self.worst is None or not self.tolerance:
            return float("inf")
        return self.worst / self.tolerance


@dataclass
class VerifyReport:
    bundle: Path
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    compared_with_torch: bool = False

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return sorted((c for c in self.checks if not c.ok), key=lambda c: -c.severity)

    def worst(self, name: str) -> float | None:
        for c in self.checks:
            if c.name == name:
                return c.worst
        return None

    def format(self) -> list[str]:
        lines = [f"verify {self.bundle}: {'ok' if self.ok else 'FAILED'} ({self.seconds:.1f} s)"]
        for c in self.checks:
            lines.append(f"  [{'ok' if c.ok else 'FAIL'}] {c.name}: {c.detail}")
        lines += [f"  note: {n}" for n in self.notes]
        return lines

    def raise_if_failed(self) -> None:
        bad = self.failures
        if bad:
            more = f" (and {len(bad) - 1} more failed check(s))" if len(bad) > 1 else ""
            raise MosError(bad[0].detail + more)


def _fmt(x: float) -> str:
    return f"{x:.1e}"


def _dims_ok(actual: Sequence[str | int], expected: Sequence[str | int | None]) -> bool:
    if len(actual) != len(expected):
        return False
    return all(e is None and isinstance(a, int) and a > 0 or a == e for a, e in zip(actual, expected))


def _check_files(bundle: Bundle, report: VerifyReport) -> dict[str, Any]:
    """(1) onnx.checker and metadata_props == mos.json (without files) on every ONNX file."""
    meta_nofiles = {k: v for k, v in bundle.meta.items() if k != "files"}
    protos: dict[str, Any] = {}
    names = [bundle.audio_model().name]
    if bundle.uses_text:
        names.append(bundle.text_model().name)
    names += list(bundle.meta.get("variants", {}).values())
    for name in names:
        proto = check_onnx(bundle.root / name)
        protos[name] = proto
        embedded = read_metadata(proto)
        same = embedded == meta_nofiles
        report.checks.append(Check(
            f"{name} checker+metadata", same,
            f"{name}: onnx.checker ok; metadata_props['mos.json'] "
            + ("matches mos.json" if same else "missing" if embedded is None else "differs from mos.json"),
        ))
    return protos


def _check_interface(bundle: Bundle, protos: dict[str, Any], report: VerifyReport) -> None:
    """(2) input/output names and symbolic (dynamic) axes equal what mos.json says."""
    audio = bundle.meta["audio"]
    want_in, want_out = list(audio["inputs"]), list(audio["outputs"])
    problems: list[str] = []
    expected = bundle.target_names + ([spread_column(t) for t in bundle.target_names] if bundle.predicts_spread else [])
    expected += [EMBEDDING_OUTPUT] if bundle.embedding_dim else []
    if want_out != expected:
        problems.append(f"mos.json audio outputs {want_out} != {expected}")
    audio_files = [bundle.audio_model().name] + list(bundle.audio_variants.values())
    for name in audio_files:
        ins, outs = interface(protos[name])
        if list(ins) != want_in:
            problems.append(f"{name}: inputs {list(ins)} != mos.json {want_in}")
        if list(outs) != want_out:
            problems.append(f"{name}: outputs {list(outs)} != mos.json {want_out}")
        for io_name, dims in [*ins.items(), *outs.items()]:
            exp = expected_dims(io_name) if io_name in ins else ["batch"]
            if io_name == EMBEDDING_OUTPUT and io_name in outs:
                exp = ["batch", bundle.embedding_dim]
            if io_name == "text" and bundle.uses_text:
                exp = ["batch", "tokens", int(bundle.meta["text"]["dim"])]
            if not _dims_ok(dims, exp):
                problems.append(f"{name}: '{io_name}' has dims {dims}, expected {exp} (dynamic axes must be dim_param)")
    text_files = [bundle.text_model().name] if bundle.uses_text else []
    if bundle.has_text_variant("int8"):
        text_files.append(bundle.text_model("int8").name)
    for name in text_files:
        ins, outs = interface(protos[name])
        if list(ins) != list(TEXT_MODEL_INPUTS) or list(outs) != [TEXT_MODEL_OUTPUT]:
            problems.append(f"{name}: interface {list(ins)} -> {list(outs)}, expected "
                            f"{list(TEXT_MODEL_INPUTS)} -> {[TEXT_MODEL_OUTPUT]}")
        else:
            for io_name, dims in [*ins.items(), *outs.items()]:
                exp = expected_dims(io_name)
                if io_name == TEXT_MODEL_OUTPUT:  # text.int8.onnx: exactly text.onnx's own dims
                    exp = text_output_dims(int(bundle.meta["text"]["dim"]), bundle.text_pooled)
                if not _dims_ok(dims, exp):
                    problems.append(f"{name}: '{io_name}' has dims {dims}, expected {exp}")
    detail = "; ".join(problems) if problems else "names and dynamic axes (batch, samples, tokens) match mos.json"
    report.checks.append(Check("interface", not problems, detail))


def _load_reference_model(bundle: Bundle, report: VerifyReport) -> Any:
    """The checkpoint recorded in mos.json, when it still exists unchanged; else None.

    A checkpoint that is gone is a note (the bundle may have been copied elsewhere: parity is
    skipped). One that changed since export is a failed check: the bundle is stale.
    """
    from mos.export.bundle_meta import resolve_checkpoint

    training = bundle.meta.get("training") or {}
    ref = training.get("checkpoint")
    if not ref:
        report.notes.append("no checkpoint recorded in mos.json: PyTorch parity (check 3) skipped")
        return None
    path = resolve_checkpoint(ref, bundle.root)
    if not path.is_file():
        report.notes.append(f"checkpoint {path} not found: PyTorch parity (check 3) skipped; "
                            "ran checker, interface and padding checks only")
        return None
    recorded = training.get("checkpoint_sha256")
    if recorded and sha256_file(path) != recorded:
        report.checks.append(Check("checkpoint", False, f"stale bundle: {path} changed since export; re-export"))
        return None
    from mos.trainer.checkpoint import load_model

    model, _ = load_model(path)
    report.notes.append(f"compared with PyTorch from {path}")
    return model


def _torch_scores(model: Any, clips: Sequence[np.ndarray], captions: Sequence[str] | None, encoder: Any) -> np.ndarray:
    import torch

    from mos.runtime.batching import pad_token_features

    rows = []
    with torch.no_grad():
        for i, clip in enumerate(clips):
            wave = torch.from_numpy(clip)[None]
            lengths = torch.tensor([len(clip)], dtype=torch.long)
            if encoder is not None and captions is not None:
                feats, feat_lengths = pad_token_features([f.numpy() for f in encoder.encode([captions[i]])])
                text, text_lengths = torch.from_numpy(feats), torch.from_numpy(feat_lengths)
            else:
                text = text_lengths = None
            if model.cfg.predicts_spread:  # scores, then spreads, as the runtime's columns
                scores, spread = model.scores_and_spread(wave, lengths, text, text_lengths, clamp=False)
                rows.append(torch.cat([scores, spread], dim=-1)[0].numpy())
            else:
                rows.append(model.scores(wave, lengths, text, text_lengths, clamp=False)[0].numpy())
    return np.stack(rows).astype(np.float32)


def _check_tokenizer(text: TextEncoder, encoder: Any, report: VerifyReport) -> None:
    captions = [*CAPTIONS[:4], LONG_CAPTION, ""]
    ours = text.ids(captions)
    batch = encoder.tokenize(captions)
    theirs = [batch["input_ids"][i, : int(batch["attention_mask"][i].sum())].tolist() for i in range(len(captions))]
    bad = [c for c, a, b in zip(captions, ours, theirs) if a != b]
    detail = (f"tokenizer.json ids equal the transformers tokenizer's on {len(captions)} captions (incl. truncation)"
              if not bad else f"tokenizer.json: ids differ from the transformers tokenizer for caption {bad[0][:60]!r}")
    report.checks.append(Check("tokenizer", not bad, detail))


def _check_parity(
    bundle: Bundle, model: Any, encoder: Any, engine: ScoreEngine,
    clips: list[np.ndarray], captions: list[str], report: VerifyReport,
) -> np.ndarray:
    """(3) ORT vs PyTorch per single clip, both unclamped; returns the ORT scores [n, targets]."""
    names = bundle.target_names
    if (list(model.cfg.target_names) != names or int(model.cfg.sample_rate) != bundle.sample_rate
            or bool(model.cfg.uses_text) != bundle.uses_text):
        raise MosError(f"{bundle.root}: the PyTorch model ({model.cfg.target_names} at {model.cfg.sample_rate} Hz) "
                       f"is not this bundle's ({names} at {bundle.sample_rate} Hz)")
    ort_scores = scores_alone(engine, clips, captions)
    ref = _torch_scores(model, clips, captions if engine.uses_text else None, encoder)
    diff = np.abs(ort_scores - ref)
    i, j = np.unravel_index(int(np.argmax(diff)), diff.shape)
    worst = float(diff[i, j])
    seconds = len(clips[i]) / bundle.sample_rate
    name = bundle.audio_model().name
    if worst <= PARITY_TOL:
        detail = (f"{name}: ORT vs PyTorch on {len(clips)} clips "
                  f"({', '.join(f'{len(c) / bundle.sample_rate:g}' for c in clips)} s): "
                  f"max abs diff {_fmt(worst)} ({seconds:g} s, '{(engine.targets + engine.spread_names)[j]}'; tolerance {_fmt(PARITY_TOL)})")
    else:
        detail = (f"{name}: {seconds:.1f} s clip differs from PyTorch by {_fmt(worst)} on '{(engine.targets + engine.spread_names)[j]}' "
                  f"(tolerance {_fmt(PARITY_TOL)})")
    report.checks.append(Check("parity", worst <= PARITY_TOL, detail, worst, PARITY_TOL))
    return ort_scores


def _padding_case(bundle: Bundle, engine: ScoreEngine, label: str, tol: float, report: VerifyReport) -> None:
    """(4)/(5) a padded batch of mixed lengths and captions: each clip vs itself alone, end to end."""
    sr = bundle.sample_rate
    # A bundle that zero padding changes is never padded (the runtime batches equal lengths only):
    # check a batch of equal-length clips against each clip alone instead.
    seconds = BATCH_SECONDS if bundle.padding_invariant else (BATCH_SECONDS[1],) * len(BATCH_SECONDS)
    clips = [synthetic_clip(s, sr, seed=100 + k) for k, s in enumerate(seconds)]
    captions = [CAPTIONS[k + 1] for k in range(len(clips))]
    worst, i, j = padding_gap(engine, clips, captions)
    secs = f"{seconds[i]:g} s"
    what = ", different captions" if engine.uses_text else ""
    kind = "padded batch" if bundle.padding_invariant else "equal-length batch (not padding invariant: never padded)"
    if worst <= tol:
        detail = (f"{label}: {kind} ({', '.join(f'{s:g}' for s in seconds)} s{what}) "
                  f"vs alone: max abs diff {_fmt(worst)} (tolerance {_fmt(tol)})")
    else:
        detail = (f"{label}: the {secs} clip scores {_fmt(worst)} differently padded in a batch than alone "
                  f"on '{(engine.targets + engine.spread_names)[j]}' (tolerance {_fmt(tol)})")
    report.checks.append(Check(f"padding {label}", worst <= tol, detail, worst, tol))


def _check_int8(
    bundle: Bundle, fp32: ScoreEngine, clips: list[np.ndarray], captions: list[str], report: VerifyReport,
) -> None:
    """int8 padding invariance, and every output of int8 (each target's score and a distribution
    model's spreads and judged quantiles) against fp32 on the verification clips, scored as `mos
    score --int8` scores them. Whether int8 keeps accuracy is export's int8 rule, decided on the
    run's validation clips; these synthetic clips can only catch a broken variant: its RMS must
    stay below INT8_SANITY x the SD of fp32's output over those validation clips (recorded at
    export). A variant written with --force, or exported before that was recorded, is measured
    and noted only."""
    name = bundle.meta["variants"]["int8"]
    # What `mos score --int8` runs: with text.int8.onnx when the bundle has it.
    text = None if bundle.has_text_variant("int8") else fp32.text
    options = gate_options(bundle, EngineOptions(device="cpu"))
    int8 = ScoreEngine(bundle, replace(options, int8=True), text=text)
    _padding_case(bundle, int8, name, INT8_PADDING_TOL, report)
    reference = ScoreEngine(bundle, options, text=fp32.text)
    diff = score_clips(int8, clips, captions) - score_clips(reference, clips, captions)
    rms = np.sqrt((diff * diff).mean(axis=0))
    columns = reference.columns
    per = ", ".join(f"'{c}' {r:.3g}" for c, r in zip(columns, rms))
    info = (bundle.meta.get("export") or {}).get("variants", {}).get("int8", {})
    recorded = (info.get("agreement") or {}).get("outputs") or {}
    if info.get("forced") or any(c not in recorded for c in columns):
        why = "written with --force" if info.get("forced") else "exported without the spreads it is checked against"
        report.notes.append(f"{name}: RMS vs fp32 on {len(clips)} clips: {per} ({why}: not checked)")
        return
    tol = np.array([INT8_SANITY * float(recorded[c]["sd"] or 0.0) for c in columns])
    j = int(np.argmax(rms / np.maximum(tol, 1e-30)))  # the output closest to (or furthest past) its tolerance
    ok = bool((rms <= tol).all())
    if ok:
        detail = (f"{name}: RMS vs fp32 on {len(clips)} clips: {per} (tolerance: the SD of fp32's output on the "
                  f"run's validation clips, {tol[j]:.3g} on '{columns[j]}')")
    else:
        detail = (f"{name}: RMS vs audio.onnx {rms[j]:.4g} on '{columns[j]}' over {len(clips)} clips: as large as "
                  f"fp32's '{columns[j]}' varies over the run's validation clips (SD {tol[j]:.3g}, recorded at export)")
    report.checks.append(Check("int8 accuracy", ok, detail, float(rms[j]), float(tol[j])))


def _check_fp16(bundle: Bundle, fp32: ScoreEngine, clip: np.ndarray, caption: str,
                fp32_scores: np.ndarray, report: VerifyReport) -> None:
    name = bundle.meta["variants"]["fp16"]
    try:
        fp16 = ScoreEngine(bundle, EngineOptions(device="cpu"), audio_path=bundle.audio_model("fp16"), text=fp32.text)
        got = fp16.unpack(fp16.score_segments([clip], [caption], 1))[0]
    except Exception as exc:  # no CPU kernel for an fp16 op: a GPU-only variant
        report.notes.append(f"{name}: passes onnx.checker; ORT CPU cannot run it "
                            f"({one_line(exc, limit=120)})")
        return
    seconds = len(clip) / bundle.sample_rate
    report.notes.append(f"{name}: runs on ORT CPU; max abs diff to fp32 "
                        f"{_fmt(float(np.abs(got - fp32_scores).max()))} on a {seconds:g} s clip "
                        "(informational; meant for CUDA)")


def verify_bundle(
    bundle_dir: Path | str,
    model: MosModel | None = None,
    *,
    use_checkpoint: bool = True,
    text_encoder: FrozenTextEncoder | None = None,
    raise_on_failure: bool = True,
) -> VerifyReport:
    """Verify a bundle; raises MosError naming the worst failure (unless raise_on_failure=False).

    `model` (a MosModel) enables the PyTorch parity check; without it, the checkpoint recorded in
    mos.json is used when it still exists unchanged (use_checkpoint), else parity is skipped.
    `text_encoder` (a FrozenTextEncoder for the model's text encoder) saves loading it again.
    """
    start = time.perf_counter()
    bundle = load_bundle(bundle_dir)
    report = VerifyReport(bundle.root)
    protos = _check_files(bundle, report)
    _check_interface(bundle, protos, report)
    del protos
    if not report.ok:
        report.seconds = time.perf_counter() - start
        if raise_on_failure:
            report.raise_if_failed()
        return report

    if model is None and use_checkpoint:
        model = _load_reference_model(bundle, report)
    elif model is None:
        report.notes.append("no PyTorch model given: parity (check 3) skipped")
    engine = ScoreEngine(bundle, EngineOptions(device="cpu"))
    encoder = None
    if engine.text is not None:
        ort_text = engine.text
        if model is not None:
            from mos.model.text_encoder import FrozenTextEncoder

            encoder = text_encoder or FrozenTextEncoder(model.cfg.text_encoder, max_tokens=model.cfg.max_text_tokens,
                                                         expected_sha256=model.cfg.text_encoder_sha256)
            _check_tokenizer(ort_text, encoder, report)

    sr = bundle.sample_rate
    clips = [synthetic_clip(s, sr, seed=10 + k) for k, s in enumerate(SINGLE_SECONDS)]
    captions = [CAPTIONS[k % len(CAPTIONS)] for k in range(len(clips))]
    if model is not None:
        report.compared_with_torch = True
        fp32_scores = _check_parity(bundle, model.eval(), encoder, engine, clips, captions, report)
    else:
        fp32_scores = scores_alone(engine, clips, captions)
    _padding_case(bundle, engine, bundle.audio_model().name, PADDING_TOL, report)
    variants = bundle.meta.get("variants", {})
    if "int8" in variants:
        _check_int8(bundle, engine, clips, captions, report)
    if "fp16" in variants:
        ten = SINGLE_SECONDS.index(10.0)
        _check_fp16(bundle, engine, clips[ten], captions[ten], fp32_scores[ten], report)
    report.seconds = time.perf_counter() - start
    if raise_on_failure:
        report.raise_if_failed()
    return report
