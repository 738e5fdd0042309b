"""The loaded bundle: audio (and text) sessions plus the caption cache; scores waveforms in memory."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mos.audio import window_samples
from mos.bundle import AUDIO_INPUTS, EMBEDDING_OUTPUT, TEXT_INPUTS, Bundle, load_bundle
from mos.distribution import quantile, quantile_column, spread_column
from mos.errors import BundleError, MosError
from mos.runtime.batching import pad_token_features, pad_waveforms, plan_batches
from mos.runtime.session import CUDA, SessionConfig, SessionRunner, open_session, usable_cores
from mos.runtime.text import CaptionSource, TextEncoder
from mos.windows import second_moment, split_windows, spread_of, window_mean


@dataclass(frozen=True)
class EngineOptions:
    """Device ('auto', 'cpu', 'cuda'), intra-op threads per session run and concurrent runs
    (`streams`; both 0 = `plan_streams`), the int8 variants (audio, and text when the bundle has
    text.int8.onnx), the audio batch size (0 = 16 on CPU, 64 on CUDA), and for a bundle that
    predicts the listener spread, the quantiles to report (e.g. (0.1, 0.9))."""

    device: str = "auto"
    threads: int = 0
    streams: int = 0
    int8: bool = False
    fp16: bool = False  # the bundle's audio.fp16.onnx (mos export --fp16; meant for CUDA)
    batch_size: int = 0
    text_batch_size: int = 64
    quantiles: tuple[float, ...] = ()


def audio_variant(int8: bool, fp16: bool) -> str:
    """'int8', 'fp16' or 'fp32': the audio model a run asks for (not both reduced precisions)."""
    if int8 and fp16:
        raise MosError("--int8 and --fp16 exclude each other: int8 is the CPU variant, fp16 the GPU one")
    return "int8" if int8 else "fp16" if fp16 else "fp32"


def plan_streams(streams: int, threads: int, cores: int) -> tuple[int, int]:
    """(concurrent session runs, intra-op threads per run) for `cores` CPUs; 0 means choose.

    By default every core runs its own single-threaded batch: on 2 cores two 1-thread runs of the
    edge model score more clips/s than one 2-thread run (ORT's intra-op parallelism does not
    scale across the small ops; docs/onnx-notes.md), and the caption encoder of one batch
    overlaps the audio model of another. `threads` alone keeps one run of that many threads (what
    a user who caps the CPU, or a Ray actor, asks for); `streams` alone splits the cores among the
    runs."""
    if streams <= 0:
        streams = cores if threads <= 0 else 1
    if threads <= 0:
        threads = max(1, cores // streams)
    return streams, threads


def _check_interface(runner: SessionRunner, path: Path, inputs: Sequence[str], outputs: Sequence[str]) -> None:
    missing_in = [n for n in inputs if n not in runner.input_names]
    missing_out = [n for n in outputs if n not in runner.output_names]
    if missing_in or missing_out:
        parts = []
        if missing_in:
            parts.append(f"inputs {', '.join(missing_in)} missing (has {', '.join(runner.input_names)})")
        if missing_out:
            parts.append(f"outputs {', '.join(missing_out)} missing (has {', '.join(runner.output_names)})")
        raise BundleError(f"{path}: does not match mos.json: {'; '.join(parts)}")


def open_text_encoder(bundle: Bundle, cfg: SessionConfig, batch_size: int = 64, int8: bool = False,
                      path: Path | None = None) -> TextEncoder:
    """The bundle's caption encoder: text.onnx (checked against the interface) and tokenizer.json;
    with `int8`, text.int8.onnx when the bundle has it (older bundles: text.onnx). `path` replaces
    the text model with a file of the same interface (export measures its variant with it)."""
    text_meta = bundle.meta.get("text") or {}
    text_path = path or bundle.text_model("int8" if int8 and bundle.has_text_variant("int8") else "fp32")
    runner = SessionRunner(open_session(text_path, cfg))
    _check_interface(runner, text_path, ("input_ids", "attention_mask"), ())
    return TextEncoder(runner, bundle.tokenizer(), int(text_meta.get("max_tokens", 64)), batch_size=batch_size)


def clamp_scores(bundle: Bundle, scores: np.ndarray) -> np.ndarray:
    """Clamp scores [..., n_targets] to each target's [low, high] from the bundle (float64)."""
    low = np.array([t.low for t in bundle.targets], dtype=np.float64)
    high = np.array([t.high for t in bundle.targets], dtype=np.float64)
    return np.clip(np.asarray(scores, dtype=np.float64), low, high)


def output_columns(bundle: Bundle, quantiles: Sequence[float] = ()) -> list[str]:
    """What each clip gets: the targets' scores, then for a distribution model each target's
    listener spread (`<target>_std`) and the `quantiles` of Normal(score, spread) in range."""
    spreads = [spread_column(t) for t in bundle.target_names] if bundle.predicts_spread else []
    if quantiles and not spreads:
        raise MosError(f"{bundle.root}: --quantiles needs a bundle whose model predicts the listener spread "
                       "(trained with --distribution)")
    return bundle.target_names + spreads + [quantile_column(t, q) for t in bundle.target_names for q in quantiles]


def unpack_raw(bundle: Bundle, raw: np.ndarray) -> np.ndarray:
    """Raw rows (unclamped scores, then a distribution model's second moments spread^2 + score^2,
    which average over a clip's windows as the scores do) -> unclamped scores, then spreads."""
    raw = np.asarray(raw, dtype=np.float64)
    if not bundle.predicts_spread:
        return raw
    t = len(bundle.targets)
    spread = spread_of(raw[..., :t], raw[..., t:])
    return np.concatenate([raw[..., :t], spread], axis=-1)


def finish_raw(bundle: Bundle, quantiles: Sequence[float], raw: np.ndarray) -> np.ndarray:
    """A clip's window-averaged raw row(s) -> its `output_columns`: scores clamped to each
    target's range; spreads from the averaged second moments (the windows' mixture); quantiles."""
    unpacked = unpack_raw(bundle, raw)
    t = len(bundle.targets)
    scores = clamp_scores(bundle, unpacked[..., :t])
    if not bundle.predicts_spread:
        return scores
    spread = unpacked[..., t:]
    parts = [scores, spread]
    for j, target in enumerate(bundle.targets):
        for q in quantiles:
            parts.append(quantile(scores[..., j], spread[..., j], q, target.low, target.high)[..., None])
    return np.concatenate(parts, axis=-1)


class ScoreEngine:
    """Sessions of one bundle. `score_arrays` scores float32 mono waveforms at `sample_rate`.

    Scores come back [n, len(targets)] on each target's scale. Every clip scores the same alone
    or in any batch (the model masks padding); clips longer than the window are scored in windows
    and averaged weighted by valid length, then clamped to the target's range, as `mos score`
    does for files.
    """

    def __init__(
        self, bundle: Bundle, options: EngineOptions | None = None, *,
        audio_path: Path | None = None, text: CaptionSource | None = None,
    ) -> None:
        """`audio_path` replaces the bundle's audio model with a file of the same interface (export
        measures a variant with it before mos.json lists it); `text` shares another engine's
        caption encoder (and its cache), or gives captions encoded beforehand (a CaptionTable, as
        the Ray actors get), instead of opening text.onnx again."""
        self.bundle = bundle
        self.options = options or EngineOptions()
        streams, threads = plan_streams(self.options.streams, self.options.threads, usable_cores())
        cfg = SessionConfig(device=self.options.device, threads=threads)
        self.threads: int = threads
        if audio_path is None:
            audio_path = bundle.audio_model(audio_variant(self.options.int8, self.options.fp16))
        # The caption encoder's session opens on a thread beside the audio model's (ONNX Runtime
        # releases the GIL while it loads and optimises a graph): a one-file run starts sooner.
        opening: Future[TextEncoder] | None = None
        if bundle.uses_text and text is None:
            with ThreadPoolExecutor(1, thread_name_prefix="mos-open") as pool:
                opening = pool.submit(open_text_encoder, bundle, cfg, self.options.text_batch_size, self.options.int8)
                try:
                    self.audio = SessionRunner(open_session(audio_path, cfg))
                except BaseException:
                    opening.cancel()
                    raise
        else:
            self.audio = SessionRunner(open_session(audio_path, cfg))
        self.targets: list[str] = bundle.target_names
        # A distribution model also gives each target's listener spread, `<target>_std`.
        self.spread_names: list[str] = [spread_column(t) for t in self.targets] if bundle.predicts_spread else []
        self.columns: list[str] = output_columns(bundle, self.options.quantiles)
        wanted = list(AUDIO_INPUTS) + (list(TEXT_INPUTS) if bundle.uses_text else [])
        _check_interface(self.audio, audio_path, wanted, self.targets + self.spread_names)
        self._output_index = [self.audio.output_names.index(t) for t in self.targets + self.spread_names]
        # The pooled audio embedding (bundles that list audio.embedding; `embed_arrays` returns it).
        self._embedding_index: int | None = (self.audio.output_names.index(EMBEDDING_OUTPUT)
                                             if bundle.embedding_dim and EMBEDDING_OUTPUT in self.audio.output_names else None)
        self.text: CaptionSource | None = text if bundle.uses_text else None
        if opening is not None:
            self.text = opening.result()
        self.provider: str = self.audio.provider
        # Concurrent batches (mos.runtime.pipeline): one at a time on a GPU unless asked.
        self.streams: int = streams if self.provider != CUDA or self.options.streams > 0 else 1
        default_batch = 64 if self.provider == CUDA else 16
        self.batch_size: int = self.options.batch_size if self.options.batch_size > 0 else default_batch
        # Encoders that zero padding changes see only batches of equal length, never padded.
        self.equal_lengths: bool = not bundle.padding_invariant
        # On CUDA, pad batches to whole seconds so few distinct shapes reach cuDNN's algorithm search.
        self.pad_multiple: int = self.sample_rate if self.provider == CUDA and not self.equal_lengths else 1

    @classmethod
    def load(cls, bundle_dir: Path | str, options: EngineOptions | None = None) -> ScoreEngine:
        """load_bundle (schema, files, hashes) then open its sessions."""
        return cls(load_bundle(bundle_dir), options)

    @property
    def sample_rate(self) -> int:
        return self.bundle.sample_rate

    @property
    def window_seconds(self) -> float:
        return self.bundle.window_seconds

    @property
    def window_samples(self) -> int:
        return window_samples(self.window_seconds, self.sample_rate)

    @property
    def uses_text(self) -> bool:
        return self.text is not None

    def _run_batch(self, waves: Sequence[np.ndarray], feats: Sequence[np.ndarray] | None
                   ) -> tuple[np.ndarray, np.ndarray | None]:
        """(raw rows, the pooled audio embeddings when the bundle outputs them, else None)."""
        waveform, lengths = pad_waveforms(waves, self.pad_multiple)
        feeds = {"waveform": waveform, "lengths": lengths}
        if feats is not None:
            feeds["text"], feeds["text_lengths"] = pad_token_features(feats)
        outputs = self.audio.run(feeds)
        out = np.stack([np.asarray(outputs[i], dtype=np.float64).reshape(-1) for i in self._output_index], axis=1)
        if self.spread_names:  # spreads -> second moments, which average over a clip's windows
            t = len(self.targets)
            out[:, t:] = second_moment(out[:, :t], out[:, t:])
        emb = None if self._embedding_index is None else np.asarray(outputs[self._embedding_index], dtype=np.float32)
        return out, emb

    def _caption_features(self, captions: Sequence[str | None], source: CaptionSource | None = None
                          ) -> list[np.ndarray] | None:
        if self.text is None:
            return None
        if any(not c for c in captions):
            raise MosError("this bundle's model needs a caption for every clip")
        return (source or self.text).encode([c for c in captions if c])

    def score_segments(
        self, waves: Sequence[np.ndarray], captions: Sequence[str | None], batch_size: int | None = None,
        streams: int | None = None, text: CaptionSource | None = None, embeddings: np.ndarray | None = None,
    ) -> np.ndarray:
        """One raw row per segment (no windowing): unclamped scores, then for a distribution model
        each target's second moment (spread^2 + score^2, so that a clip's windows average like its
        scores; `finish` turns them back into spreads); similar lengths batched (equal lengths
        only when the bundle is not padding invariant), input order kept. The batches run on
        `streams` threads at once (default: the engine's; the pipeline, which runs chunks
        concurrently itself, asks for 1). `text` looks the captions up instead of the engine's
        encoder (the pipeline's features of the captions it still needs)."""
        n = len(waves)
        out = np.zeros((n, len(self._output_index)), dtype=np.float64)
        if n == 0:
            return out
        feats = self._caption_features(captions, text)
        batches = plan_batches([w.shape[0] for w in waves], batch_size or self.batch_size, self.equal_lengths)

        def run(batch: list[int]) -> None:
            rows, emb = self._run_batch([waves[i] for i in batch], None if feats is None else [feats[i] for i in batch])
            out[batch] = rows
            if embeddings is not None and emb is not None:
                embeddings[batch] = emb

        workers = min(len(batches), self.streams if streams is None else max(1, streams))
        if workers <= 1:
            for batch in batches:
                run(batch)
        else:
            with ThreadPoolExecutor(workers, thread_name_prefix="mos-batch") as pool:
                for _ in pool.map(run, batches):  # re-raises the first batch's error
                    pass
        return out

    def score_arrays(self, waveforms: Sequence[np.ndarray], captions: Sequence[str | None]) -> np.ndarray:
        """Rows [n, len(columns)] (float64) for float32 mono waveforms at `sample_rate`: the
        scores [n, n_targets] first.

        `captions[i]` may be None only for an audio-only bundle. Waveforms longer than the window
        are cut into windows and their scores averaged, weighted by each window's length.
        """
        return self._windowed(waveforms, captions, False)[0]

    def embed_arrays(self, waveforms: Sequence[np.ndarray], captions: Sequence[str | None]
                     ) -> tuple[np.ndarray, np.ndarray]:
        """(`score_arrays`'s rows, the pooled audio embeddings [n, embedding_dim] float32) from one
        run of the audio model; a long clip's windows are averaged weighted by length, as its scores
        are. Needs a bundle that outputs the embedding (mos.json audio.embedding)."""
        if self._embedding_index is None:
            raise MosError(f"{self.bundle.root}: this bundle's audio model has no pooled-embedding output "
                           f"(exported by an older mos); export it again with this version (mos export RUN)")
        rows, emb = self._windowed(waveforms, captions, True)
        assert emb is not None
        return rows, emb

    def _windowed(self, waveforms: Sequence[np.ndarray], captions: Sequence[str | None], embed: bool
                  ) -> tuple[np.ndarray, np.ndarray | None]:
        if len(waveforms) != len(captions):
            raise ValueError(f"{len(waveforms)} waveforms but {len(captions)} captions")
        seg_waves: list[np.ndarray] = []
        seg_caps: list[str | None] = []
        owner: list[int] = []
        for i, (wave, caption) in enumerate(zip(waveforms, captions)):
            wave = np.ascontiguousarray(wave, dtype=np.float32)
            if wave.ndim != 1 or wave.shape[0] == 0:
                raise ValueError(f"waveform {i}: expected a non-empty 1-D array, got shape {wave.shape}")
            for piece in split_windows(wave, self.window_samples):
                seg_waves.append(piece)
                seg_caps.append(caption)
                owner.append(i)
        seg_emb = np.zeros((len(seg_waves), self.bundle.embedding_dim), dtype=np.float32) if embed else None
        seg_scores = self.score_segments(seg_waves, seg_caps, embeddings=seg_emb)
        owner_arr = np.array(owner, dtype=np.int64)
        weights = np.array([w.shape[0] for w in seg_waves], dtype=np.float64)
        out = np.zeros((len(waveforms), seg_scores.shape[1]), dtype=np.float64)
        emb = None if seg_emb is None else np.zeros((len(waveforms), seg_emb.shape[1]), dtype=np.float32)
        for i in range(len(waveforms)):
            sel = owner_arr == i
            out[i] = window_mean(seg_scores[sel], weights[sel])
            if emb is not None and seg_emb is not None:
                emb[i] = window_mean(seg_emb[sel].astype(np.float64), weights[sel])
        return self.finish(out), emb

    @property
    def raw_width(self) -> int:
        """Values per raw row: the scores, and a distribution model's second moments."""
        return len(self._output_index)

    def unpack(self, raw: np.ndarray) -> np.ndarray:
        """Raw rows -> unclamped scores, then spreads (`unpack_raw`)."""
        return unpack_raw(self.bundle, raw)

    def finish(self, raw: np.ndarray) -> np.ndarray:
        """A clip's window-averaged raw row(s) -> its `columns` (`finish_raw`)."""
        return finish_raw(self.bundle, self.options.quantiles, raw)

    def clamp(self, scores: np.ndarray) -> np.ndarray:
        """Clamp scores [..., n_targets] to each target's [low, high] from the bundle: applied
        after a clip's windows are averaged, never to single windows (the graph's outputs are
        unclamped; for a bundle whose graph clamps itself this changes nothing)."""
        return clamp_scores(self.bundle, scores)
