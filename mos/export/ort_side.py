"""ONNX Runtime side of the checks (torch-free): caption features via tokenizers + text.onnx, and
padded audio.onnx batches."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import onnxruntime as ort


def cpu_session(path: Path, threads: int | None = None) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads is not None:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


class OrtText:
    """Caption -> token features [n_i, dim] with the bundle's tokenizer.json and text.onnx."""

    def __init__(self, model: Path, tokenizer: Path, max_tokens: int, threads: int | None = None) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(tokenizer))
        self.tokenizer.enable_truncation(max_length=max_tokens)
        self.tokenizer.no_padding()
        pad = self.tokenizer.token_to_id("[PAD]")
        self.pad_id = int(pad) if pad is not None else 0
        self.session = cpu_session(model, threads)

    def ids(self, captions: Sequence[str]) -> list[list[int]]:
        return [list(e.ids) for e in self.tokenizer.encode_batch(list(captions))]

    def features(self, captions: Sequence[str]) -> list[np.ndarray]:
        """One padded text.onnx run over `captions`; row i keeps its first n_i tokens."""
        ids = self.ids(captions)
        width = max(len(x) for x in ids)
        input_ids = np.full((len(ids), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for i, row in enumerate(ids):
            input_ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        (hidden,) = self.session.run(["text"], {"input_ids": input_ids, "attention_mask": mask})
        return [hidden[i, : len(row)].astype(np.float32) for i, row in enumerate(ids)]


def pad_batch(
    clips: Sequence[np.ndarray], text: Sequence[np.ndarray] | None
) -> dict[str, np.ndarray]:
    """Zero-padded audio.onnx feeds: waveform, lengths (and text, text_lengths)."""
    lengths = np.array([len(c) for c in clips], dtype=np.int64)
    wave = np.zeros((len(clips), int(lengths.max())), dtype=np.float32)
    for i, c in enumerate(clips):
        wave[i, : len(c)] = c
    feeds = {"waveform": wave, "lengths": lengths}
    if text is not None:
        t_len = np.array([t.shape[0] for t in text], dtype=np.int64)
        dim = int(text[0].shape[1])
        feats = np.zeros((len(text), int(t_len.max()), dim), dtype=np.float32)
        for i, t in enumerate(text):
            feats[i, : t.shape[0]] = t
        feeds["text"] = feats
        feeds["text_lengths"] = t_len
    return feeds


class OrtAudio:
    """audio.onnx (or a variant) scoring padded batches; returns [batch, n_targets] in output order."""

    def __init__(self, model: Path, threads: int | None = None) -> None:
        self.session = cpu_session(model, threads)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def scores(self, clips: Sequence[np.ndarray], text: Sequence[np.ndarray] | None = None) -> np.ndarray:
        feeds = pad_batch(clips, text if "text" in self.input_names else None)
        outs = self.session.run(self.output_names, {k: feeds[k] for k in self.input_names})
        return np.stack([np.asarray(o, dtype=np.float32) for o in outs], axis=1)
