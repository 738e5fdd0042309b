"""The trainer: losses, a short run that beats the untrained model, checkpoints, resume, plots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from rich.console import Console  # noqa: E402

from mos.errors import MosError  # noqa: E402
from mos.trainer.checkpoint import load_model  # noqa: E402
from mos.trainer.config import TrainConfig  # noqa: E402
from mos.trainer.losses import combined_loss, correlation_loss, mse_loss, ranking_loss  # noqa: E402
from mos.model.encoders.loading import encoder_sha256  # noqa: E402
from mos.model.text_encoder import resolve_text_model_dir  # noqa: E402
from mos.trainer.run import run_training  # noqa: E402


def test_losses_behave() -> None:
    t = torch.tensor([0.0, 1.0, 2.0, 3.0])
    assert float(ranking_loss(t * 2, t, margin=0.1)) == 0.0
    assert float(ranking_loss(-t, t, margin=0.1)) > 1.0
    assert abs(float(correlation_loss(3 * t + 1, t))) < 1e-6
    assert float(correlation_loss(-t, t)) == pytest.approx(2.0)
    assert float(mse_loss(t + 0.1, t, clip_tau=0.25)) == 0.0
    assert float(mse_loss(t + 0.5, t, clip_tau=0.25)) == pytest.approx(0.25)
    both = combined_loss(torch.stack([t, -t], 1), torch.stack([t, t], 1), 1.0, 0.5, 0.5)
    assert float(both) > 0


def _cfg(tmp_path: Path, data: Path, **kw) -> TrainConfig:
    base = dict(data=str(data), name="t", runs_dir=str(tmp_path / "runs"), epochs=5, batch_size=16, patience=10,
                lr=2e-3, seed=0)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def trained_run(small_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainConfig, object]:
    tmp = tmp_path_factory.mktemp("train")
    cfg = _cfg(tmp, small_demo)
    return cfg, run_training(cfg, Console(file=open(tmp / "log.txt", "w")))


@pytest.mark.slow
def test_short_run_beats_untrained(trained_run) -> None:
    cfg, result = trained_run
    # Audio quality is learned quickly; the mean SRCC over both targets must clearly beat the untrained model.
    untrained = result.untrained["quality"]["srcc"]
    assert result.best["quality"]["srcc"] > max(0.3, untrained + 0.3), (untrained, result.best)
    assert result.best_srcc > sum(m["srcc"] for m in result.untrained.values()) / 2 + 0.2


def test_run_folder_contents(trained_run) -> None:
    cfg, result = trained_run
    run = Path(result.run_dir)
    for name in ("config.json", "metrics.jsonl", "curves.png", "scatter.png", "val_predictions.csv",
                 "best_metrics.json", "checkpoints/best.pt", "checkpoints/last.pt"):
        assert (run / name).is_file(), name
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == list(range(0, len(lines)))
    assert set(lines[-1]["val"]) == {"score", "quality"}
    model, ckpt = load_model(run)
    assert model.cfg.target_names == ["score", "quality"]
    assert ckpt["epoch"] == result.best_epoch
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"
    # contract 4: id, the targets, their true values (the demo tree has no systems or groups)
    header = (run / "val_predictions.csv").read_text().splitlines()[0]
    assert header == "id,score,quality,true_score,true_quality"
    # contract 2 and 3: the training window and the text encoder's hash are in the model config
    assert model.cfg.window_seconds == cfg.max_seconds
    assert model.cfg.text_encoder_sha256 == encoder_sha256(resolve_text_model_dir("minilm"))
    saved = json.loads((run / "config.json").read_text())
    assert saved["data_dir"] == str(Path(cfg.data).resolve())


@pytest.mark.slow
def test_resume_continues_from_last_epoch(small_demo: Path, tmp_path: Path) -> None:
    log = Console(file=open(tmp_path / "log.txt", "w"))
    run_training(_cfg(tmp_path, small_demo, epochs=2, text_encoder="none"), log)
    resumed = run_training(_cfg(tmp_path, small_demo, epochs=3, resume=True), log, explicit={"epochs"})
    lines = [json.loads(x) for x in (Path(resumed.run_dir) / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [0, 1, 2, 3]
    model, _ = load_model(Path(resumed.run_dir) / "checkpoints" / "last.pt")
    assert not model.cfg.uses_text  # the saved config wins on resume


def test_resume_without_run_is_a_clear_error(small_demo: Path, tmp_path: Path) -> None:
    with pytest.raises(MosError, match="nothing to resume"):
        run_training(_cfg(tmp_path, small_demo, resume=True), Console(file=open(tmp_path / "log.txt", "w")))


def test_config_file_json_and_toml(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps({"epochs": 3, "rank_weight": 0.0, "name": "x"}))
    (tmp_path / "b.toml").write_text('epochs = 4\ntext_encoder = "none"\n')
    a = TrainConfig.from_file(tmp_path / "a.json")
    assert (a.epochs, a.rank_weight, a.name) == (3, 0.0, "x")
    b = TrainConfig.from_file(tmp_path / "b.toml").with_overrides(epochs=9, lr=None)
    assert (b.epochs, b.text_encoder, b.lr) == (9, "none", TrainConfig().lr)
    (tmp_path / "c.json").write_text(json.dumps({"epoch": 3}))
    with pytest.raises(MosError, match="c.json: unknown config key"):
        TrainConfig.from_file(tmp_path / "c.json")
    (tmp_path / "d.json").write_text("{not json")
    with pytest.raises(MosError, match="d.json: not a valid config file"):
        TrainConfig.from_file(tmp_path / "d.json")
