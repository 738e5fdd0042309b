"""LAION-CLAP checkpoints (`--audio-encoder x.pt`, `--text-encoder x.pt`): a tiny random ClapModel is
written back in the laion_clap key layout (the inverse of the reader's mapping, written here
independently: query/key/value merged into qkv, `module.` prefixes, the parts ClapModel lacks), as
`{"state_dict": ...}`; read back, its audio and text embeddings equal the original directory's, its
shape is inferred from the tensors, it is converted once into the cache and pinned by the .pt's
sha256; unknown, missing and unreadable inputs are one-line errors naming the problem."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from mos.files import sha256_file  # noqa: E402
from mos.errors import MosError  # noqa: E402
from mos.model.encoders import build_audio_encoder, clap, configure, laion_clap, resolve_audio_encoder  # noqa: E402
from mos.model.text_encoder import FrozenTextEncoder  # noqa: E402

from fixtures_encoders import CAPTIONS, PROJECTION, tiny_clap_config, tiny_tokenizer  # noqa: E402

RATE = 48000
HTSAT = "audio_model.audio_encoder."
# HTSAT block parts, transformers name -> laion_clap name (query/key/value are merged separately).
BLOCK_PARTS = {"layernorm_before": "norm1", "layernorm_after": "norm2", "attention.output.dense": "attn.proj",
               "attention.self.relative_position_bias_table": "attn.relative_position_bias_table",
               "attention.self.relative_position_index": "attn.relative_position_index",
               "intermediate.dense": "mlp.fc1", "output.dense": "mlp.fc2"}
# Tensors a laion_clap checkpoint holds that ClapModel has no place for (the reader ignores them).
LAION_ONLY = {"text_branch.embeddings.position_ids": torch.arange(80)[None],
              "audio_branch.spectrogram_extractor.stft.conv_real.weight": torch.zeros(513, 1, 1024),
              "audio_branch.logmel_extractor.melW": torch.zeros(1024 // 2 + 1, 64),
              "audio_branch.tscam_conv.weight": torch.zeros(527, 16, 2, 3), "audio_branch.head.weight": torch.zeros(527, 527),
              "audio_branch.layers.0.blocks.1.attn_mask": torch.zeros(64, 64, 64),
              "audio_transform.sequential.0.weight": torch.zeros(PROJECTION, PROJECTION)}


def laion_name(name: str) -> str | None:
    """A ClapModel tensor's name in the laion_clap layout (None: a buffer laion_clap does not keep)."""
    if name.startswith("text_model."):
        return None if name.endswith(("position_ids", "token_type_ids")) else "text_branch." + name[len("text_model."):]
    for tower in ("text", "audio"):
        for i, n in (("linear1", "0"), ("linear2", "2")):
            name = name.replace(f"{tower}_projection.{i}.", f"{tower}_projection.{n}.")
    if not name.startswith(HTSAT):
        return name  # the projections, logit_scale_a/t
    name = "audio_branch." + name[len(HTSAT):]
    name = name.replace("audio_branch.batch_norm.", "audio_branch.bn0.")
    if ".blocks." in name:
        head, part = name.split(".blocks.")
        index, rest = part.split(".", 1)
        for hf, laion in BLOCK_PARTS.items():
            if rest == hf or rest.startswith(hf + "."):
                rest = laion + rest[len(hf):]
                break
        name = f"{head}.blocks.{index}.{rest}"
    return name


def to_laion(state: dict, prefix: str = "module.") -> dict:
    """A ClapModel state dict in the laion_clap layout, with LAION_ONLY added."""
    out = {}
    for name, value in state.items():
        merged = name.startswith(HTSAT) and any(f".attention.self.{p}." in name for p in ("query", "key", "value"))
        if merged and ".attention.self.query." in name:
            parts = [state[name.replace(".query.", f".{p}.")] for p in ("query", "key", "value")]
            out[laion_name(name.replace(".attention.self.query.", ".attn.qkv."))] = torch.cat(parts)
        elif not merged and laion_name(name) is not None:
            out[laion_name(name)] = value
    return {prefix + k: v.clone() for k, v in {**out, **LAION_ONLY}.items()}


def save_checkpoint(state: dict, path: Path) -> Path:
    torch.save({"state_dict": state, "epoch": 15}, path)
    return path


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory):
    """A tiny ClapModel (two HTSAT blocks per stage, so the shifted windows are there; a RoBERTa
    text tower of width 64 with roberta-base's LayerNorm eps) saved as a CLAP directory, and the
    same weights as a LAION checkpoint: (directory, model, checkpoint)."""
    from transformers import ClapFeatureExtractor, ClapModel

    root = tmp_path_factory.mktemp("laion")
    config = tiny_clap_config(depths=[2, 2])
    config.text_config.hidden_size, config.text_config.num_attention_heads = 64, 1
    config.text_config.intermediate_size, config.text_config.layer_norm_eps = 64, 1e-5
    torch.manual_seed(0)
    model = ClapModel(config).eval()
    bn = model.audio_model.audio_encoder.batch_norm
    bn.running_mean.uniform_(-60.0, -20.0)
    bn.running_var.uniform_(100.0, 400.0)
    directory = root / "tiny-clap"
    model.save_pretrained(str(directory))
    ClapFeatureExtractor(frequency_min=50, frequency_max=14000).save_pretrained(str(directory))
    tiny_tokenizer(directory)
    (root / "ckpt").mkdir()
    return directory, model, save_checkpoint(to_laion(model.state_dict()), root / "ckpt" / "music_tiny.pt")


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MOS_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "laion-clap"


def generated(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * (200 + 700 * t) * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def embeddings(encoder, clips: list[np.ndarray]) -> torch.Tensor:
    wave = np.zeros((len(clips), max(c.size for c in clips)), dtype=np.float32)
    for i, c in enumerate(clips):
        wave[i, : c.size] = c
    with torch.no_grad():
        return encoder(torch.from_numpy(wave), torch.tensor([c.size for c in clips]))[0]


def one_line_error(fn, *args, match: str) -> str:
    with pytest.raises(MosError, match=match) as err:
        fn(*args)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_audio_embeddings_equal_the_original_model(original, cache: Path) -> None:
    directory, _, checkpoint = original
    info = resolve_audio_encoder(str(checkpoint))
    assert (info.kind, info.sample_rate, info.window_seconds, info.out_dim) == ("clap", RATE, 10.0, PROJECTION)
    assert info.source == str(checkpoint.resolve()) and info.sha256 == sha256_file(checkpoint)
    assert info.parameters == resolve_audio_encoder(str(directory)).parameters
    clips = [generated(3.1, 1), generated(10.0, 2), generated(0.7, 3)]
    ours = embeddings(build_audio_encoder(str(checkpoint)).eval(), clips)
    want = embeddings(build_audio_encoder(str(directory)).eval(), clips)
    assert ours.shape == (3, 1, PROJECTION)
    assert (ours - want).abs().max().item() == 0.0  # measured: identical


def test_the_shape_is_read_from_the_tensors(original, cache: Path) -> None:
    import json

    _, model, checkpoint = original
    resolve_audio_encoder(str(checkpoint))
    (converted,) = cache.iterdir()
    config = json.loads((converted / "config.json").read_text())
    audio, text, want = config["audio_config"], config["text_config"], model.config
    for key in ("depths", "num_attention_heads", "window_size", "hidden_size", "patch_embeds_hidden_size", "patch_size",
                "spec_size", "num_mel_bins", "mlp_ratio"):
        assert audio[key] == getattr(want.audio_config, key), key
    for key in ("hidden_size", "num_attention_heads", "num_hidden_layers", "intermediate_size", "vocab_size",
                "max_position_embeddings", "layer_norm_eps"):
        assert text[key] == getattr(want.text_config, key), key
    assert config["projection_dim"] == PROJECTION and not audio["enable_fusion"]


def test_converted_once_then_read_from_the_cache(original, cache: Path) -> None:
    _, _, checkpoint = original
    first = resolve_audio_encoder(str(checkpoint))
    (converted,) = cache.iterdir()
    assert converted.name == first.sha256
    stamp = (converted / "model.safetensors").stat().st_mtime_ns
    again = build_audio_encoder(str(checkpoint), first.sha256)
    assert again.info == first
    assert [p.name for p in cache.iterdir()] == [first.sha256]
    assert (converted / "model.safetensors").stat().st_mtime_ns == stamp  # not converted again
    # A cache that lost the directory converts it again.
    shutil.rmtree(converted)
    build_audio_encoder(str(checkpoint), first.sha256)
    assert (converted / "model.safetensors").is_file()


def converted_by(converted: Path) -> object:
    import json

    return json.loads((converted / laion_clap.STAMP).read_text())["converter"]


@pytest.mark.parametrize("made_by", ["laion-clap.v0", None])
@pytest.mark.slow
def test_a_directory_another_converter_wrote_is_converted_again(original, cache: Path, made_by: str | None,
                                                                capsys: pytest.CaptureFixture) -> None:
    """A converted directory that records another converter version (or none, as directories did
    before versions) holds what that code wrote (here: other audio projection weights): it is
    converted again, said in one line, and gives the original model's embeddings."""
    from safetensors.torch import load_file, save_file

    directory, _, checkpoint = original
    first = resolve_audio_encoder(str(checkpoint))
    (converted,) = cache.iterdir()
    weights = converted / laion_clap.WEIGHTS
    state = load_file(str(weights))
    state["audio_projection.linear2.weight"] = state["audio_projection.linear2.weight"] + 0.5
    save_file(state, str(weights), metadata={"format": "pt"})
    if made_by is None:
        (converted / laion_clap.STAMP).unlink(missing_ok=True)
    else:
        (converted / laion_clap.STAMP).write_text(f'{{"converter": "{made_by}"}}\n')
    capsys.readouterr()
    clips = [generated(3.1, 1), generated(0.7, 3)]
    ours = embeddings(build_audio_encoder(str(checkpoint), first.sha256).eval(), clips)
    want = embeddings(build_audio_encoder(str(directory)).eval(), clips)
    assert (ours - want).abs().max().item() == 0.0
    assert capsys.readouterr().err == (f"{converted}: converted by other mos code ({made_by or 'an unversioned converter'}; "
                                       f"this mos is laion-clap.v{laion_clap.FEATURES_VERSION}), converting music_tiny.pt again\n")
    assert converted_by(converted) == f"laion-clap.v{laion_clap.FEATURES_VERSION}"
    assert [p.name for p in cache.iterdir()] == [first.sha256]  # replaced in place, nothing left beside it
    assert first.code_version == f"clap.v{clap.FEATURES_VERSION}+laion-clap.v{laion_clap.FEATURES_VERSION}"


def test_an_upgraded_converter_converts_again_and_keys_the_features(original, cache: Path, capsys: pytest.CaptureFixture,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A newer converter (FEATURES_VERSION bumped) does not trust the older one's directory, and the
    audio features it gives are keyed on it (a fresh feature cache folder)."""
    _, _, checkpoint = original
    older = resolve_audio_encoder(str(checkpoint))
    (converted,) = cache.iterdir()
    stamp = (converted / laion_clap.WEIGHTS).stat().st_mtime_ns
    capsys.readouterr()
    monkeypatch.setattr(laion_clap, "FEATURES_VERSION", laion_clap.FEATURES_VERSION + 1)
    newer = resolve_audio_encoder(str(checkpoint))
    assert "converted by other mos code" in capsys.readouterr().err
    assert (converted / laion_clap.WEIGHTS).stat().st_mtime_ns != stamp
    assert converted_by(converted) == f"laion-clap.v{laion_clap.FEATURES_VERSION}"
    assert newer.sha256 == older.sha256 and newer.code_version != older.code_version
    assert newer.code_version.endswith(f"+laion-clap.v{laion_clap.FEATURES_VERSION}")

def test_a_changed_checkpoint_is_refused(original, cache: Path, tmp_path: Path) -> None:
    _, model, checkpoint = original
    pinned = resolve_audio_encoder(str(checkpoint)).sha256
    other = tmp_path / "changed.pt"
    state = to_laion(model.state_dict())
    state["module.audio_projection.2.bias"] = state["module.audio_projection.2.bias"] + 0.1
    save_checkpoint(state, other)
    one_line_error(build_audio_encoder, str(other), pinned, match="differ from the ones the model was trained with")


def save_as_released(state: dict, path: Path) -> Path:
    """As LAION-CLAP's released checkpoints are: pickle protocol 4 (which torch's weights-only
    reader does not read) with numpy scalars among the metadata, named by numpy 1's module path."""
    import zipfile

    torch.save({"state_dict": state, "epoch": 15, "esc_acc": np.float64(0.9014), "steps": np.int64(96000)},
               path, pickle_protocol=4)
    with zipfile.ZipFile(path) as archive:
        entries = [(info, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as out:
        for info, data in entries:
            if info.filename.endswith("data.pkl"):
                data = data.replace(b"\x8c\x16numpy._core.multiarray", b"\x8c\x15numpy.core.multiarray")
                assert b"numpy.core.multiarray" in data
            out.writestr(info, data)
    return path


def test_pickle_protocol_4_streams_rewritten_to_protocol_2_mean_the_same() -> None:
    import pickle
    import pickletools

    from mos.model.encoders.pickle_compat import to_protocol2

    shared = ["x"] * 3
    value = {"names": [f"layer.{i}.weight" for i in range(300)], "again": "layer.7.weight", "raw": b"\x00\xff\x80",
             "big": b"z" * 300, "nested": (1, 2.5, None, True, {"k": shared}), "same": shared,
             "global": pickle.dumps, "long": "\u00e9" * 70000}
    stream = pickle.dumps(value, protocol=4)
    rewritten = to_protocol2(stream, "x")
    opcodes = {op.name for op, _, _ in pickletools.genops(rewritten)}
    assert not opcodes & {"FRAME", "MEMOIZE", "STACK_GLOBAL", "SHORT_BINUNICODE", "SHORT_BINBYTES", "BINBYTES"}
    assert "LONG_BINPUT" in opcodes  # more than 256 memo entries
    back = pickle.loads(rewritten)
    assert back == value and back["same"] is back["nested"][4]["k"]  # shared objects stay shared
    assert to_protocol2(pickle.dumps(value, protocol=2), "x") == pickle.dumps(value, protocol=2)


@pytest.mark.parametrize("layout", ["bare state dict", "no module. prefix", "as released"])
@pytest.mark.slow
def test_other_checkpoint_layouts(original, cache: Path, tmp_path: Path, layout: str) -> None:
    directory, model, _ = original
    path = tmp_path / "other.pt"
    if layout == "bare state dict":
        torch.save(to_laion(model.state_dict()), path)
    elif layout == "as released":
        save_as_released(to_laion(model.state_dict()), path)
        with pytest.raises(Exception, match="Unsupported operand"):  # what torch.load alone says
            torch.load(path, weights_only=True)
    else:
        save_checkpoint(to_laion(model.state_dict(), prefix=""), path)
    clip = [generated(2.0, 4)]
    assert torch.equal(embeddings(build_audio_encoder(str(path)).eval(), clip),
                       embeddings(build_audio_encoder(str(directory)).eval(), clip))


def test_configure_records_the_checkpoint_by_its_absolute_path(original, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mos.model import ModelConfig

    _, _, checkpoint = original
    monkeypatch.chdir(checkpoint.parent)
    info = resolve_audio_encoder(checkpoint.name)
    cfg = ModelConfig()
    configure(cfg, checkpoint.name, info)
    assert cfg.audio_encoder == str(checkpoint.resolve()) and cfg.audio_encoder_sha256 == sha256_file(checkpoint)


# -- the text tower --------------------------------------------------------------------------------
def test_text_tower_needs_the_tokenizer_beside_the_checkpoint(original, cache: Path, tmp_path: Path) -> None:
    directory, _, checkpoint = original
    path = tmp_path / "music_tiny.pt"
    shutil.copyfile(checkpoint, path)
    msg = one_line_error(FrozenTextEncoder, str(path), match="needs RoBERTa's tokenizer")
    assert "vocab.json" in msg and str(tmp_path / "roberta-base") in msg
    tiny_tokenizer(tmp_path / "roberta-base")
    ours, want = FrozenTextEncoder(str(path)), FrozenTextEncoder(str(directory))
    assert ours.dim == PROJECTION and ours.name == f"{path} (LAION-CLAP text tower)"
    for a, b in zip(ours.encode(CAPTIONS), want.encode(CAPTIONS)):
        assert a.shape == (1, PROJECTION)
        assert (a - b).abs().max().item() < 1e-6  # measured: 0
    # Pinned by the checkpoint and the tokenizer: a changed tokenizer file changes the sha256.
    vocab = tmp_path / "roberta-base" / "tokenizer_config.json"
    vocab.write_text(vocab.read_text().replace("}", ', "model_max_length": 77}', 1))
    one_line_error(FrozenTextEncoder, str(path), 64, 64, ours.sha256, match="differ from the ones the model was trained with")


# -- refused checkpoints ---------------------------------------------------------------------------
def test_an_unknown_key_is_named(original, cache: Path, tmp_path: Path) -> None:
    _, model, _ = original
    state = to_laion(model.state_dict())
    state["module.audio_branch.layers.0.blocks.0.attn.extra_gate"] = torch.zeros(3)
    path = save_checkpoint(state, tmp_path / "extra.pt")
    msg = one_line_error(resolve_audio_encoder, str(path), match="cannot place")
    assert "audio_branch.layers.0.blocks.0.attn.extra_gate" in msg and "(1: " in msg


def test_a_missing_key_is_named(original, cache: Path, tmp_path: Path) -> None:
    _, model, _ = original
    state = to_laion(model.state_dict())
    del state["module.audio_branch.layers.1.blocks.1.mlp.fc2.bias"]
    del state["module.text_branch.pooler.dense.weight"]
    path = save_checkpoint(state, tmp_path / "missing.pt")
    msg = one_line_error(resolve_audio_encoder, str(path), match="lacks ClapModel tensors")
    assert "(2: " in msg and f"{HTSAT}layers.1.blocks.1.output.dense.bias" in msg and "text_model.pooler.dense.weight" in msg
    assert not list(cache.glob("*/model.safetensors"))  # nothing half-converted is left behind


def test_a_fused_checkpoint_is_refused(original, cache: Path, tmp_path: Path) -> None:
    _, model, _ = original
    state = to_laion(model.state_dict())
    state["module.audio_branch.patch_embed.mel_conv2d.weight"] = torch.zeros(8, 1, 4, 12)
    path = save_checkpoint(state, tmp_path / "fused.pt")
    one_line_error(resolve_audio_encoder, str(path), match="fused LAION-CLAP checkpoint")


def test_files_that_are_not_checkpoints(cache: Path, tmp_path: Path) -> None:
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint\n")
    one_line_error(resolve_audio_encoder, str(text), match="not a checkpoint torch can read safely")
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {"encoder.weight": torch.zeros(2)}}, other)
    one_line_error(resolve_audio_encoder, str(other), match="no audio_branch")
    scalars = tmp_path / "scalars.pt"
    torch.save({"epoch": 3}, scalars)
    one_line_error(resolve_audio_encoder, str(scalars), match="expected a state dict of tensors")
    one_line_error(resolve_audio_encoder, str(tmp_path / "nowhere.pt"), match="no such file")
    one_line_error(FrozenTextEncoder, str(tmp_path / "nowhere.pt"), match="no such file")


@pytest.mark.parametrize("depths,width,heads", [([2, 2, 12, 2], 128, [4, 8, 16, 32]), ([2, 2, 6, 2], 96, [4, 8, 16, 32])])
def test_htsat_base_and_tiny_shapes_are_inferred(depths: list[int], width: int, heads: list[int]) -> None:
    """The shapes of music_audioset_epoch_15_esc_90.14.pt (HTSAT-base) and 630k-audioset-best.pt
    (HTSAT-tiny), each with a RoBERTa-base text tower, on the meta device (no memory, no weights)."""
    from transformers import ClapConfig, ClapModel

    from mos.model.encoders.laion_clap import clap_config

    config = ClapConfig(audio_config=dict(depths=depths, patch_embeds_hidden_size=width, hidden_size=width * 8,
                                          num_attention_heads=heads), projection_dim=512)
    with torch.device("meta"):
        state = ClapModel(config).state_dict()
    got = clap_config(state, Path("x.pt"))
    assert (got.audio_config.depths, got.audio_config.num_attention_heads) == (depths, heads)
    assert (got.audio_config.patch_embeds_hidden_size, got.audio_config.hidden_size, got.audio_config.window_size) == (width, width * 8, 8)
    assert (got.text_config.hidden_size, got.text_config.num_attention_heads, got.text_config.num_hidden_layers) == (768, 12, 12)
    assert got.projection_dim == 512 and got.text_config.vocab_size == 50265
