"""Helpers for the export tests: an untrained two-target model saved as a run folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from mos.model import ModelConfig, MosModel, TargetSpec
from mos.trainer.checkpoint import save_checkpoint

TARGETS = [TargetSpec("overall", 1.0, 5.0, 3.0, 1.0), TargetSpec("textual", 1.0, 5.0, 3.0, 1.0)]


def make_model(text_encoder: str, seed: int = 0, text_dim: int = 384) -> MosModel:
    """A random-weight two-target model; `text_dim` is the text encoder's feature width."""
    torch.manual_seed(seed)
    model = MosModel(ModelConfig(targets=[TargetSpec(**vars(t)) for t in TARGETS], text_encoder=text_encoder,
                                 text_dim=text_dim))
    with torch.no_grad():  # non-trivial log-mel statistics, as a trained model has
        model.frontend.feat_mean.uniform_(-8.0, -2.0)
        model.frontend.feat_std.uniform_(1.0, 3.0)
    return model.eval()


def make_run(root: Path, text_encoder: str, seed: int = 0, text_dim: int = 384) -> tuple[Path, MosModel]:
    """A run folder `root/run` with checkpoints/best.pt holding a random-weight model."""
    model = make_model(text_encoder, seed, text_dim)
    run = root / "run"
    save_checkpoint(run / "checkpoints" / "best.pt", model,
                    {"data": "synthetic", "validation_metrics": {}, "epoch": 0, "train_config": {}})
    return run, model


def copy_bundle(bundle: Path, dest: Path) -> Path:
    shutil.copytree(bundle, dest)
    return dest


SMALL = dict(channels=(32, 48, 64, 64), hidden=64, attention_heads=4)


def make_trained_run(runs: Path, data: str | None, data_dir: Path | None = None, name: str = "xacle",
                     seed: int = 5) -> Path:
    """`runs/<name>` laid out as `mos train --runs-dir runs` writes it: checkpoints/best.pt (a
    small random-weight audio-only 'score' model, as the XACLE demo set rates) and config.json
    recording `data` as given on the command line and, when given, the absolute `data_dir`."""
    import json

    from mos.model import ModelConfig
    from mos.trainer.config import TrainConfig

    torch.manual_seed(seed)
    model = MosModel(ModelConfig(text_encoder="none", **SMALL))
    with torch.no_grad():
        model.frontend.feat_mean.uniform_(-8.0, -2.0)
        model.frontend.feat_std.uniform_(1.0, 3.0)
    run = runs / name
    train = TrainConfig(data=data, name=name, runs_dir=str(runs.name), text_encoder="none")
    save_checkpoint(run / "checkpoints" / "best.pt", model.eval(),
                    {"data": str(data), "validation_metrics": {}, "epoch": 1, "train_config": train.to_dict()})
    config = {"train": train.to_dict(), "model": model.cfg.to_dict(), "data": str(data)}
    if data_dir is not None:
        config["data_dir"] = str(data_dir)
    (run / "config.json").write_text(json.dumps(config, indent=2))
    return run


def train_demo_run(root: Path, text_encoder: str = "none", seed: int = 0) -> Path:
    """`mos train` (2 epochs, in process) on the tiny demo tree built under `root`: a model whose
    outputs vary between clips as a trained model's do (an untrained one's barely move, so any
    int8 error is large against their spread). Returns the run folder (`root/runs/demo`); its data
    is `root/XACLE_dataset`."""
    from fixtures_train import tiny_demo
    from rich.console import Console

    from mos.trainer.config import TrainConfig
    from mos.trainer.run import run_training

    demo = tiny_demo(root) / "XACLE_dataset"
    cfg = TrainConfig(data=str(demo), name="demo", runs_dir=str(root / "runs"), epochs=2, batch_size=8,
                      text_encoder=text_encoder, seed=seed)
    with (root / "train.log").open("w") as log:
        run_training(cfg, Console(file=log))
    return root / "runs" / "demo"
