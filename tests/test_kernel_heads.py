"""`--head svr` / `--head ridge`: a regressor per target fitted once with scikit-learn on a frozen
encoder's pooled embeddings. Refused in one line where it cannot apply; the same data gives the
same fit; the hyperparameter search is grouped and never sees the validation clips; the head in
the torch model and in ONNX Runtime gives sklearn's predictions; `mos train` -> `mos export` ->
torch-free `mos score` gives the validation predictions; int8 leaves the head in fp32; and
`--folds` cross-validates it."""

from __future__ import annotations

import csv
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")
pytest.importorskip("transformers")

import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from mos.cli import app  # noqa: E402
from mos.data.table import parse_column_spec  # noqa: E402
from mos.export.onnx_io import export_torchscript  # noqa: E402
from mos.model.kernel_head import FittedRegressor  # noqa: E402
from mos.trainer.config import TrainConfig  # noqa: E402
from mos.trainer.kernel_fit import FIT_REPORT, fit_regressor, load_fit  # noqa: E402
from mos.trainer.loop import Trainer  # noqa: E402
from mos.trainer.run import run_training  # noqa: E402
from mos.trainer.splits import resolve_splits  # noqa: E402

from fixtures_encoders import make_tiny_clap  # noqa: E402
from fixtures_train import TABLE_COLUMNS, make_table, quiet  # noqa: E402
from test_runtime_blocked_imports import blocked_env  # noqa: E402



@pytest.fixture(scope="module")
def clap_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_clap(tmp_path_factory.mktemp("clap") / "tiny-clap")


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_table(tmp_path_factory.mktemp("table"), n_signals=5, seconds=0.5)


def config(table: Path, clap_dir: Path, root: Path, **changes) -> TrainConfig:
    base = dict(data=str(table), columns=TABLE_COLUMNS, group_by="signal", name="svr", runs_dir=str(root / "runs"),
                batch_size=4, text_encoder="none", audio_encoder=str(clap_dir), head="svr",
                feature_cache=str(root.parent / "kernel-cache"), seed=0)
    base.update(changes)
    return TrainConfig(**base)


def synthetic(n_groups: int = 20, per_group: int = 4, dim: int = 12, seed: int = 0):
    """Embeddings on uneven scales, a nonlinear target on a 0-100 scale, clips in groups."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_groups * per_group, dim)) * rng.uniform(0.5, 5, dim) + 3 * rng.normal(size=dim)
    y = 50 + 20 * np.tanh(x[:, 0] / 3) + 2 * x[:, 1] + rng.normal(size=len(x))
    return x, y, np.repeat(np.arange(n_groups), per_group).astype(str)


def test_refusals_are_one_line(table: Path, clap_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["train", str(table), "--columns", TABLE_COLUMNS, "--runs-dir", str(tmp_path), "--text-encoder", "none"]
    cases = [
        (["--head", "svr"], "--head svr: fits on a frozen pretrained encoder's embeddings; choose --audio-encoder"),
        (["--head", "ridge", "--audio-encoder", "aisfx", "--finetune-audio"], "--head ridge: fits on a frozen"),
        (["--head", "svr", "--audio-encoder", "aisfx", "--distribution", "20"], "--distribution needs a trained head"),
        (["--head", "ridge", "--audio-encoder", "aisfx", "--audio-only-targets", "mushra"], "needs --head per-target"),
        (["--head", "svr", "--audio-encoder", str(clap_dir), "--nproc", "2"], "--head svr: fitted once in one process"),
    ]
    for extra, message in cases:
        result = runner.invoke(app, base + extra)
        assert result.exit_code == 2, (extra, result.output)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], (extra, result.output)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["svr", "ridge"])
def test_same_data_same_fit(kind: str) -> None:
    x, y, groups = synthetic()
    first, second = fit_regressor(x, y, groups, kind), fit_regressor(x.copy(), y.copy(), groups.copy(), kind)
    assert first.params == second.params and first.inner_mse == second.inner_mse
    heads = [FittedRegressor(kind, x.shape[1]) for _ in range(2)]
    for head, fit in zip(heads, (first, second)):
        load_fit(head, fit, 50.0, 20.0)
    a, b = heads[0].state_dict(), heads[1].state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_inner_search_keeps_each_group_on_one_side() -> None:
    """Each group is 4 copies of one clip: a search that split groups would score memorising
    them as near perfect; grouped, the copies never help, and the search says so."""
    rng = np.random.default_rng(1)
    x = np.repeat(rng.normal(size=(20, 6)), 4, axis=0)
    y = np.repeat(rng.normal(size=20) * 10 + 50, 4)  # unrelated to x: nothing to learn across clips
    grouped = fit_regressor(x, y, np.repeat(np.arange(20), 4).astype(str), "svr")
    by_copy = fit_regressor(x, y, np.arange(80).astype(str), "svr")
    assert by_copy.inner_mse < 0.2  # copies on both sides: memorised
    assert grouped.inner_mse > 0.8  # no copy on both sides: no better than the mean (standardised units)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["svr", "ridge"])
def test_checkpointed_head_in_onnx_runtime_gives_sklearns_predictions(kind: str, tmp_path: Path) -> None:
    x, y, groups = synthetic()
    fit = fit_regressor(x, y, groups, kind)
    head = FittedRegressor(kind, x.shape[1])
    mean, std = 48.0, 17.0  # the model's target normalisation: the head maps to it
    load_fit(head, fit, mean, std)
    torch.save(head.state_dict(), tmp_path / "head.pt")
    fresh = FittedRegressor(kind, x.shape[1])  # no support vectors yet: loading gives the saved shapes
    fresh.load_state_dict(torch.load(tmp_path / "head.pt", weights_only=True))

    class OnScale(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = fresh

        def forward(self, e: torch.Tensor) -> torch.Tensor:
            return self.head(e) * std + mean

    path = tmp_path / "head.onnx"
    export_torchscript(OnScale(), (torch.zeros(2, x.shape[1]),), path, 17, ["e"], ["score"], {"e": {0: "b"}, "score": {0: "b"}})
    probe = (x + np.random.default_rng(7).normal(size=x.shape)).astype(np.float32)  # near, not at, the training clips
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"e": probe})[0][:, 0]
    expected = fit.predict(probe.astype(np.float64))
    assert np.abs(got - expected).max() <= 1e-4
    assert np.std(expected) > 1.0  # the predictions vary: the comparison means something
    with torch.no_grad():
        assert np.abs(OnScale()(torch.from_numpy(probe))[:, 0].numpy() - expected).max() <= 1e-4


@pytest.mark.slow
def test_the_search_never_sees_the_validation_clips(table: Path, clap_dir: Path, tmp_path: Path) -> None:
    """The same training clips with the validation clips' ratings turned upside down: the same
    chosen hyperparameters and the same fitted head (a search or fit that read them would move)."""
    cfg = config(table, clap_dir, tmp_path)
    splits = resolve_splits(Path(cfg.data), parse_column_spec(cfg.columns), cfg.val_fraction, cfg.seed, cfg.group_by, None)
    flipped = dataclasses.replace(splits.validation, items=[
        dataclasses.replace(it, targets={k: 100.0 - v for k, v in it.targets.items()}) for it in splits.validation.items])
    runs = []
    for name, s in (("true", splits), ("flipped", dataclasses.replace(splits, validation=flipped))):
        trainer = Trainer(dataclasses.replace(cfg, name=name), s, quiet()[0])
        result = trainer.fit()
        runs.append((result, json.loads((result.run_dir / FIT_REPORT).read_text()), trainer.model.state_dict()))
    (a, fit_a, state_a), (b, fit_b, state_b) = runs
    assert fit_a == fit_b
    heads = [k for k in state_a if k.startswith("heads.")]
    assert heads and all(torch.equal(state_a[k], state_b[k]) for k in heads)
    assert a.best["mushra"]["srcc"] == pytest.approx(-b.best["mushra"]["srcc"])  # the flip did reach validation
    assert fit_a["groups"] == 4 and fit_a["grouped_by"] == "signal values"  # 4 of 5 signals train


@pytest.mark.slow
def test_train_export_score_torch_free_gives_the_validation_predictions(table: Path, clap_dir: Path,
                                                                         tmp_path: Path) -> None:
    runner = CliRunner()
    runs = tmp_path / "runs"
    result = runner.invoke(app, ["train", str(table), "--columns", TABLE_COLUMNS, "--group-by", "signal",
                                 "--runs-dir", str(runs), "--name", "svr", "--batch-size", "4", "--text-encoder", "none",
                                 "--audio-encoder", str(clap_dir), "--head", "svr",
                                 "--feature-cache", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    assert "no epochs: fitted once" in result.output and "FITTED ONCE" in result.output
    run = runs / "svr"
    for name in ("val_predictions.csv", "best_metrics.json", "metrics.jsonl", "checkpoints/best.pt", FIT_REPORT):
        assert (run / name).is_file(), name
    result = runner.invoke(app, ["export", str(run), "--quantize", "int8", "--force"])
    assert result.exit_code == 0, result.output
    bundle = run / "bundle"
    int8 = onnx.load(str(bundle / "audio.int8.onnx"))
    produced_by = {o: n.op_type for n in int8.graph.node for o in n.output}
    head = [n for n in int8.graph.node if "/fitted/" in n.name and n.op_type == "MatMul"]
    assert len(head) == 2 and all(produced_by.get(i) != "DequantizeLinear" for n in head for i in n.input)
    assert any(n.op_type == "DequantizeLinear" for n in int8.graph.node)  # the encoder is quantised

    out = tmp_path / "scores.csv"
    score = subprocess.run([sys.executable, "-m", "mos", "score", str(table.parent / "audio"), "--bundle", str(bundle),
                            "--out", str(out)], capture_output=True, text=True, env=blocked_env(tmp_path), cwd=tmp_path)
    assert score.returncode == 0, score.stderr
    scored = {Path(r["path"]).resolve(): float(r["mushra"]) for r in csv.DictReader(out.open())}
    validation = list(csv.DictReader((run / "val_predictions.csv").open()))
    assert len(validation) == 4
    for row in validation:
        assert scored[(table.parent / row["id"]).resolve()] == pytest.approx(float(row["mushra"]), abs=1e-3)


@pytest.mark.slow
def test_cross_validation_fits_each_fold(table: Path, clap_dir: Path, tmp_path: Path) -> None:
    """Folds by clip: each fold's search groups by clip, over its training clips alone (not its
    inner validation clips, not its held-out fold)."""
    result = run_training(config(table, clap_dir, tmp_path, head="ridge", folds=2, group_by=None, name="cv"),
                          quiet()[0])
    assert (result.run_dir / "oof_predictions.csv").is_file()
    for k in (1, 2):
        fold = result.run_dir / "folds" / f"fold{k}"
        report = json.loads((fold / FIT_REPORT).read_text())
        held = json.loads((fold / "heldout.json").read_text())
        assert report["head"] == "ridge" and report["grouped_by"] == "clips" and held["best_epoch"] == 1
        assert report["clips"] == report["groups"] == held["n_train"] < 20 - held["n_held_out"]


@pytest.mark.slow
def test_with_text_the_caption_embedding_joins_the_audio_embedding(clap_dir: Path, tiny_text_encoder: Path,
                                                                   tmp_path: Path) -> None:
    """Two targets, one ridge regressor each, on [pooled audio, pooled caption tokens]: a clip's
    score moves with its caption."""
    from fixtures_encoders import TEXT_HIDDEN
    from fixtures_train import tiny_demo

    demo = tiny_demo(tmp_path / "demo")
    cfg = TrainConfig(data=str(demo), name="text", runs_dir=str(tmp_path / "runs"), batch_size=8, head="ridge",
                      text_encoder=str(tiny_text_encoder), audio_encoder=str(clap_dir),
                      feature_cache=str(tmp_path / "cache"))
    result = run_training(cfg, quiet()[0])
    report = json.loads((result.run_dir / FIT_REPORT).read_text())
    assert sorted(report["targets"]) == ["quality", "score"] and report["grouped_by"] == "clips"
    from mos.trainer.checkpoint import load_model
    from mos.model.text_encoder import load_text_encoder

    model, _ = load_model(result.run_dir)
    assert model.fitted_head("score").x_mean.shape[0] == model.cfg.audio_dim + TEXT_HIDDEN
    text = load_text_encoder(model.cfg.text_encoder, model.cfg.max_text_tokens)
    features = text.encode(["a dog barks in the rain", "quiet piano music"])
    wav = torch.zeros(1, 48000).normal_(generator=torch.Generator().manual_seed(0)) * 0.1
    scores = []
    with torch.no_grad():
        for f in features:
            t = torch.as_tensor(np.asarray(f)).unsqueeze(0)
            scores.append(model.scores(wav, torch.tensor([48000]), t, torch.tensor([t.shape[1]]), clamp=False))
    assert float((scores[0] - scores[1]).abs().max()) > 1e-3


@pytest.mark.slow
def test_without_the_feature_cache_the_same_fit(table: Path, clap_dir: Path, tmp_path: Path) -> None:
    """--feature-cache none: the encoder runs on each window of the audio itself, and the head is
    the one the cached features give."""
    states = []
    for name, cache in (("cached", None), ("direct", "none")):
        changes = {"feature_cache": cache} if cache else {}
        result = run_training(config(table, clap_dir, tmp_path, head="ridge", name=name, **changes), quiet()[0])
        states.append((json.loads((result.run_dir / FIT_REPORT).read_text()),
                       torch.load(result.run_dir / "checkpoints" / "best.pt", weights_only=True)["state_dict"]))
    (fit_a, state_a), (fit_b, state_b) = states
    assert fit_a["targets"]["mushra"]["params"] == fit_b["targets"]["mushra"]["params"]
    heads = [k for k in state_a if k.startswith("heads.")]
    assert heads and all(torch.allclose(state_a[k], state_b[k], rtol=1e-4, atol=1e-5) for k in heads)
