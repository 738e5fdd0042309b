"""Shared fixtures, each built once per test session: a small demo dataset tree (real wav files),
a tiny text encoder, and the one real MiniLM export of the session; and the rule that puts a test
in the slow lane (docs/testing.md)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from mos.data.demo import DemoConfig, build_demo

SMALL_DEMO = DemoConfig(n_train=96, n_validation=32, seconds=1.0)
# mos distill's tests: the teacher's rated data, an unrated pool, and the tiny model size.
DISTILL_DATA = DemoConfig(n_train=32, n_validation=24, seconds=0.5)
DISTILL_POOL = DemoConfig(n_train=48, n_validation=2, seconds=0.5, seed=7)
TINY = {"channels": [32, 48, 64, 64], "hidden": 64}

# Fixtures that train or export a model (seconds to tens of seconds each): a test that uses one is
# slow even when it is not marked, so `pytest -m "not slow"` never builds them. The runtime's two
# session bundles (text_bundle, audio_bundle, about a second each) stay in the quick lane.
SLOW_FIXTURES = frozenset({
    "ddp", "teacher_setup", "distilled", "minilm_bundle", "exported", "trained_text_run", "text_run", "audio_run",
    "trained", "trained_run", "straight", "pooled_bundle",
})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An XACLE-layout demo tree with 96 train and 32 validation clips of 1 s."""
    return build_demo(tmp_path_factory.mktemp("demo"), SMALL_DEMO)


@pytest.fixture(scope="session", autouse=True)
def feature_cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Frozen-encoder features are cached under a temporary MOS_CACHE_DIR, never in ~/.cache."""
    root = tmp_path_factory.mktemp("mos-cache")
    os.environ["MOS_CACHE_DIR"] = str(root)
    return root


@pytest.fixture(scope="session")
def tiny_text_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT text encoder directory (`--text-encoder PATH`, features of width
    fixtures_encoders.TEXT_HIDDEN): for the tests about text bundles that are not about MiniLM."""
    pytest.importorskip("transformers")
    from fixtures_encoders import make_tiny_text_encoder

    return make_tiny_text_encoder(tmp_path_factory.mktemp("tiny-text") / "encoder")


@dataclass
class MiniLMBundle:
    """The session's one export of the real MiniLM text encoder (90 MB, slow to export and to
    quantise): a model trained 2 epochs on the tiny demo set with MiniLM captions, exported by
    `mos export --quantize int8` (calibrated on its training clips and captions, judged on its
    validation clips). Tests copy the bundle before changing it."""

    run: Path
    bundle: Path
    report: object  # mos.export.ExportReport


@pytest.fixture(scope="session")
def minilm_bundle(tmp_path_factory: pytest.TempPathFactory) -> MiniLMBundle:
    pytest.importorskip("torch")
    from fixtures_export import train_demo_run

    from mos.export.run_data import export_run

    run = train_demo_run(tmp_path_factory.mktemp("minilm-run"), "minilm")
    bundle = tmp_path_factory.mktemp("minilm-bundle") / "bundle"
    report = export_run(run, bundle, quantize="int8", log=lambda _: None)
    return MiniLMBundle(run, bundle, report)


@pytest.fixture(scope="session")
def teacher_setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Rated data, an unrated pool (another demo set's audio) and an exported teacher trained on the data."""
    from mos.distill.trainer import DistillTrainer  # noqa: F401  (the Trainer hooks the teacher run uses)
    from mos.export import export_bundle
    from mos.trainer.loop import Trainer
    from mos.trainer.config import TrainConfig
    from mos.trainer.run import data_sources
    from mos.trainer.splits import resolve_splits

    from fixtures_train import quiet

    root = tmp_path_factory.mktemp("distill")
    data = build_demo(root / "data", DISTILL_DATA)
    pool = build_demo(root / "pool", DISTILL_POOL) / "wav" / "train"
    cfg = TrainConfig(data=str(data), name="teacher", runs_dir=str(root / "runs"), epochs=6, lr=3e-3,
                      text_encoder="none", patience=10)
    splits = resolve_splits(data, None, 0.2, 0, None, None)
    console, _ = quiet()
    Trainer(cfg, splits, console, root / "runs" / "teacher", data_sources(data, None), model_overrides=TINY).fit()
    export_bundle(root / "runs" / "teacher", verify=False)
    return {"root": root, "data": data, "pool": pool, "teacher": root / "runs" / "teacher"}
