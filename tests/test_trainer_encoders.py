"""Training on a pretrained audio encoder (a tiny random CLAP saved here): the frozen encoder
runs once per clip window and later epochs (and later runs, and folds) read its cached features;
validation from the cache equals scoring the audio; fine-tuning trains the backbone at its own
learning rate; then `mos train` -> `mos export` -> `mos score` gives PyTorch's scores (CLAP, AST,
and a wav2vec2 that is not padding invariant)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from typer.testing import CliRunner  # noqa: E402

from mos.cli import app  # noqa: E402
from mos.model.encoders.clap import ClapAudioEncoder  # noqa: E402
from mos.trainer.config import TrainConfig  # noqa: E402
from mos.trainer.loop import Trainer  # noqa: E402
from mos.trainer.validation import predict  # noqa: E402
from mos.trainer.run import run_training  # noqa: E402
from mos.trainer.splits import resolve_splits  # noqa: E402
from mos.data.table import parse_column_spec  # noqa: E402

from fixtures_encoders import count_encoded_windows, make_tiny_clap  # noqa: E402
from fixtures_train import TABLE_COLUMNS, make_table, quiet  # noqa: E402


@pytest.fixture(scope="module")
def clap_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_clap(tmp_path_factory.mktemp("clap") / "tiny-clap")


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_table(tmp_path_factory.mktemp("table"), n_signals=4, seconds=0.5)


def config(table: Path, clap_dir: Path, root: Path, **changes) -> TrainConfig:
    base = dict(data=str(table), columns=TABLE_COLUMNS, group_by="signal", name="clap", runs_dir=str(root / "runs"),
                epochs=2, batch_size=4, text_encoder="none", audio_encoder=str(clap_dir), head="pooled",
                feature_cache=str(root / "cache"), seed=0)
    base.update(changes)
    return TrainConfig(**base)


def splits_of(cfg: TrainConfig):
    return resolve_splits(Path(cfg.data), parse_column_spec(cfg.columns), cfg.val_fraction, cfg.seed, cfg.group_by, None)


@pytest.fixture
def encoder_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many clip windows the CLAP encoder's features() has been run on."""
    return count_encoded_windows(monkeypatch, ClapAudioEncoder)


@pytest.mark.slow
def test_frozen_encoder_runs_once_then_epochs_and_runs_use_the_cache(table: Path, clap_dir: Path, tmp_path: Path,
                                                                    encoder_calls: list[int]) -> None:
    cfg = config(table, clap_dir, tmp_path)
    console, out = quiet()
    trainer = Trainer(cfg, splits_of(cfg), console)
    assert sum(encoder_calls) == 16  # every clip once (each 0.5 s clip is one window)
    encoder_calls.clear()
    trainer.fit()
    assert encoder_calls == []  # two epochs and every validation: the head alone
    assert "16 clip(s) encoded" in out.getvalue()
    assert len(list((tmp_path / "cache").rglob("*.npz"))) == 16
    # Another run (another seed) with the same encoder and data: everything from the cache.
    again = Trainer(config(table, clap_dir, tmp_path, name="again", seed=1), splits_of(cfg), quiet()[0])
    again.fit()
    assert encoder_calls == []
    run = tmp_path / "runs" / "clap"
    saved = json.loads((run / "config.json").read_text())["model"]
    assert saved["audio_encoder_kind"] == "clap" and saved["sample_rate"] == 48000 and saved["window_seconds"] == 10
    assert saved["audio_encoder"] == str(clap_dir.resolve()) and saved["head"] == "pooled"
    state = torch.load(run / "checkpoints" / "best.pt", weights_only=True)["state_dict"]
    assert not any(k.startswith("audio_encoder.backbone.") for k in state)  # the frozen tower is not copied


@pytest.mark.slow
def test_cached_validation_equals_scoring_the_audio(table: Path, clap_dir: Path, tmp_path: Path) -> None:
    """The cache holds what the encoder gives on the runtime's windows: predictions from it equal
    predictions from the waveforms (a clip longer than the 10 s window has several windows)."""
    long_table = tmp_path / "long"
    make_table(long_table, n_signals=2, seconds=12.5)
    cfg = config(long_table / "ratings.csv", clap_dir, tmp_path, val_fraction=0.5)
    trainer = Trainer(cfg, splits_of(cfg), quiet()[0])
    cached = trainer.eval_loader(trainer.splits.validation)
    assert len(cached.dataset) == 2 * len(trainer.splits.validation.items)  # two windows per clip
    from_cache, true_c, _ = predict(trainer.model, cached, trainer.device, False)
    trainer.features = None
    from_audio, true_a, _ = predict(trainer.model, trainer.eval_loader(trainer.splits.validation), trainer.device, False)
    assert np.allclose(from_cache, from_audio, atol=1e-4)
    assert np.allclose(true_c, true_a)


@pytest.mark.slow
def test_finetuning_trains_the_backbone_at_its_own_rate(table: Path, clap_dir: Path, tmp_path: Path,
                                                        encoder_calls: list[int]) -> None:
    cfg = config(table, clap_dir, tmp_path, finetune_audio=True, encoder_lr=3e-4, epochs=1, name="ft")
    trainer = Trainer(cfg, splits_of(cfg), quiet()[0])
    head_lr, encoder_lr = (g["lr"] for g in trainer.optimizer.param_groups)
    assert encoder_lr / head_lr == pytest.approx(3e-4 / 1e-3)  # one schedule, two peak rates
    backbone = {k: v.clone() for k, v in trainer.model.audio_encoder.backbone.state_dict().items()}
    trainer.fit()
    assert sum(encoder_calls) > 16  # no cache: the encoder runs on every batch
    after = torch.load(tmp_path / "runs" / "ft" / "checkpoints" / "last.pt", weights_only=True)["state_dict"]
    changed = [k for k, v in backbone.items() if v.is_floating_point()
               and not torch.equal(after[f"audio_encoder.backbone.{k}"], v)]
    assert changed  # the fine-tuned backbone moved and is saved in the checkpoint


def test_bad_encoder_settings_are_one_line_errors(table: Path, clap_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["train", str(table), "--columns", TABLE_COLUMNS, "--runs-dir", str(tmp_path), "--text-encoder", "none"]
    cases = [
        (["--audio-encoder", str(tmp_path / "nowhere")], "no such directory"),
        (["--finetune-audio"], "--finetune-audio"),
        (["--audio-encoder", str(clap_dir), "--gain-db", "3"], "--gain-db"),
        (["--head", "mean"], "--head mean"),
        (["--head-layers", "256,x"], "--head-layers 256,x"),
    ]
    for extra, message in cases:
        result = runner.invoke(app, base + extra)
        assert result.exit_code == 2, (extra, result.output)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], (extra, result.output)


@pytest.mark.slow
def test_a_resume_may_not_change_the_encoder(table: Path, clap_dir: Path, tmp_path: Path) -> None:
    cfg = config(table, clap_dir, tmp_path, epochs=1, name="res")
    run_training(cfg, quiet()[0])
    from mos.errors import MosError

    with pytest.raises(MosError, match="--audio-encoder"):
        run_training(config(table, clap_dir, tmp_path, epochs=2, name="res", resume=True, audio_encoder="conv"),
                     quiet()[0], explicit={"audio_encoder", "epochs"})


@pytest.mark.slow
def test_train_export_score_torch_free_matches_pytorch(table: Path, clap_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    runs = tmp_path / "runs"
    result = runner.invoke(app, ["train", str(table), "--columns", TABLE_COLUMNS, "--group-by", "signal",
                                 "--runs-dir", str(runs), "--name", "clap", "--epochs", "1", "--batch-size", "4",
                                 "--text-encoder", "none", "--audio-encoder", str(clap_dir), "--head", "pooled",
                                 "--head-layers", "32,16", "--feature-cache", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["export", str(runs / "clap")])
    assert result.exit_code == 0, result.output
    bundle = runs / "clap" / "bundle"
    meta = json.loads((bundle / "mos.json").read_text())
    assert meta["audio"]["encoder"]["kind"] == "clap" and meta["sample_rate"] == 48000
    out = tmp_path / "scores.csv"
    result = runner.invoke(app, ["score", str(table.parent / "audio"), "--bundle", str(bundle), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = {Path(r["path"]).resolve(): float(r["mushra"]) for r in csv.DictReader(out.open())}
    assert len(rows) == 16

    from mos.audio import read_audio
    from mos.trainer.checkpoint import load_model

    model, _ = load_model(runs / "clap")
    assert model.cfg.head_layers == (32, 16)
    for rel in sorted(table.parent.glob("audio/*/*.wav"))[:4]:
        wav = torch.from_numpy(read_audio(str(rel), 48000)).unsqueeze(0)
        with torch.no_grad():
            expected = float(model.scores(wav, torch.tensor([wav.shape[1]]))[0, 0])
        assert rows[rel.resolve()] == pytest.approx(expected, abs=1e-3)


@pytest.mark.slow
def test_cross_validation_folds_share_the_cache(table: Path, clap_dir: Path, tmp_path: Path,
                                               encoder_calls: list[int]) -> None:
    result = run_training(config(table, clap_dir, tmp_path, epochs=1, folds=2, name="cv"), quiet()[0])
    assert sum(encoder_calls) == 16  # each clip encoded once, for all folds together
    assert (result.run_dir / "oof_predictions.csv").is_file()


@pytest.mark.parametrize("kind, norm", [("wav2vec2", "group"), ("hubert", "group"), ("wavlm", "layer"),
                                        ("data2vec-audio", "layer")])
@pytest.mark.slow
def test_speech_models_train_export_and_score_as_pytorch(tmp_path: Path, kind: str, norm: str) -> None:
    """Each self-supervised speech family, clips of 0.5 to 1 s: `mos train` -> `mos export` ->
    `mos score` gives every clip PyTorch's score on that clip alone. A group-norm model and
    data2vec-audio are not padding invariant (the cache encodes equal-length windows together,
    `mos score` batches only equal lengths); a layer-norm wav2vec2/HuBERT/WavLM is, and is batched
    with padding."""
    import soundfile as sf

    from fixtures_encoders import REAL_FRAME_RATE, save_tiny
    from mos.audio import read_audio
    from mos.trainer.checkpoint import load_model

    model_dir = save_tiny(tmp_path / "w2v", kind, norm, **REAL_FRAME_RATE)
    table = make_table(tmp_path / "data", n_signals=4, seconds=0.5)
    for k, wav in enumerate(sorted((tmp_path / "data" / "audio").glob("stim_0[13]/*.wav"))):
        x, rate = sf.read(wav, dtype="float32")
        sf.write(wav, np.tile(x, 2)[: len(x) + 1600 * (k + 1)], rate)  # lengths 0.6 to 1 s
    runner = CliRunner()
    runs = tmp_path / "runs"
    result = runner.invoke(app, ["train", str(table), "--columns", TABLE_COLUMNS, "--group-by", "signal",
                                 "--runs-dir", str(runs), "--name", "w2v", "--epochs", "1", "--batch-size", "8",
                                 "--text-encoder", "none", "--audio-encoder", str(model_dir)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["export", str(runs / "w2v")])
    assert result.exit_code == 0, result.output
    meta = json.loads((runs / "w2v" / "bundle" / "mos.json").read_text())
    assert meta["audio"]["padding_invariant"] is (norm == "layer" and kind != "data2vec-audio")
    out = tmp_path / "scores.csv"
    result = runner.invoke(app, ["score", str(tmp_path / "data" / "audio"), "--bundle", str(runs / "w2v" / "bundle"),
                                 "--out", str(out), "--batch-size", "8"])
    assert result.exit_code == 0, result.output
    rows = {Path(r["path"]).resolve(): float(r["mushra"]) for r in csv.DictReader(out.open())}
    model, _ = load_model(runs / "w2v")
    scores = []
    for wav in sorted((tmp_path / "data" / "audio").glob("*/*.wav")):
        x = torch.from_numpy(read_audio(str(wav), 16000)).unsqueeze(0)
        with torch.no_grad():
            expected = float(model.scores(x, torch.tensor([x.shape[1]]))[0, 0])
        assert rows[wav.resolve()] == pytest.approx(expected, abs=1e-3)
        scores.append(expected)
    assert np.std(scores) > 0  # the clips do not all score alike


@pytest.mark.slow
def test_ast_trains_exports_and_scores_torch_free_as_pytorch(tmp_path: Path) -> None:
    """A tiny random AST (1024-frame window, 10.255 s): `mos train` (frozen, cached, pooled head)
    -> `mos export` -> `mos score` gives PyTorch's scores clip by clip."""
    from fixtures_encoders import make_tiny_ast
    from mos.audio import read_audio
    from mos.trainer.checkpoint import load_model

    model_dir = make_tiny_ast(tmp_path / "ast")
    table = make_table(tmp_path / "data", n_signals=4, seconds=0.5)
    runner = CliRunner()
    runs = tmp_path / "runs"
    result = runner.invoke(app, ["train", str(table), "--columns", TABLE_COLUMNS, "--group-by", "signal",
                                 "--runs-dir", str(runs), "--name", "ast", "--epochs", "1", "--batch-size", "4",
                                 "--text-encoder", "none", "--audio-encoder", str(model_dir), "--head", "pooled",
                                 "--feature-cache", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["export", str(runs / "ast")])
    assert result.exit_code == 0, result.output
    bundle = runs / "ast" / "bundle"
    meta = json.loads((bundle / "mos.json").read_text())
    assert meta["audio"]["encoder"]["kind"] == "ast" and meta["sample_rate"] == 16000
    assert round(meta["window_seconds"] * 16000) == 164080  # exactly 1024 fbank frames
    out = tmp_path / "scores.csv"
    result = runner.invoke(app, ["score", str(tmp_path / "data" / "audio"), "--bundle", str(bundle), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = {Path(r["path"]).resolve(): float(r["mushra"]) for r in csv.DictReader(out.open())}
    assert len(rows) == 16
    model, _ = load_model(runs / "ast")
    scores = []
    for wav in sorted((tmp_path / "data" / "audio").glob("*/*.wav")):
        x = torch.from_numpy(read_audio(str(wav), 16000)).unsqueeze(0)
        with torch.no_grad():
            expected = float(model.scores(x, torch.tensor([x.shape[1]]))[0, 0])
        assert rows[wav.resolve()] == pytest.approx(expected, abs=1e-3)
        scores.append(expected)
    assert np.std(scores) > 0
