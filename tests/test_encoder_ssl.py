"""wav2vec2 / HuBERT / WavLM / data2vec-audio from local directories (tiny random models saved
here with their config classes, no download): all hidden states against the transformers model's
own, the extractor's do_normalize, the learned layer weighting (the only trainable part when
frozen), padding behaviour (layer-norm models: the same frames alone or padded in a batch;
group-norm models: an equal-length batch gives each clip's own frames), ONNX export and
onnxruntime parity at several lengths, *ForCTC / *ForSequenceClassification directories, refused
directories, and MosModel with both heads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
ort = pytest.importorskip("onnxruntime")

from mos.errors import MosError  # noqa: E402
from mos.model.encoders import build_audio_encoder, resolve_audio_encoder  # noqa: E402
from mos.model.encoders.loading import encoder_sha256  # noqa: E402

from fixtures_encoders import HIDDEN, LAYERS, save_tiny, tiny_config  # noqa: E402,F401

RATE = 16000
KINDS = ["wav2vec2", "hubert", "wavlm", "data2vec-audio"]
# (kind, feature-extractor norm); data2vec-audio's CNN always uses LayerNorm.
MODELS = [(k, "layer") for k in KINDS] + [(k, "group") for k in KINDS if k != "data2vec-audio"]
# Not padding invariant: GroupNorm over time in the CNN, or (data2vec-audio) a stacked positional conv.
EQUAL_LENGTHS_ONLY = [("wav2vec2", "group"), ("hubert", "group"), ("wavlm", "group"), ("data2vec-audio", "layer")]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory):
    made: dict[tuple[str, str], Path] = {}

    def get(kind: str, norm: str) -> Path:
        if (kind, norm) not in made:
            made[kind, norm] = save_tiny(tmp_path_factory.mktemp("ssl") / f"{kind}-{norm}", kind, norm)
        return made[kind, norm]

    return get


def reference(model_dir: Path):
    from transformers import AutoModel

    return AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()


def generated(seconds: float, seed: int = 0) -> np.ndarray:
    """A gliding tone with noise at 16 kHz."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * RATE))) / RATE
    x = 0.3 * np.sin(2 * np.pi * (150 + 300 * t) * t) + 0.05 * rng.standard_normal(t.size)
    return x.astype(np.float32)


def padded(clips: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    wave = np.zeros((len(clips), max(c.size for c in clips)), dtype=np.float32)
    for i, c in enumerate(clips):
        wave[i, : c.size] = c
    return torch.from_numpy(wave), torch.tensor([c.size for c in clips], dtype=torch.int64)


def one_line_error(fn, *args, match: str) -> str:
    with pytest.raises(MosError, match=match) as err:
        fn(*args)
    assert "\n" not in str(err.value)
    return str(err.value)


@pytest.mark.parametrize("kind,norm", MODELS)
def test_resolve_reads_kind_rate_width_and_padding(model_dir, kind: str, norm: str) -> None:
    d = model_dir(kind, norm)
    info = resolve_audio_encoder(str(d))
    assert (info.kind, info.sample_rate, info.window_seconds, info.out_dim) == (kind, RATE, None, HIDDEN)
    assert info.padding_invariant == ((kind, norm) not in EQUAL_LENGTHS_ONLY)
    assert info.sha256 == encoder_sha256(d) and info.source == str(d)


@pytest.mark.parametrize("kind,norm", MODELS)
@pytest.mark.slow
def test_features_are_the_models_hidden_states(model_dir, kind: str, norm: str) -> None:
    d = model_dir(kind, norm)
    enc = build_audio_encoder(str(d)).eval()
    model = reference(d)
    x = generated(0.7, seed=1)
    wave = torch.from_numpy(x)[None]
    mask = torch.ones_like(wave, dtype=torch.int64) if norm == "layer" else None
    with torch.no_grad():
        want = model(wave, attention_mask=mask, output_hidden_states=True).hidden_states
        feats, frame_lengths = enc.features(wave, torch.tensor([x.size]))
    assert len(want) == LAYERS + 1 and feats.shape == (1, want[0].shape[1], LAYERS + 1, HIDDEN)
    assert frame_lengths.tolist() == [int(model._get_feat_extract_output_lengths(x.size))] == [want[0].shape[1]]
    for i, h in enumerate(want):
        assert torch.allclose(feats[:, :, i], h, atol=1e-5), (i, (feats[:, :, i] - h).abs().max())


@pytest.mark.parametrize("kind", ["wav2vec2", "hubert", "wavlm"])
def test_layer_norm_model_gives_a_clip_the_same_frames_alone_or_padded(model_dir, kind: str) -> None:
    enc = build_audio_encoder(str(model_dir(kind, "layer"))).eval()
    clips = [generated(0.9, 1), generated(0.35, 2), generated(0.6, 3)]
    with torch.no_grad():
        feats, frame_lengths = enc.features(*padded(clips))
        for i, c in enumerate(clips):
            alone, n = enc.features(*padded([c]))
            assert frame_lengths[i] == n[0] == alone.shape[1]
            assert torch.allclose(feats[i, : n[0]], alone[0], atol=1e-5), (i, (feats[i, : n[0]] - alone[0]).abs().max())
            assert not feats[i, n[0]:].any()  # frames past the length are zero


@pytest.mark.parametrize("kind,norm", EQUAL_LENGTHS_ONLY)
def test_group_norm_and_data2vec_models_batch_equal_lengths(model_dir, kind: str, norm: str) -> None:
    """GroupNorm over time (or data2vec-audio's stacked positional conv): an equal-length batch gives
    each clip its own frames; zero padding would change them (so they are not padding invariant)."""
    enc = build_audio_encoder(str(model_dir(kind, norm))).eval()
    assert not enc.info.padding_invariant
    clips = [generated(0.6, s) for s in (1, 2, 3)]
    with torch.no_grad():
        batch, _ = enc.features(*padded(clips))
        alone = [enc.features(*padded([c]))[0] for c in clips]
        for i in range(len(clips)):
            assert torch.allclose(batch[i], alone[i][0], atol=1e-5)
        short = generated(0.3, 4)
        in_batch, n = enc.features(*padded([short, clips[0]]))
        by_itself, _ = enc.features(*padded([short]))
    assert (in_batch[0, : n[0]] - by_itself[0]).abs().max() > 1e-3


def test_do_normalize_is_the_feature_extractors(model_dir, tmp_path: Path) -> None:
    from transformers import Wav2Vec2FeatureExtractor

    from mos.model.encoders.ssl import normalize_per_clip

    d = tmp_path / "normalised"
    shutil.copytree(model_dir("wav2vec2", "layer"), d)
    extractor = Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True)
    extractor.save_pretrained(str(d))
    clips = [3.0 * generated(0.5, 1) + 0.2, 0.1 * generated(0.8, 2) - 0.05]  # offset and scaled
    got = extractor(clips, sampling_rate=RATE, padding=True, return_attention_mask=True, return_tensors="pt")
    wave, lengths = padded(clips)
    assert torch.allclose(normalize_per_clip(wave, lengths), got["input_values"], atol=1e-5)
    enc = build_audio_encoder(str(d)).eval()
    plain = build_audio_encoder(str(model_dir("wav2vec2", "layer"))).eval()
    model = reference(d)
    with torch.no_grad():
        want = model(got["input_values"], attention_mask=got["attention_mask"], output_hidden_states=True).hidden_states
        feats, frame_lengths = enc.features(wave, lengths)
        unnormalised, _ = plain.features(wave, lengths)
    for i in range(len(clips)):
        n = frame_lengths[i]
        for layer, h in enumerate(want):
            assert torch.allclose(feats[i, :n, layer], h[i, :n], atol=1e-4)
    assert (feats - unnormalised).abs().max() > 1e-2  # normalising really changes the features


def test_do_normalize_matches_the_extractor_on_real_speech(model_dir, tmp_path: Path) -> None:
    """Real speech clips of different lengths in one padded batch: the in-model normalisation and
    the features of a normalising WavLM against the extractor fed each clip alone."""
    from fixtures_mushra import _find_real
    from transformers import Wav2Vec2FeatureExtractor

    from mos.audio import read_audio

    root = _find_real()
    if root is None:
        pytest.skip("the real MUSHRA clips are not on this machine")
    d = tmp_path / "normalised"
    shutil.copytree(model_dir("wavlm", "layer"), d)
    extractor = Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True)
    extractor.save_pretrained(str(d))
    clips = [read_audio(p, RATE)[: int(RATE * (1.0 + 0.4 * i))] for i, p in
             enumerate(sorted((root / "audio").glob("stim_0[1-2]/*.wav"))[:3])]
    enc = build_audio_encoder(str(d)).eval()
    model = reference(d)
    with torch.no_grad():
        feats, frame_lengths = enc.features(*padded(clips))
        for i, c in enumerate(clips):
            got = extractor(c, sampling_rate=RATE, return_attention_mask=True, return_tensors="pt")
            assert torch.allclose(enc.features(*padded([c]))[0], feats[i : i + 1, : frame_lengths[i]], atol=1e-4)
            want = model(got["input_values"], attention_mask=got["attention_mask"], output_hidden_states=True).hidden_states
            for layer, h in enumerate(want):
                assert torch.allclose(feats[i, : frame_lengths[i], layer], h[0], atol=1e-4), (i, layer)


def test_mixer_is_the_learned_softmax_weighting_and_trains_when_frozen(model_dir) -> None:
    enc = build_audio_encoder(str(model_dir("wavlm", "layer")))
    enc.train()
    trainable = [name for name, p in enc.named_parameters() if p.requires_grad]
    assert trainable == ["mixer.weights"] and enc.mixer.weights.shape == (LAYERS + 1,)
    assert not enc.backbone.training  # a frozen backbone stays in eval mode
    wave, lengths = padded([generated(0.5, 1), generated(0.3, 2)])
    feats, frame_lengths = enc.features(wave, lengths)
    assert torch.allclose(enc.mix(feats), feats.mean(dim=2), atol=1e-6)  # equal weights at first
    with torch.no_grad():
        enc.mixer.weights.copy_(torch.tensor([0.5, -1.0, 2.0]))
    w = torch.softmax(torch.tensor([0.5, -1.0, 2.0]), dim=0)
    frames = enc.mix(feats)
    assert torch.allclose(frames, sum(w[i] * feats[:, :, i] for i in range(LAYERS + 1)), atol=1e-6)
    frames.square().mean().backward()
    assert enc.mixer.weights.grad is not None and enc.mixer.weights.grad.abs().sum() > 0
    assert all(p.grad is None for p in enc.backbone.parameters())


@pytest.mark.parametrize("kind,norm", [("wav2vec2", "layer"), ("wavlm", "layer"), ("data2vec-audio", "layer"),
                                       ("hubert", "group"), ("wavlm", "group")])
@pytest.mark.slow
def test_onnx_export_and_onnxruntime_parity(model_dir, tmp_path: Path, kind: str, norm: str) -> None:
    """Whole encoder (features + a non-uniform layer weighting), dynamic batch and samples, at lengths
    not traced; a group-norm model with equal-length batches (the only ones it is given)."""
    from mos.export.onnx_io import export_torchscript

    enc = build_audio_encoder(str(model_dir(kind, norm))).eval()
    with torch.no_grad():
        enc.mixer.weights.copy_(torch.tensor([0.3, -0.7, 1.1]))
    path = tmp_path / f"{kind}.onnx"
    export_torchscript(enc, padded([generated(1.5, 1), generated(1.5, 2)]), path, 17,
                       ["waveform", "lengths"], ["frames", "frame_lengths"],
                       {"waveform": {0: "batch", 1: "samples"}, "lengths": {0: "batch"},
                        "frames": {0: "batch", 1: "frames"}, "frame_lengths": {0: "batch"}})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for seconds in (1.0, 2.3, 4.0):
        if norm == "layer":
            clips = [generated(seconds, 3), generated(seconds * 0.6, 4), generated(seconds - 0.2, 5)]
        else:
            clips = [generated(seconds, s) for s in (3, 4)]
        wave, lengths = padded(clips)
        got, got_lengths = session.run(None, {"waveform": wave.numpy(), "lengths": lengths.numpy()})
        with torch.no_grad():
            want, want_lengths = enc(wave, lengths)
        assert got.shape == tuple(want.shape) and got_lengths.tolist() == want_lengths.tolist()
        assert np.abs(got - want.numpy()).max() < 1e-4, (seconds, np.abs(got - want.numpy()).max())


@pytest.mark.parametrize("kind,head", [("wav2vec2", "CTC"), ("wavlm", "AudioClassification"), ("hubert", "CTC")])
def test_a_fine_tuned_checkpoint_gives_its_base_model(tmp_path: Path, kind: str, head: str) -> None:
    """A *ForCTC / *ForSequenceClassification directory: the encoder is its base model, all of it."""
    import transformers as tf

    d = save_tiny(tmp_path / kind, kind, "layer", head)
    full = getattr(tf, f"AutoModelFor{head}").from_pretrained(str(d)).eval()
    base = getattr(full, full.base_model_prefix)
    enc = build_audio_encoder(str(d)).eval()
    x = torch.from_numpy(generated(0.5, 1))[None]
    with torch.no_grad():
        want = base(x, attention_mask=torch.ones_like(x, dtype=torch.int64), output_hidden_states=True).hidden_states
        feats, _ = enc.features(x, torch.tensor([x.shape[1]]))
    for i, h in enumerate(want):
        assert torch.allclose(feats[:, :, i], h, atol=1e-5)
    # The same directory without some of the base model's tensors: refused, not left random.
    from safetensors.torch import load_file, save_file

    state = load_file(str(d / "model.safetensors"))
    save_file({k: v for k, v in state.items() if ".encoder.layers.1." not in k}, str(d / "model.safetensors"))
    one_line_error(build_audio_encoder, str(d), match="incomplete")


def test_missing_or_partial_directory_is_a_one_line_error(model_dir, tmp_path: Path) -> None:
    one_line_error(resolve_audio_encoder, str(tmp_path / "nowhere"), match="no such directory")
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copyfile(model_dir("wavlm", "group") / "config.json", partial / "config.json")
    msg = one_line_error(resolve_audio_encoder, str(partial), match="no weights")
    assert str(partial) in msg
    from safetensors.torch import load_file, save_file

    state = load_file(str(model_dir("wavlm", "group") / "model.safetensors"))
    save_file({k: v for k, v in state.items() if not k.startswith("feature_extractor.")}, str(partial / "model.safetensors"))
    one_line_error(build_audio_encoder, str(partial), match="incomplete")


def test_audio_too_short_for_one_frame_is_a_one_line_error(model_dir) -> None:
    enc = build_audio_encoder(str(model_dir("hubert", "group"))).eval()
    assert enc.min_samples == 10 + (3 + (3 - 1) * 4 - 1) * 5  # kernels 10, 3, 3 at strides 5, 4, 4
    with torch.no_grad():
        _, frame_lengths = enc.features(*padded([generated(0.1, 1)[: enc.min_samples]]))
        assert frame_lengths.tolist() == [1]
        msg = one_line_error(enc.features, *padded([generated(0.1, 1)[: enc.min_samples - 1]]), match="shorter than")
    assert f"{enc.min_samples - 1} samples" in msg
    # In a batch, a clip too short for a frame gets none (all its frames are zero).
    with torch.no_grad():
        feats, frame_lengths = enc.features(*padded([generated(0.3, 1), generated(0.1, 2)[:50]]))
    assert frame_lengths[1] == 0 and not feats[1].any()


@pytest.mark.parametrize("change,match", [({"add_adapter": True}, "add_adapter"),
                                          ({"feat_extract_norm": "batch"}, "feat_extract_norm"),
                                          ({"num_hidden_layers": "two"}, "num_hidden_layers")])
def test_unsupported_configs_are_a_one_line_error(model_dir, tmp_path: Path, change: dict, match: str) -> None:
    d = tmp_path / "changed"
    shutil.copytree(model_dir("wav2vec2", "layer"), d)
    config = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**config, **change}))
    assert str(d) in one_line_error(resolve_audio_encoder, str(d), match=match)


def test_a_preprocessor_at_another_rate_is_refused(model_dir, tmp_path: Path) -> None:
    from transformers import Wav2Vec2FeatureExtractor

    d = tmp_path / "rate"
    shutil.copytree(model_dir("hubert", "group"), d)
    Wav2Vec2FeatureExtractor(sampling_rate=8000).save_pretrained(str(d))
    one_line_error(resolve_audio_encoder, str(d), match="sampling_rate 8000")


@pytest.mark.parametrize("head", ["fusion", "pooled"])
def test_mos_model_with_an_ssl_encoder(model_dir, head: str) -> None:
    """MosModel with a frozen WavLM and caption token features (random here, MiniLM-sized): scores
    with both heads; the checkpoint leaves the backbone out but keeps the layer weights, and loads
    back to the same scores."""
    from mos.model import ModelConfig, MosModel, TargetSpec

    d = model_dir("wavlm", "layer")
    info = resolve_audio_encoder(str(d))
    cfg = ModelConfig(audio_encoder=str(d), audio_encoder_kind=info.kind, audio_encoder_sha256=info.sha256,
                      sample_rate=info.sample_rate, window_seconds=2.0, padding_invariant=info.padding_invariant,
                      head=head, text_encoder="minilm", text_dim=384, targets=[TargetSpec("score", 1.0, 5.0, 3.0, 1.0)])
    torch.manual_seed(0)
    model = MosModel(cfg).eval()
    assert cfg.audio_dim == HIDDEN
    with torch.no_grad():
        model.audio_encoder.mixer.weights.copy_(torch.tensor([1.0, 0.0, -1.0]))
    wave, lengths = padded([generated(0.8, 1), generated(0.4, 2)])
    text, text_lengths = torch.randn(2, 5, 384), torch.tensor([5, 3])
    with torch.no_grad():
        scores = model.scores(wave, lengths, text, text_lengths)
    assert scores.shape == (2, 1) and torch.isfinite(scores).all()
    state = model.checkpoint_state()
    assert "audio_encoder.mixer.weights" in state
    assert not any(k.startswith("audio_encoder.backbone.") for k in state)
    again = MosModel(cfg).eval()
    again.load_checkpoint_state(state)
    with torch.no_grad():
        assert torch.allclose(again.scores(wave, lengths, text, text_lengths), scores, atol=1e-6)


@pytest.mark.parametrize("kind", ["wav2vec2", "wavlm"])
def test_fine_tuning_keeps_every_layer(model_dir, tmp_path: Path, kind: str) -> None:
    """A fine-tuned (unfrozen, training) backbone still gives all L hidden states: the model's
    LayerDrop, which skips whole layers in training, would change L under the layer weighting."""
    d = tmp_path / "layerdrop"
    shutil.copytree(model_dir(kind, "layer"), d)
    config = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**config, "layerdrop": 0.9}))
    enc = build_audio_encoder(str(d)).freeze(False)
    enc.train()
    assert enc.backbone.training
    wave, lengths = padded([generated(0.4, 1), generated(0.3, 2)])
    torch.manual_seed(0)
    for _ in range(6):
        frames, _ = enc(wave, lengths)
        assert frames.shape[-1] == HIDDEN
        assert enc.features(wave, lengths)[0].shape[2] == LAYERS + 1
    frames.square().mean().backward()
    assert any(p.grad is not None for p in enc.backbone.parameters())  # the backbone trains
