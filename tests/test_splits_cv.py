"""Honest splits: the default split says how it was made, --group-by holds out whole groups,
--val-data names the validation clips, and --folds cross-validates with out-of-fold metrics,
bootstrap intervals over groups and a model choice that never sees the held-out fold."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fixtures_mushra import REAL_MUSHRA, needs_real_mushra  # noqa: E402
from fixtures_train import TABLE_COLUMNS, make_table, quiet, read_csv  # noqa: E402

from mos.data.table import load_table_groups, parse_column_spec  # noqa: E402
from mos.errors import MosError  # noqa: E402
from mos.metrics import bootstrap_levels  # noqa: E402
from mos.trainer.config import TrainConfig  # noqa: E402
from mos.trainer.run import run_splits, run_training  # noqa: E402
from mos.trainer.splits import fold_splits, make_folds, resolve_splits  # noqa: E402

COLUMNS = parse_column_spec(TABLE_COLUMNS)


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_table(tmp_path_factory.mktemp("table"))


def _groups(table: Path) -> dict[str, str]:
    return load_table_groups(table, "signal", COLUMNS)


def test_default_split_says_how_it_was_made(table: Path) -> None:
    splits = resolve_splits(table, COLUMNS, 0.25, 7)
    assert "random clip-level 25% (seed 7)" in splits.description and "--group-by" in splits.description
    assert (len(splits.train), len(splits.validation)) == (18, 6)


def test_group_by_holds_out_whole_groups(table: Path) -> None:
    groups = _groups(table)
    splits = resolve_splits(table, COLUMNS, 0.34, 0, group_by="signal")
    train_groups = {groups[it.id] for it in splits.train.items}
    val_groups = {groups[it.id] for it in splits.validation.items}
    assert not train_groups & val_groups and len(val_groups) == 2
    assert len(splits.validation) == 4 * len(val_groups)  # every clip of a held-out signal
    assert "split by signal: 2 of 6 signal values held out (seed 0)" in splits.description
    # ids are the paths as the table writes them, the same file names in every folder
    assert {it.id.split("/")[-1] for it in splits.validation.items} == {"clean.wav", "light.wav", "medium.wav", "heavy.wav"}


def test_split_options_that_cannot_work_are_clear_errors(table: Path, small_demo: Path) -> None:
    with pytest.raises(MosError, match="missing column 'speaker'"):
        resolve_splits(table, COLUMNS, 0.2, 0, group_by="speaker")
    with pytest.raises(MosError, match="has its own validation split; --group-by applies where the split is made here"):
        resolve_splits(small_demo, None, 0.2, 0, group_by="caption")
    with pytest.raises(MosError, match="named columns exist only in a ratings table"):
        make_folds(small_demo, None, 3, 0, "signal")
    for bad, message in ((dict(folds=1), "--folds 1"), (dict(folds=3, val_data="x.csv"), "exclude each other"),
                         (dict(max_seconds=0.0), "--max-seconds 0")):
        with pytest.raises(MosError, match=message):
            TrainConfig(**bad).check()


def test_val_data_file_is_the_validation_set(table: Path, tmp_path: Path) -> None:
    rows = table.read_text().splitlines()
    train_csv, val_csv = table.parent / "train_part.csv", table.parent / "val_part.csv"
    train_csv.write_text("\n".join(rows[:17]) + "\n")  # signals 0-3
    val_csv.write_text("\n".join([rows[0], *rows[17:]]) + "\n")  # signals 4-5
    cfg = TrainConfig(data=str(train_csv), val_data=str(val_csv), columns=TABLE_COLUMNS, name="v",
                      runs_dir=str(tmp_path), epochs=1, batch_size=4, text_encoder="none", max_seconds=0.3)
    console, out = quiet()
    run_training(cfg, console)
    assert "validation: " in out.getvalue() and "(8 clips, --val-data)" in out.getvalue()
    predicted = [r["id"] for r in read_csv(tmp_path / "v" / "val_predictions.csv")]
    assert predicted == [r.split(",")[0] for r in rows[17:]]
    saved = json.loads((tmp_path / "v" / "config.json").read_text())
    assert saved["val_data_dir"] == str(val_csv.resolve()) and saved["data_dir"] == str(train_csv.resolve())
    assert [it.id for it in run_splits(saved).validation.items] == predicted  # the run's split, made again
    with pytest.raises(MosError, match="validation clip\\(s\\) are also in the training data"):
        resolve_splits(table, COLUMNS, 0.2, 0, val_data=val_csv)


def test_folds_never_share_a_group_and_inner_validation_stays_inside(table: Path) -> None:
    groups = _groups(table)
    folds = make_folds(table, COLUMNS, 3, 0, "signal")
    assert sorted(folds.fold.count(k) for k in range(3)) == [8, 8, 8]
    for k in range(3):
        splits, held = fold_splits(folds, k, 0.25, 0)
        sides = [{groups[it.id] for it in m.items} for m in (splits.train, splits.validation, held)]
        assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2]), sides
        assert len(splits.train) + len(splits.validation) + len(held) == 24


def cli(*args: str, cwd: Path):
    from typer.testing import CliRunner

    from mos.cli import app

    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        return CliRunner().invoke(app, list(args))


@pytest.mark.slow
def test_cross_validation_writes_out_of_fold_predictions_and_cv_json(table: Path, tmp_path: Path) -> None:
    args = ("train", str(table), "--columns", TABLE_COLUMNS, "--folds", "3", "--group-by", "signal",
            "--text-encoder", "none", "--epochs", "2", "--batch-size", "4", "--max-seconds", "0.3", "--name", "cv")
    result = cli(*args, cwd=tmp_path)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "3 folds grouped by signal: 6 values dealt to 3 folds, no value in two folds (seed 0)" in out
    assert "model choice: inner validation" in out
    assert "OUT-OF-FOLD (24 clips, 3 folds; 95% intervals from 2000 resamples of the 6 signal values)" in out
    assert "mushra [UTTERANCE] MSE=" in out and "mushra [SYSTEM] MSE=" in out
    assert "mushra per fold (held-out clips, not pooled): SRCC mean" in out
    run = tmp_path / "runs" / "cv"
    rows = read_csv(run / "oof_predictions.csv")
    assert list(rows[0]) == ["id", "mushra", "true_mushra", "system", "group", "fold"]
    assert sorted(r["id"] for r in rows) == sorted(_groups(table))  # every clip once
    fold_of_group: dict[str, set[str]] = {}
    for r in rows:
        fold_of_group.setdefault(r["group"], set()).add(r["fold"])
    assert all(len(f) == 1 for f in fold_of_group.values()) and {r["fold"] for r in rows} == {"1", "2", "3"}
    cv = json.loads((run / "cv.json").read_text())
    fold_best = json.loads((run / "folds" / "fold1" / "best_metrics.json").read_text())
    assert set(cv["levels"]) == set(fold_best["levels"]) == {"mushra"}
    assert set(cv["levels"]["mushra"]) == {"utterance", "system"}
    assert set(cv["levels"]["mushra"]["utterance"]) == set(fold_best["levels"]["mushra"]["utterance"])
    assert cv["levels"]["mushra"]["utterance"]["n"] == 24 and cv["levels"]["mushra"]["system"]["n"] == 4
    low, high = cv["intervals_95"]["mushra"]["utterance"]["srcc"]
    assert low <= cv["levels"]["mushra"]["utterance"]["srcc"] <= high
    assert cv["bootstrap"]["unit"] == "signal" and cv["selection"].startswith("inner validation")
    assert [f["fold"] for f in cv["per_fold"]] == [1, 2, 3]
    assert cv["per_fold_mean_utterance"]["mushra"]["srcc"] == pytest.approx(
        np.mean([f["levels"]["mushra"]["utterance"]["srcc"] for f in cv["per_fold"]]))
    for f in cv["per_fold"]:
        inner = {r["group"] for r in read_csv(run / "folds" / f"fold{f['fold']}" / "val_predictions.csv")}
        assert inner and not inner & set(f["held_out_groups"])  # early stopping never saw the held-out fold
        assert set(f["levels"]["mushra"]) == {"utterance", "system"}
    # --resume finds every fold finished and writes the same figures
    again = cli("train", "--resume", "--name", "cv", cwd=tmp_path)
    assert again.exit_code == 0, again.stderr
    assert again.stdout.count("finished earlier") == 3
    assert json.loads((run / "cv.json").read_text())["levels"] == cv["levels"]


@pytest.mark.slow
def test_bootstrap_resamples_groups_not_clips() -> None:
    rng = np.random.default_rng(0)
    true = rng.normal(size=40)
    pred = true + rng.normal(size=40)
    one_group = bootstrap_levels(pred, true, ["g"] * 40, n_resamples=200)
    low, high = one_group["utterance"]["srcc"]
    assert low == high  # one group: every resample is the whole set
    per_clip = bootstrap_levels(pred, true, [str(i) for i in range(40)], n_resamples=200)
    assert per_clip["utterance"]["srcc"][1] - per_clip["utterance"]["srcc"][0] > 0.1
    systems = [f"s{i % 4}" for i in range(40)]
    both = bootstrap_levels(pred, true, [str(i // 5) for i in range(40)], systems, n_resamples=200)
    assert set(both) == {"utterance", "system"} and set(both["system"]) == {"mse", "lcc", "srcc", "ktau"}


@needs_real_mushra
def test_mushra_split_by_signal_keeps_utterances_apart() -> None:
    assert REAL_MUSHRA is not None
    table = REAL_MUSHRA / "ratings.csv"
    splits = resolve_splits(table, COLUMNS, 0.2, 0, group_by="signal")
    groups = load_table_groups(table, "signal", COLUMNS)
    val = {groups[it.id] for it in splits.validation.items}
    assert val and not val & {groups[it.id] for it in splits.train.items}
    assert len(splits.train) + len(splits.validation) == 128 and len(splits.validation) == 8 * len(val)
