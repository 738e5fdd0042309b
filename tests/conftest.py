"""Shared fixtures: a small demo dataset tree (real wav files) built once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mos.data.demo import DemoConfig, build_demo

SMALL_DEMO = DemoConfig(n_train=96, n_validation=32, seconds=1.0)


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
