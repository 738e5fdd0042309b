"""Repeated cross-validation (`mos train --folds K --repeats R`): other fold assignments per
repeat, each respecting the groups; cv.json's per-repeat figures and their mean and SD; --resume
after an interrupted repeat; the refusal without --folds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fixtures_train import TABLE_COLUMNS, make_table, read_csv  # noqa: E402

from mos.data.table import load_table_groups, parse_column_spec  # noqa: E402
from mos.errors import MosError  # noqa: E402
from mos.trainer.config import TrainConfig  # noqa: E402
from mos.trainer.cv_repeats import repeat_seed  # noqa: E402
from mos.trainer.splits import make_folds, make_repeated_folds  # noqa: E402

COLUMNS = parse_column_spec(TABLE_COLUMNS)
METRICS = ("mse", "lcc", "srcc", "ktau")


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_table(tmp_path_factory.mktemp("table"))


def cli(*args: str, cwd: Path):
    from typer.testing import CliRunner

    from mos.cli import app

    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        return CliRunner().invoke(app, list(args))


def _partition(fold: list[int], groups: list[str]) -> set[frozenset[str]]:
    """The folds as sets of groups (the fold numbers themselves do not matter)."""
    return {frozenset(g for g, f in zip(groups, fold) if f == k) for k in set(fold)}


def test_repeats_deal_other_folds_each_keeping_groups_apart(table: Path) -> None:
    groups = load_table_groups(table, "signal", COLUMNS)
    assert [repeat_seed(7, r) for r in (1, 2, 3)] == [7, 1007, 2007]  # repeat 1 is the run without --repeats
    # 6 signals in 3 folds of 2 can be dealt only 15 ways: seeds 0 and 1000 deal the same folds,
    # so the second repeat moves on to the next seed up that deals other ones
    same = [_partition(f.fold, [groups[it.id] for it in f.manifest.items])
            for f in (make_folds(table, COLUMNS, 3, s, "signal") for s in (0, 1000))]
    assert same[0] == same[1]
    dealt = make_repeated_folds(table, COLUMNS, 3, [repeat_seed(0, r) for r in (1, 2, 3)], "signal")
    assert dealt[0].seed == 0 and dealt[1].seed > 1000 and f"(seed {dealt[1].seed})" in dealt[1].description
    partitions = []
    for folds in dealt:
        ids = [it.id for it in folds.manifest.items]
        fold_of: dict[str, set[int]] = {}
        for i, f in zip(ids, folds.fold):
            fold_of.setdefault(groups[i], set()).add(f)
        assert all(len(f) == 1 for f in fold_of.values())  # no group in two folds
        partitions.append(_partition(folds.fold, [groups[i] for i in ids]))
    assert len({frozenset(p) for p in partitions}) == 3, partitions  # three different fold assignments


def test_too_few_ways_to_deal_the_folds_is_a_one_line_refusal(table: Path) -> None:
    # 6 signals in 2 folds of 3 can be dealt 10 ways
    assert len(make_repeated_folds(table, COLUMNS, 2, [repeat_seed(0, r) for r in range(1, 11)], "signal")) == 10
    with pytest.raises(MosError, match="--repeats 11: found only 10 different ways to deal the 6 signal values to 2 folds"):
        make_repeated_folds(table, COLUMNS, 2, [repeat_seed(0, r) for r in range(1, 12)], "signal")


def test_repeats_without_folds_is_a_one_line_refusal(table: Path, tmp_path: Path) -> None:
    for bad, message in ((dict(repeats=3), "--repeats 3 repeats a cross-validation: it needs --folds K"),
                         (dict(folds=3, repeats=0), "--repeats 0: must be at least 1")):
        with pytest.raises(MosError, match=message):
            TrainConfig(**bad).check()
    result = cli("train", str(table), "--columns", TABLE_COLUMNS, "--repeats", "3", "--text-encoder", "none",
                 cwd=tmp_path)
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and "needs --folds K" in result.stderr
    assert not (tmp_path / "runs").exists()


def _mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_repeated_cross_validation_reports_each_repeat_and_resumes(table: Path, tmp_path: Path) -> None:
    args = ("train", str(table), "--columns", TABLE_COLUMNS, "--folds", "2", "--repeats", "2", "--group-by", "signal",
            "--text-encoder", "none", "--epochs", "1", "--batch-size", "4", "--max-seconds", "0.3", "--name", "cv")
    result = cli(*args, cwd=tmp_path)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "(seeds 0, 1000)" in out and "(seed 1000)" in out
    assert out.count("repeat 1/2: mushra [UTTERANCE] SRCC=") == 1 and out.count("repeat 2/2: mushra [UTTERANCE] SRCC=") == 1
    assert "mean +- SD over 2 repeats" in out
    run = tmp_path / "runs" / "cv"
    assert not (run / "folds").exists() and not (run / "oof_predictions.csv").exists()
    cv = json.loads((run / "cv.json").read_text())
    assert cv["repeats"] == 2 and len(cv["per_repeat"]) == 2
    assert [(p["repeat"], p["seed"], p["folder"]) for p in cv["per_repeat"]] == [(1, 0, "repeats/r1"), (2, 1000, "repeats/r2")]
    groups = load_table_groups(table, "signal", COLUMNS)
    partitions = []
    for p in cv["per_repeat"]:
        own = json.loads((run / p["folder"] / "cv.json").read_text())
        assert p["levels"] == own["levels"]  # each repeat's pooled out-of-fold figures, as its own cv.json has them
        rows = read_csv(run / p["folder"] / "oof_predictions.csv")
        assert sorted(r["id"] for r in rows) == sorted(groups)  # every clip once per repeat
        fold_of: dict[str, set[str]] = {}
        for r in rows:
            fold_of.setdefault(r["group"], set()).add(r["fold"])
        assert all(len(f) == 1 for f in fold_of.values())
        partitions.append(_partition([int(r["fold"]) for r in rows], [r["group"] for r in rows]))
    assert partitions[0] != partitions[1]
    for level in ("utterance", "system"):
        for key in METRICS:
            values = [p["levels"]["mushra"][level][key] for p in cv["per_repeat"]]
            assert cv["levels"]["mushra"][level][key] == pytest.approx(np.mean(values))
            assert cv["levels_sd"]["mushra"][level][key] == pytest.approx(np.std(values, ddof=1))
        assert cv["levels"]["mushra"][level]["n"] == cv["per_repeat"][0]["levels"]["mushra"][level]["n"]

    # An interruption during repeat 2's second fold: its cv.json and that fold never got written.
    r2 = run / "repeats" / "r2"
    (r2 / "cv.json").unlink()
    shutil.rmtree(r2 / "folds" / "fold2")
    (run / "cv.json").unlink()
    before = {"r1": _mtimes(run / "repeats" / "r1"), "r2fold1": _mtimes(r2 / "folds" / "fold1")}
    again = cli("train", "--resume", "--name", "cv", cwd=tmp_path)
    assert again.exit_code == 0, again.stderr
    assert "repeat 1/2: finished earlier" in again.stdout and "repeat 2/2: fold 1/2: finished earlier" in again.stdout
    assert "repeat 2/2: fold 2/2: 8 train" in again.stdout and "repeat 1/2: fold" not in again.stdout
    assert _mtimes(run / "repeats" / "r1") == before["r1"]  # nothing of the finished repeat redone
    assert _mtimes(r2 / "folds" / "fold1") == before["r2fold1"]  # nor of the finished fold
    resumed = json.loads((run / "cv.json").read_text())
    assert resumed["per_repeat"][0] == cv["per_repeat"][0] and len(resumed["per_repeat"]) == 2
    assert (r2 / "folds" / "fold2" / "heldout.json").is_file() and (r2 / "cv.json").is_file()
