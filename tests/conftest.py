"""Shared fixtures: a small demo dataset tree (real wav files) built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from mos.data.demo import DemoConfig, build_demo

SMALL_DEMO = DemoConfig(n_train=96, n_validation=32, seconds=1.0)


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An XACLE-layout demo tree with 96 train and 32 validation clips of 1 s."""
    return build_demo(tmp_path_factory.mktemp("demo"), SMALL_DEMO)
