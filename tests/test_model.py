"""The PyTorch model: padding invariance, the DFT front end against torch.stft, heads and ranges."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from mos.model import ModelConfig, MosModel, TargetSpec  # noqa: E402
from mos.model.frontend import LogMel  # noqa: E402


def _model(text: bool = True, **head: object) -> MosModel:
    torch.manual_seed(0)
    cfg = ModelConfig(
        text_encoder="minilm" if text else "none",
        targets=[TargetSpec("overall", 1, 5, 3.0, 0.8), TargetSpec("textual", 1, 5, 3.2, 0.9)],
        **head,
    )
    return MosModel(cfg).eval()


PER_TARGET = dict(head="per-target", head_layers=(32, 8), head_activation="none", audio_only_targets=("overall",))


@pytest.mark.parametrize("text,head", [(True, {}), (False, {}), (True, PER_TARGET)])
def test_padding_invariance_eager(text: bool, head: dict) -> None:
    model = _model(text, **head)
    lengths = [77, 4800, 16000, 52000, 399, 161]
    gen = torch.Generator().manual_seed(1)
    wav = torch.zeros(len(lengths), max(lengths))
    clips = [torch.randn(n, generator=gen) * 0.3 for n in lengths]
    for i, c in enumerate(clips):
        wav[i, : len(c)] = c
        wav[i, len(c):] = 5.0  # garbage past the length must not matter
    tl = [12, 3, 9, 5, 7, 1]
    tokens = torch.randn(len(lengths), max(tl), 384, generator=gen)
    L = torch.tensor(lengths)
    T = torch.tensor(tl)
    with torch.no_grad():
        batch = model.scores(wav, L, tokens if text else None, T if text else None)
        for i, c in enumerate(clips):
            alone = model.scores(c[None], L[i : i + 1], tokens[i : i + 1, : tl[i]] if text else None,
                                 T[i : i + 1] if text else None)
            assert torch.allclose(alone[0], batch[i], atol=1e-5), (lengths[i], alone, batch[i])


def test_frontend_matches_torch_stft() -> None:
    cfg = ModelConfig()
    fe = LogMel(cfg)
    x = torch.randn(1, 16000)
    feats, frames = fe.log_mel(x, torch.tensor([16000]))
    window = torch.hann_window(cfg.win_length, periodic=True)
    # Our frame i starts at i*hop - win/2 with the window at the start of an n_fft frame.
    padded = torch.nn.functional.pad(x, (cfg.win_length // 2, cfg.win_length // 2))
    frames_ = padded.unfold(1, cfg.win_length, cfg.hop_length) * window
    spec = torch.fft.rfft(frames_, n=cfg.n_fft).abs() ** 2  # [1, T, F]
    mel = torch.log(spec @ fe.mel_fbank + 1e-6).transpose(1, 2)
    assert int(frames[0]) == 16000 // cfg.hop_length + 1
    assert torch.allclose(feats[..., : mel.shape[2]], mel, atol=2e-3)


def test_per_target_heads_see_what_they_are_given() -> None:
    """The MusicEval baseline's heads: overall on the pooled audio alone, textual on [audio, text];
    linear layers only (activation none); a caption change moves textual, never overall."""
    model = _model(True, **PER_TARGET)
    audio_dim = model.cfg.audio_dim
    layers = {name: [type(m).__name__ for m in head] for name, head in model.heads.items()}
    assert layers == {"overall": ["Linear"] * 3, "textual": ["Linear"] * 3}
    assert model.heads["overall"][0].in_features == audio_dim
    assert model.heads["textual"][0].in_features == audio_dim + 384
    assert [m.out_features for m in model.heads["textual"]] == [32, 8, 1]
    gen = torch.Generator().manual_seed(2)
    wav, lengths = torch.randn(2, 8000, generator=gen) * 0.3, torch.tensor([8000, 6000])
    text_a, text_b = torch.randn(2, 5, 384, generator=gen), torch.randn(2, 5, 384, generator=gen)
    t_len = torch.tensor([5, 3])
    with torch.no_grad():
        a = model(wav, lengths, text_a, t_len)
        b = model(wav, lengths, text_b, t_len)
    assert torch.equal(a[:, 0], b[:, 0]) and not torch.allclose(a[:, 1], b[:, 1])
    # Without activations a head is one affine map: h(x + y) - h(y) = h(x) - h(0); not so with GELU.
    gelu = _model(True, **{**PER_TARGET, "head_activation": "gelu"})
    x, y = torch.randn(4, audio_dim, generator=gen), torch.randn(4, audio_dim, generator=gen)
    zero = torch.zeros(1, audio_dim)
    with torch.no_grad():
        for m, affine in ((model, True), (gelu, False)):
            h = m.heads["overall"]
            assert torch.allclose(h(x + y) - h(y), h(x) - h(zero), atol=1e-5) == affine
    assert [type(m).__name__ for m in gelu.heads["overall"]] == ["Linear", "GELU", "Dropout", "Linear", "GELU",
                                                                 "Dropout", "Linear"]


def test_audio_only_targets_must_name_targets_of_a_per_target_head() -> None:
    from mos.errors import MosError

    with pytest.raises(MosError, match="audio-only targets quality: need --head per-target"):
        _model(True, head="per-target", audio_only_targets=("quality",))
    with pytest.raises(MosError, match="need --head per-target"):
        _model(True, head="pooled", audio_only_targets=("overall",))


def test_scores_clamped_to_target_range() -> None:
    model = _model(text=False)
    with torch.no_grad():
        big = model.to_scale(torch.tensor([[100.0, -100.0]]))
    assert big.tolist() == [[5.0, 1.0]]


def test_text_model_needs_text() -> None:
    model = _model(text=True)
    with pytest.raises(ValueError):
        model(torch.zeros(1, 1600), torch.tensor([1600]))


def test_frontend_stays_float32_under_autocast() -> None:
    """Training's bf16 autocast must not reach the front end: every exported variant computes it
    in float32, so training must too (CPU autocast stands in for CUDA's here)."""
    model = _model(text=False)
    wav = torch.randn(2, 16000, generator=torch.Generator().manual_seed(3)) * 0.3
    lengths = torch.tensor([16000, 9000])
    with torch.no_grad():
        plain, frames = model.frontend(wav, lengths)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed, mixed_frames = model.frontend(wav, lengths)
            raw, _ = model.frontend.log_mel(wav, lengths)
            out = model(wav, lengths)  # the encoder after it still runs in bf16
    assert mixed.dtype == torch.float32 and raw.dtype == torch.float32
    assert torch.equal(mixed, plain) and torch.equal(mixed_frames, frames)
    assert out.dtype == torch.bfloat16
