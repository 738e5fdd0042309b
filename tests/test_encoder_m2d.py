"""M2D checkpoints (nttcslab/m2d's release layout) as an audio encoder, with small random-weight
checkpoints written here in that layout: the folder name and tensors give the shape; the in-graph
log-mel against numpy + librosa following portable_m2d.py; the frames against a reference that
runs each chunk alone as portable_m2d's encode_lms does; padding invariance; ONNX parity; one-line
errors; `mos train --audio-encoder .../checkpoint-1.pth --head pooled` -> export -> torch-free score."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
librosa = pytest.importorskip("librosa")
ort = pytest.importorskip("onnxruntime")

from typer.testing import CliRunner  # noqa: E402

from mos.cli import app  # noqa: E402
from mos.errors import MosError  # noqa: E402
from mos.model.encoders import build_audio_encoder, m2d, resolve_audio_encoder  # noqa: E402

from fixtures_encoders import CAPTIONS, M2D_NORM_STATS as NORM_STATS, make_tiny_m2d as make_checkpoint  # noqa: E402
from fixtures_encoders import assert_onnx_export_matches, make_tiny_m2d_clap  # noqa: E402
from fixtures_train import TABLE_COLUMNS, make_table  # noqa: E402

RATE = 16000


def generated(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * (220 + 50 * seed) * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("m2d"))


@pytest.fixture(scope="module")
def encoder(ckpt: Path):
    return build_audio_encoder(str(ckpt))


def reference_log_mel(x: np.ndarray) -> np.ndarray:
    """portable_m2d's to_normalized_feature with numpy + librosa: nnAudio's MelSpectrogram (centred,
    reflect padding, periodic Hann 400, hop 160, power 2, 80 Slaney mels 50-8000 Hz), log(x + eps),
    (x - mean) / std. [80, T] float64."""
    padded = np.pad(x.astype(np.float64), 200, mode="reflect")
    n = 1 + (padded.size - 400) // 160
    frames = np.stack([padded[i * 160: i * 160 + 400] for i in range(n)])
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2  # [T, 201]
    fb = librosa.filters.mel(sr=RATE, n_fft=400, n_mels=80, fmin=50, fmax=8000, htk=False, norm="slaney")
    logmel = np.log(fb @ power.T + np.finfo(np.float32).eps)
    return (logmel - NORM_STATS[0]) / NORM_STATS[1]


def reference_frames(ckpt: Path, lms: torch.Tensor, flat: bool = False) -> torch.Tensor:
    """portable_m2d's encode_lms (flat_features False) on [1, 1, 80, T], written out with the
    checkpoint's tensors: each chunk of 50 frames alone (the last one shorter, zero-padded to a whole
    patch), pos_embed shortened for it, a timm-style ViT, rows stacked per time column. `flat`
    (flat_features True): every chunk's patch embeddings [N, width] in their (f t) order."""
    state = m2d.read_state(ckpt)
    width, unit, pf, pt = 64, 50, 16, 16
    heads, fbins = 1, 5
    t = lms.shape[-1]
    chunks = (t + unit - 1) // unit
    lms = torch.nn.functional.pad(lms, (0, (pt - (t % unit % pt)) % pt))
    out = []
    for i in range(chunks):
        x = torch.nn.functional.conv2d(lms[..., i * unit:(i + 1) * unit], state["patch_embed.proj.weight"],
                                       state["patch_embed.proj.bias"], stride=(pf, pt)).flatten(2).transpose(1, 2)
        pos = state["pos_embed"][:, 1:]
        if x.shape[1] < pos.shape[1]:
            cols = x.shape[1] // fbins
            pos = pos.reshape(1, fbins, -1, width)[:, :, :cols].reshape(1, fbins * cols, width)
        x = torch.cat([state["cls_token"] + state["pos_embed"][:, :1], x + pos], dim=1)
        for b in range(2):
            p = f"blocks.{b}."
            h = torch.nn.functional.layer_norm(x, (width,), state[p + "norm1.weight"], state[p + "norm1.bias"], 1e-6)
            q, k, v = torch.nn.functional.linear(h, state[p + "attn.qkv.weight"], state[p + "attn.qkv.bias"]).reshape(
                1, -1, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
            a = torch.nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(1, -1, width)
            x = x + torch.nn.functional.linear(a, state[p + "attn.proj.weight"], state[p + "attn.proj.bias"])
            h = torch.nn.functional.layer_norm(x, (width,), state[p + "norm2.weight"], state[p + "norm2.bias"], 1e-6)
            h = torch.nn.functional.gelu(torch.nn.functional.linear(h, state[p + "mlp.fc1.weight"], state[p + "mlp.fc1.bias"]))
            x = x + torch.nn.functional.linear(h, state[p + "mlp.fc2.weight"], state[p + "mlp.fc2.bias"])
        x = torch.nn.functional.layer_norm(x, (width,), state["norm.weight"], state["norm.bias"], 1e-6)[:, 1:]
        out.append(x if flat else x.reshape(1, fbins, -1, width).permute(0, 2, 1, 3).reshape(1, -1, fbins * width))
    return torch.cat(out, dim=1)[0]


def reference_clap_audio(ckpt: Path, lms: torch.Tensor) -> torch.Tensor:
    """portable_m2d's encode_clap_audio (flat_features True, the semantic AudioToSemantic
    projection: a token prepended, a one-head timm Block of MLP ratio 1 with LayerNorm eps 1e-5,
    that token, LayerNorm), then L2-normalised, written out with the checkpoint's tensors: [width]."""
    state = m2d.read_state(ckpt)
    width, f = 64, torch.nn.functional
    x = torch.cat([state["audio_proj.sem_token"][0], reference_frames(ckpt, lms, flat=True)])[None]
    p = "audio_proj.sem_blocks.0."
    h = f.layer_norm(x, (width,), state[p + "norm1.weight"], state[p + "norm1.bias"], 1e-5)
    q, k, v = f.linear(h, state[p + "attn.qkv.weight"], state[p + "attn.qkv.bias"]).reshape(1, -1, 3, 1, width).permute(2, 0, 3, 1, 4)
    x = x + f.linear(f.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(1, -1, width),
                     state[p + "attn.proj.weight"], state[p + "attn.proj.bias"])
    h = f.layer_norm(x, (width,), state[p + "norm2.weight"], state[p + "norm2.bias"], 1e-5)
    x = x + f.linear(f.gelu(f.linear(h, state[p + "mlp.fc1.weight"], state[p + "mlp.fc1.bias"])),
                     state[p + "mlp.fc2.weight"], state[p + "mlp.fc2.bias"])
    out = f.layer_norm(x[0, 0], (width,), state["audio_proj.norm.weight"], state["audio_proj.norm.bias"], 1e-5)
    return out / out.norm()


def test_folder_name_and_tensors_give_the_shape(ckpt: Path, tmp_path: Path) -> None:
    info = resolve_audio_encoder(str(ckpt))
    assert (info.kind, info.sample_rate, info.out_dim, info.window_seconds) == ("m2d", 16000, 5 * 64, None)
    assert info.code_version == f"m2d.v{m2d.FEATURES_VERSION}" and info.padding_invariant
    assert m2d.parse_folder_name(Path("m2d_clap_vit_base-80x1001p16x16p16kpBpTI-2025/checkpoint-30.pth")) == (
        80, 1001, (16, 16), "16k")
    assert m2d.parse_folder_name(Path("m2d_as_vit_base-80x608p16x16p32k-240413_enconly/w.pth"))[3] == "32k"
    assert m2d.parse_folder_name(Path("m2d_s_vit_base-80x608p80x2-230220/c.pth"))[2] == (80, 2)
    for layout in ("enconly", "runtime", "evar"):
        other = make_checkpoint(tmp_path / layout, layout=layout)
        assert resolve_audio_encoder(str(other)).out_dim == info.out_dim
        assert torch.equal(build_audio_encoder(str(other)).backbone.norm_stats, torch.tensor(NORM_STATS))


def test_log_mel_matches_portable_m2d_steps(encoder) -> None:
    x = generated(1.37, seed=2)
    with torch.no_grad():
        got, frames = encoder.normalised_log_mel(torch.from_numpy(x)[None], torch.tensor([x.size]))
    ref = reference_log_mel(x)
    assert int(frames[0]) == ref.shape[1] == got.shape[2]
    assert np.max(np.abs(got[0].numpy() - ref)) < 2e-4


def test_frames_match_each_chunk_run_alone(encoder, ckpt: Path) -> None:
    """Chunks of 50 frames (3 patch columns each, the last 2 frames unseen), clips of 2.3 s = 231
    frames: 4 whole chunks + 31 frames (2 columns, the second partial)."""
    x = generated(2.3, seed=5)
    with torch.no_grad():
        got, counts = encoder(torch.from_numpy(x)[None], torch.tensor([x.size]))
        lms = torch.from_numpy(reference_log_mel(x)).float()[None, None]
        ref = reference_frames(ckpt, lms)
    n = int(counts[0])
    assert n == ref.shape[0] == 4 * 3 + 2 and got.shape[1] == 5 * 3  # the last chunk's third column: padding
    assert torch.allclose(got[0, :n], ref, atol=1e-4), float((got[0, :n] - ref).abs().max())
    assert torch.all(got[0, n:] == 0)


def test_a_clip_gives_the_same_frames_alone_and_padded_in_a_batch(encoder) -> None:
    short, long = generated(0.73, seed=3), generated(2.9, seed=4)
    batch = np.zeros((2, long.size), np.float32)
    batch[0, : short.size], batch[1] = short, long
    with torch.no_grad():
        alone, n_alone = encoder(torch.from_numpy(short)[None], torch.tensor([short.size]))
        both, n_both = encoder(torch.from_numpy(batch), torch.tensor([short.size, long.size]))
    n = int(n_alone[0])
    assert int(n_both[0]) == n and torch.all(alone[0, n:] == 0)
    assert torch.allclose(both[0, :n], alone[0, :n], atol=1e-5)
    assert torch.all(both[0, n:] == 0)


@pytest.mark.slow
def test_onnx_export_matches_pytorch_at_other_batch_sizes_and_lengths(encoder, tmp_path: Path) -> None:
    assert_onnx_export_matches(encoder, tmp_path / "m2d.onnx", generated, RATE, 1.0, [[0.4], [2.4, 0.9, 3.1]], "time")


@pytest.fixture(scope="module")
def clap_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_m2d_clap(tmp_path_factory.mktemp("m2d_clap"))


def test_clap_audio_embedding_matches_portable_m2d_steps(clap_ckpt: Path) -> None:
    """`checkpoint.pth#clap`: one L2-normalised embedding per clip, the reference's, for a clip
    shorter than a chunk and one of five chunks, alone and zero-padded in one batch."""
    encoder = build_audio_encoder(f"{clap_ckpt}#clap")
    assert encoder.info.out_dim == 64 and encoder.info.code_version == "m2d-clap.v1"
    assert resolve_audio_encoder(str(clap_ckpt)).out_dim == 5 * 64  # without #clap: frames, as before
    clips = [generated(0.37, seed=1), generated(2.3, seed=2)]
    wave = np.zeros((2, clips[1].size), dtype=np.float32)
    for i, x in enumerate(clips):
        wave[i, : x.size] = x
    with torch.no_grad():
        batch, counts = encoder(torch.from_numpy(wave), torch.tensor([x.size for x in clips]))
    assert tuple(batch.shape) == (2, 1, 64) and counts.tolist() == [1, 1]
    for i, x in enumerate(clips):
        lms = torch.from_numpy(reference_log_mel(x)).float()[None, None]
        ref = reference_clap_audio(clap_ckpt, lms)
        assert torch.max(torch.abs(batch[i, 0] - ref)) < 1e-4
    assert torch.max(torch.abs(batch[0, 0] - batch[1, 0])) > 1e-2


def test_clap_text_embedding_matches_portable_m2d_steps(clap_ckpt: Path) -> None:
    """`--text-encoder checkpoint.pth`: the checkpoint's tuned BERT (not the folder's own weights)
    on the tokenizer beside it, the [CLS] token, text_proj, L2-normalised: one row per caption."""
    from transformers import AutoTokenizer, BertModel

    from mos.model.text_encoder import load_text_encoder

    encoder = load_text_encoder(str(clap_ckpt))
    assert encoder.pooled and encoder.dim == 64
    got = torch.stack([e[0] for e in encoder.encode(CAPTIONS)])
    folder = clap_ckpt.parent / "bert-base-uncased"
    state = m2d.read_state(clap_ckpt)
    bert = BertModel.from_pretrained(str(folder)).eval()
    batch = AutoTokenizer.from_pretrained(str(folder))(CAPTIONS, padding="longest", return_tensors="pt")

    def embed() -> torch.Tensor:
        with torch.no_grad():
            cls = bert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[0][:, 0]
        out = torch.nn.functional.linear(cls, state["text_proj.weight"], state["text_proj.bias"])
        return out / out.norm(dim=-1, keepdim=True)

    own = embed()
    bert.load_state_dict({k[len("text_encoder.text_encoder."):]: v for k, v in state.items()
                          if k.startswith("text_encoder.text_encoder.")})
    assert torch.max(torch.abs(got - embed())) < 1e-5
    assert torch.max(torch.abs(got - own)) > 1e-2  # the checkpoint's text weights, not the folder's


def test_clap_text_with_gte_means_the_tokens_of_the_folders_model(tmp_path: Path) -> None:
    """A `pA` checkpoint without `pTI`: the GTE folder's own weights, the mean of the last hidden
    state over each caption's tokens (portable_m2d's GTETextEncoder), text_proj, L2-normalised."""
    from transformers import AutoTokenizer, BertModel

    from mos.model.text_encoder import load_text_encoder

    ckpt = make_tiny_m2d_clap(tmp_path, name="m2d_clap_vit_base-80x50p16x16p16kpA-2024")
    got = torch.stack([e[0] for e in load_text_encoder(str(ckpt)).encode(CAPTIONS)])
    folder = ckpt.parent / "gte-base"
    state = m2d.read_state(ckpt)
    batch = AutoTokenizer.from_pretrained(str(folder))(CAPTIONS, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = BertModel.from_pretrained(str(folder)).eval()(**batch).last_hidden_state
    mask = batch["attention_mask"][..., None].float()
    out = torch.nn.functional.linear((hidden * mask).sum(1) / mask.sum(1), state["text_proj.weight"], state["text_proj.bias"])
    assert torch.max(torch.abs(got - out / out.norm(dim=-1, keepdim=True))) < 1e-5


def test_m2d_clap_problems_are_one_line_errors(tmp_path: Path, clap_ckpt: Path) -> None:
    from mos.model.text_encoder import load_text_encoder

    with pytest.raises(MosError, match=r"#clap: the checkpoint has an MLP audio_proj") as err:
        resolve_audio_encoder(f"{make_checkpoint(tmp_path)}#clap")  # the "training" layout's 2024-style MLP
    assert "\n" not in str(err.value)
    copy = tmp_path / clap_ckpt.parent.name / "checkpoint-30.pth"
    copy.parent.mkdir()
    state = torch.load(clap_ckpt, map_location="cpu", weights_only=False)
    copy.write_bytes(clap_ckpt.read_bytes())
    with pytest.raises(MosError, match=r"its text model bert-base-uncased is needed in") as err:
        load_text_encoder(str(copy))
    assert "\n" not in str(err.value)
    import shutil

    shutil.copytree(clap_ckpt.parent / "bert-base-uncased", copy.parent / "bert-base-uncased")
    del state["model"]["text_encoder.text_encoder.encoder.layer.1.output.dense.weight"]
    state["model"]["text_encoder.text_encoder.extra.weight"] = torch.zeros(1)
    torch.save(state, copy)
    with pytest.raises(MosError) as err:
        load_text_encoder(str(copy))
    message = str(err.value)
    assert "\n" not in message and str(copy) in message
    assert "missing encoder.layer.1.output.dense.weight" in message and "unexpected extra.weight" in message
    del state["model"]["text_proj.weight"]
    torch.save(state, copy)
    with pytest.raises(MosError, match=r"text projection lacks text_proj.weight|no text_proj tensors") as err:
        load_text_encoder(str(copy))
    assert "\n" not in str(err.value)


def test_missing_and_unexpected_keys_are_one_line_errors(tmp_path: Path) -> None:
    path = make_checkpoint(tmp_path, layout="enconly")
    state = torch.load(path, map_location="cpu", weights_only=True)
    del state["blocks.1.mlp.fc2.weight"]
    state["blocks.0.attn.extra"] = torch.zeros(1)
    torch.save(state, path)
    with pytest.raises(MosError) as err:
        resolve_audio_encoder(str(path))
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    assert "missing blocks.1.mlp.fc2.weight" in message and "unexpected blocks.0.attn.extra" in message


def test_misnamed_folder_and_unreadable_file_are_one_line_errors(tmp_path: Path) -> None:
    good = make_checkpoint(tmp_path, layout="enconly")
    misnamed = tmp_path / "my_model" / "checkpoint-1.pth"
    misnamed.parent.mkdir()
    misnamed.write_bytes(good.read_bytes())
    with pytest.raises(MosError, match=r"not named as M2D releases are") as err:
        resolve_audio_encoder(str(misnamed))
    assert "\n" not in str(err.value)
    wrong_size = tmp_path / "m2d_vit_base-80x64p16x16-x" / "checkpoint-1.pth"  # pos_embed is for 80x50
    wrong_size.parent.mkdir()
    wrong_size.write_bytes(good.read_bytes())
    with pytest.raises(MosError, match=r"pos_embed is \[1, 16, 64\], not \[1, 21, 64\]"):
        resolve_audio_encoder(str(wrong_size))
    other_global = tmp_path / "m2d_vit_base-80x50p16x16-z" / "checkpoint-1.pth"
    other_global.parent.mkdir()
    torch.save({"model": torch.load(good, weights_only=True), "args": Path("/runs")}, other_global)
    with pytest.raises(MosError, match=r"refused: its pickle names pathlib\.PosixPath") as err:
        resolve_audio_encoder(str(other_global))  # argparse.Namespace is the one extra global allowed
    assert "\n" not in str(err.value)
    broken = tmp_path / "m2d_vit_base-80x50p16x16-y" / "checkpoint-1.pth"
    broken.parent.mkdir()
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(MosError, match=r"checkpoint-1\.pth: not a") as err:
        resolve_audio_encoder(str(broken))
    assert "\n" not in str(err.value)


@pytest.mark.slow
@pytest.mark.parametrize("head", ["pooled", "svr"])
def test_train_export_score_torch_free_matches_pytorch(tmp_path: Path, head: str) -> None:
    """`mos train --audio-encoder <m2d checkpoint> --head pooled|svr` -> `mos export` -> `mos score`
    (ONNX Runtime) gives each clip PyTorch's score; clips of 0.5 to 1.5 s (one to four chunks of 0.5 s)."""
    ckpt = make_checkpoint(tmp_path / "weights")
    table = make_table(tmp_path / "data", n_signals=4, seconds=0.5)
    import soundfile as sf

    for k, wav in enumerate(sorted((tmp_path / "data" / "audio").glob("stim_0[13]/*.wav"))):
        x, rate = sf.read(wav, dtype="float32")
        sf.write(wav, np.tile(x, 3)[: len(x) + 2000 * (k + 1)], rate)
    runner = CliRunner()
    runs = tmp_path / "runs"
    result = runner.invoke(app, ["train", str(table), "--columns", TABLE_COLUMNS, "--group-by", "signal",
                                 "--runs-dir", str(runs), "--name", "m2d", "--epochs", "1", "--batch-size", "8",
                                 "--text-encoder", "none", "--audio-encoder", str(ckpt), "--head", head,
                                 "--feature-cache", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["export", str(runs / "m2d")])
    assert result.exit_code == 0, result.output
    meta = json.loads((runs / "m2d" / "bundle" / "mos.json").read_text())
    assert meta["audio"]["encoder"]["kind"] == "m2d" and meta["sample_rate"] == RATE
    out = tmp_path / "scores.csv"
    result = runner.invoke(app, ["score", str(tmp_path / "data" / "audio"), "--bundle", str(runs / "m2d" / "bundle"),
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = {Path(r["path"]).resolve(): float(r["mushra"]) for r in csv.DictReader(out.open())}

    from mos.audio import read_audio
    from mos.trainer.checkpoint import load_model

    model, _ = load_model(runs / "m2d")
    scores = []
    for wav in sorted((tmp_path / "data" / "audio").glob("*/*.wav")):
        x = torch.from_numpy(read_audio(str(wav), RATE)).unsqueeze(0)
        with torch.no_grad():
            expected = float(model.scores(x, torch.tensor([x.shape[1]]))[0, 0])
        assert rows[wav.resolve()] == pytest.approx(expected, abs=1e-3)
        scores.append(expected)
    assert len(scores) == 16 and np.std(scores) > 0
