"""Per-listener standardisation and screening (`mos train --listener-norm`): values by hand,
listener ids from the XACLE reader and generic tables, and real training runs on the demo set."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mos.cli import app
from mos.data.listeners import standardise_listeners
from mos.data.manifest import Item, Manifest, Target
from mos.data.table import load_table, parse_column_spec
from mos.data.xacle import load_xacle, load_xacle_listener_csv
from mos.errors import ManifestError, MosError
from mos.trainer.config import TrainConfig
from mos.trainer.listener_norm import listener_norm_active

from fixtures_train import quiet, read_csv, tiny_demo

SPEC = "path=path,target:mos=mos,ratings:mos=r,listeners:mos=who,range:mos=0:10"


def _table(root: Path, clips: list[list[tuple[str, float]]]) -> Path:
    """root/t.csv: one row per clip (c0.wav, c1.wav, ...), its listeners' ratings as JSON lists;
    `mos` = the plain mean of the clip's ratings. The audio need not exist (check_audio=False)."""
    rows = [["path", "mos", "r", "who"]]
    for k, clip in enumerate(clips):
        ratings = [r for _, r in clip]
        rows.append([f"c{k}.wav", f"{sum(ratings) / len(ratings):g}", json.dumps(ratings),
                     json.dumps([who for who, _ in clip])])
    table = root / "t.csv"
    with table.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    return table


def _means(m: Manifest) -> list[float]:
    return [it.targets["mos"] for it in m.items]


# -- by hand ---------------------------------------------------------------------------------------


def test_z_scores_mapped_back_by_hand(tmp_path: Path) -> None:
    # A rates 2, 4, 6 and B 5, 6, 7 on clips 0-2; C rates only clip 3 (5): one rating, kept unscaled.
    clips = [[("A", 2), ("B", 5)], [("A", 4), ("B", 6)], [("A", 6), ("B", 7)], [("C", 5)]]
    m = load_table(_table(tmp_path, clips), parse_column_spec(SPEC), check_audio=False)
    assert m.items[0].listeners == {"mos": ("A", "B")} and m.has_listeners()
    cleaned, report = standardise_listeners(m, threshold=0.2)
    # Pooled over all 7 ratings: mean 35/7 = 5; squared deviations 9+1+1+0+1+4+0 = 16, std 4/sqrt(7).
    # A: mean 4, std sqrt(8/3); z = -sqrt(3/2), 0, +sqrt(3/2). B: mean 6, std sqrt(2/3); the same z.
    # Back on the scale: 5 + (4/sqrt(7)) * z = 5 -+ 4*sqrt(3/14) = 5 -+ 1.851640; C: 5 + std*(5-5)/std = 5.
    step = 4 * math.sqrt(3 / 14)
    assert step == pytest.approx(1.851640, abs=1e-6)
    assert _means(cleaned) == pytest.approx([5 - step, 5.0, 5 + step, 5.0], abs=1e-9)
    assert cleaned.items[0].ratings["mos"] == pytest.approx((5 - step, 5 - step), abs=1e-9)
    # Original means 3.5, 5, 6.5, 5: clips 0 and 2 move by |3.148360 - 3.5| = 0.351640, so the mean
    # absolute change over the 4 clips is 2 * 0.351640 / 4 = 0.175820.
    (t,) = report.targets
    assert (t.listeners, t.scaled, t.clips, t.clips_changed, t.clips_all_dropped) == (3, 2, 4, 2, 0)
    assert t.mean_abs_change == pytest.approx(0.175820, abs=1e-6)
    assert (t.pooled_mean, t.pooled_std) == pytest.approx((5.0, 4 / math.sqrt(7)), abs=1e-6)
    # A and B are screened over their 3 shared clips: their standardised ratings agree (r = 1); C
    # shares no clip and is not screened.
    assert t.screened == 2 and t.dropped == []


def test_mapping_back_is_clipped_to_the_range_by_hand() -> None:
    # A rates 0 and 10; B rates 0 and 0 (no spread: unscaled). Pooled: mean 10/4 = 2.5, squared
    # deviations 6.25*3 + 56.25 = 75, std sqrt(75/4) = 4.330127. A's z = -1, +1 -> 2.5 -+ 4.330127:
    # -1.830127 is clipped to 0, the other is 6.830127. B keeps 0 and 0.
    items = [Item(f"c{k}", Path(f"c{k}.wav"), targets={"mos": [0.0, 5.0][k]}, ratings={"mos": (a, 0.0)},
                  listeners={"mos": ("A", "B")}) for k, a in enumerate((0.0, 10.0))]
    cleaned, report = standardise_listeners(Manifest(items, [Target("mos", 0, 10)], "x"))
    assert cleaned.items[0].ratings["mos"] == (0.0, 0.0)
    assert _means(cleaned) == pytest.approx([0.0, (2.5 + math.sqrt(75 / 4)) / 2], abs=1e-9)  # 3.415064
    assert report.targets[0].scaled == 1 and report.targets[0].screened == 0  # 2 clips: too few to screen


def test_a_reversed_listener_is_dropped_and_named_by_hand(tmp_path: Path) -> None:
    # Clips 0-3: A 2,4,6,8; B 3,5,7,9; D 1,3,5,7 (the same z-scores, -3,-1,1,3 / sqrt(5)) and C
    # reversed, 8,6,4,2; clip 4 is rated by C alone (5).
    A, B, D, C = [2, 4, 6, 8], [3, 5, 7, 9], [1, 3, 5, 7], [8, 6, 4, 2]
    clips = [[("A", A[k]), ("B", B[k]), ("D", D[k]), ("C", C[k])] for k in range(4)] + [[("C", 5)]]
    m = load_table(_table(tmp_path, clips), parse_column_spec(SPEC), check_audio=False)
    cleaned, report = standardise_listeners(m, threshold=0.2)
    # C: mean 25/5 = 5, std 2: z on clips 0-3 = 1.5, 0.5, -0.5, -1.5, i.e. minus A's order. For A the
    # other listeners' mean z is (2z - z_C)/3, proportional to z: r = +1 (B, D alike); for C it is
    # z itself: r = -1 < 0.2, so C is dropped, over its 4 clips shared with others.
    (t,) = report.targets
    assert [(d.id, d.clips) for d in report.dropped] == [("C", 4)]
    assert report.dropped[0].correlation == pytest.approx(-1.0, abs=1e-9)
    assert (t.listeners, t.screened, t.clips_all_dropped) == (4, 4, 1)
    assert "C (r=-1.00, 4 clips)" in report.line() and "1 of 4 screened dropped" in report.line()
    # Pooled over the 17 ratings: sum 20+24+16+20+5 = 85, mean 5; squared deviations 20+24+24+20+0 = 88,
    # std sqrt(88/17). A kept rating on the scale: 5 + sqrt(88/17) * (-3,-1,1,3)/sqrt(5), i.e. steps
    # of sqrt(88/85) = 1.017494 (and 3x that, 3.052482); A, B and D agree, so each clip's mean is that.
    unit = math.sqrt(88 / 85)
    assert unit == pytest.approx(1.017494, abs=1e-6)
    expected = [5 - 3 * unit, 5 - unit, 5 + unit, 5 + 3 * unit, 5.0]  # 1.947518, 3.982506, 6.017494, 8.052482
    assert _means(cleaned) == pytest.approx(expected, abs=1e-9)
    assert cleaned.items[0].listeners == {"mos": ("A", "B", "D")} and len(cleaned.items[0].ratings["mos"]) == 3
    # Clip 4 (all its listeners dropped) keeps its mean and ratings as they were.
    assert cleaned.items[4] == m.items[4]
    # Original means 3.5, 4.5, 5.5, 6.5, 5: changes 1.552482, 0.517494, 0.517494, 1.552482, 0;
    # their mean over the 5 clips: 4.139952 / 5 = 0.827990.
    assert (t.clips, t.clips_changed) == (5, 4)
    assert t.mean_abs_change == pytest.approx(0.827990, abs=1e-6)
    # A threshold of -1.5 keeps everyone (no correlation lies below it).
    assert standardise_listeners(m, threshold=-1.5)[1].dropped == []


# -- listener ids from the readers -------------------------------------------------------------------


def _xacle(root: Path, per_listener: list[list[str]]) -> Path:
    meta = root / "XACLE_dataset" / "meta_data"
    meta.mkdir(parents=True)
    (meta / "train_average.csv").write_text("wav_file_name,text,average_score\n00001.wav,a dog,7.5\n00002.wav,rain,2\n")
    with (meta / "train.csv").open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(per_listener)
    return root


def test_the_xacle_reader_picks_up_the_listener_column(tmp_path: Path) -> None:
    rows = [["wav_file_name", "text", "score", "rater", "listener_id"],  # listener_id comes first in the list
            ["00001.wav", "a dog", "7", "r1", "L1"], ["00001.wav", "a dog", "8", "r2", "L2"], ["00002.wav", "rain", "2", "r1", "L1"]]
    m = load_xacle(_xacle(tmp_path / "a", rows), "train", check_audio=False)
    assert m.items[0].ratings == {"score": (7.0, 8.0)} and m.items[0].listeners == {"score": ("L1", "L2")}
    assert m.items[1].listeners == {"score": ("L1",)} and m.has_listeners()
    plain = load_xacle(_xacle(tmp_path / "b", [[c for c in r[:3]] for r in rows]), "train", check_audio=False)
    assert plain.items[0].ratings == {"score": (7.0, 8.0)} and not plain.has_listeners()
    rows[2][4] = " "
    with pytest.raises(ManifestError) as err:
        load_xacle(_xacle(tmp_path / "c", rows), "train", check_audio=False)
    assert str(err.value).endswith("train.csv:3: empty listener_id")


def test_table_listeners_spec_and_its_errors(tmp_path: Path) -> None:
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text('{"path": "a.wav", "mos": 3, "r": [3, 4], "who": ["x", 7]}\n'
                     '{"path": "b.wav", "mos": 2, "r": [2]}\n')
    m = load_table(jsonl, parse_column_spec(SPEC), check_audio=False)
    assert m.items[0].listeners == {"mos": ("x", "7")}  # numeric ids become text
    assert m.items[1].ratings == {"mos": (2.0,)} and m.items[1].listeners == {}  # no ids for this clip
    jsonl.write_text('{"path": "a.wav", "mos": 3, "r": [3, 4], "who": ["x"]}\n')
    with pytest.raises(ManifestError) as err:
        load_table(jsonl, parse_column_spec(SPEC), check_audio=False)
    assert str(err.value) == f"{jsonl}:1: who has 1 listener ids but r has 2 ratings (they must pair up)"
    table = tmp_path / "t.csv"
    table.write_text('path,mos,r,who\nc0.wav,3.5,"[2, 5]","[""A"", ""B""]"\nc1.wav,3.5,"[2, 5]","[""A""]"\n')
    with pytest.raises(ManifestError, match=r"t\.csv:3: who has 1 listener ids but r has 2 ratings"):
        load_table(table, parse_column_spec(SPEC), check_audio=False)
    with pytest.raises(ManifestError, match="listeners given for 'mos', which has no ratings:mos column"):
        parse_column_spec("path=path,target:mos=mos,listeners:mos=who")
    with pytest.raises(ManifestError, match="is not a JSON list of listener ids"):
        table.write_text('path,mos,r,who\nc0.wav,3,"[3]",L1\n')
        load_table(table, parse_column_spec(SPEC), check_audio=False)


# -- training ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny demo tree (32 train, 12 validation clips) with listener L03's ratings reversed
    (10 - r) in the per-listener files: a listener who disagrees with the others. The official
    means (`*_average.csv`) stay as they are."""
    tree = tiny_demo(tmp_path_factory.mktemp("tiny")) / "XACLE_dataset"
    for split in ("train", "validation"):
        per = tree / "meta_data" / f"{split}.csv"
        rows = read_csv(per)
        assert sum(r["listener"] == "L03" for r in rows) >= 3
        for r in rows:
            if r["listener"] == "L03":
                r["score"] = f"{10 - float(r['score']):.1f}"
        with per.open("w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
    return tree


def _rekey(per: Path, column: str) -> None:
    """Rename a per-listener file's `wav_file_name` column, the rest of the file as it is."""
    header, rest = per.read_text(encoding="utf-8").split("\n", 1)
    assert header.split(",")[0] == "wav_file_name"
    per.write_text(header.replace("wav_file_name", column, 1) + "\n" + rest, encoding="utf-8")


def test_per_listener_lists_keyed_wav_load_like_those_keyed_wav_file_name(demo: Path, tmp_path: Path) -> None:
    """The XACLE baseline names its per-listener lists' clip column `wav`: a tree whose
    meta_data/{split}.csv does so loads the same ratings and listeners, and screens the same."""
    keyed = shutil.copytree(demo, tmp_path / "XACLE_dataset")
    for split in ("train", "validation"):
        _rekey(keyed / "meta_data" / f"{split}.csv", "wav")
    assert (keyed / "meta_data" / "train.csv").read_text(encoding="utf-8").startswith("wav,text,score,listener\n")
    for split in ("train", "validation"):
        want, got = load_xacle(demo, split), load_xacle(keyed, split)
        assert want.has_listeners() and all(it.listeners for it in want.items)
        assert ([(it.id, it.targets, it.ratings, it.listeners) for it in got.items]
                == [(it.id, it.targets, it.ratings, it.listeners) for it in want.items])
        assert standardise_listeners(got)[1].dropped == standardise_listeners(want)[1].dropped
    assert "L03" in {d.id for d in standardise_listeners(load_xacle(keyed, "train"))[1].dropped}
    # The per-listener file alone, as `mos eval` reads validation.csv.
    alone, want = (load_xacle_listener_csv(root / "meta_data" / "validation.csv") for root in (keyed, demo))
    assert [(it.id, it.ratings, it.listeners) for it in alone.items] == [(it.id, it.ratings, it.listeners)
                                                                          for it in want.items]
    _rekey(shutil.copytree(demo, tmp_path / "other" / "XACLE_dataset") / "meta_data" / "train.csv", "clip")
    with pytest.raises(ManifestError) as err:
        load_xacle(tmp_path / "other", "train")
    assert str(err.value).endswith("train.csv:1: missing column 'wav_file_name' (or 'wav') "
                                   "(header: clip, text, score, listener)")


def test_per_listener_names_match_with_or_without_a_leading_slash(demo: Path, tmp_path: Path) -> None:
    """The XACLE baseline's lists write clips as `/audiocaps/...`: a per-listener file whose
    names carry a leading `/` the average file's lack gives the same listeners; one whose clips
    are all elsewhere is refused in one line, not silently ignored."""
    slashed = shutil.copytree(demo, tmp_path / "XACLE_dataset")
    per = slashed / "meta_data" / "train.csv"
    header, *rows = per.read_text(encoding="utf-8").splitlines()
    per.write_text("\n".join([header, *("/" + r for r in rows)]) + "\n", encoding="utf-8")
    want, got = load_xacle(demo, "train"), load_xacle(slashed, "train")
    assert want.has_listeners() and all(it.listeners for it in want.items)
    assert ([(it.id, it.ratings, it.listeners) for it in got.items]
            == [(it.id, it.ratings, it.listeners) for it in want.items])
    per.write_text("\n".join([header, *("elsewhere/" + r for r in rows)]) + "\n", encoding="utf-8")
    with pytest.raises(ManifestError) as err:
        load_xacle(slashed, "train")
    assert "train.csv: none of its clips is in" in str(err.value) and "\n" not in str(err.value)


def _train(demo: Path, runs: Path, name: str, *extra: str):
    return CliRunner().invoke(app, ["train", str(demo), "--epochs", "1", "--text-encoder", "none", "--batch-size", "8",
                                    "--runs-dir", str(runs), "--name", name, *extra])


@pytest.mark.slow
def test_train_with_listener_norm_on_cleans_only_the_training_clips(demo: Path, tmp_path: Path) -> None:
    on = _train(demo, tmp_path, "on", "--listener-norm", "on")
    assert on.exit_code == 0, on.output
    lines = [line for line in on.output.splitlines() if line.startswith("listener norm")]
    assert len(lines) == 1 and "threshold 0.2" in lines[0] and "dropped: L03 (r=-" in lines[0], on.output
    report = json.loads((tmp_path / "on" / "listeners.json").read_text())
    (score,) = report["targets"]
    assert score["target"] == "score" and [d["id"] for d in score["dropped"]] == ["L03"]
    assert score["dropped"][0]["correlation"] < 0 and score["clips"] == 32 and score["clips_changed"] > 0
    assert "train.csv" in report["source"] and "training clips only" in report["applied_to"]

    off = _train(demo, tmp_path, "off")
    assert off.exit_code == 0, off.output
    assert "listener norm" not in off.output and not (tmp_path / "off" / "listeners.json").exists()
    # Validation truth: the official means in both runs.
    truth = {r["wav_file_name"]: float(r["average_score"]) for r in read_csv(demo / "meta_data" / "validation_average.csv")}
    for run in ("on", "off"):
        rows = read_csv(tmp_path / run / "val_predictions.csv")
        assert {r["id"]: float(r["true_score"]) for r in rows} == pytest.approx(truth, abs=5e-5)
    # The model's target statistics come from the cleaned training means.
    from mos.data.detect import open_dataset

    cleaned, _ = standardise_listeners(open_dataset(demo, None)["train"], 0.2)
    model = json.loads((tmp_path / "on" / "config.json").read_text())["model"]
    stats = {t["name"]: t for t in model["targets"]}
    assert stats["score"]["mean"] == pytest.approx(float(np.mean(_means_of(cleaned, "score"))), abs=1e-6)
    plain = json.loads((tmp_path / "off" / "config.json").read_text())["model"]
    assert {t["name"]: t for t in plain["targets"]}["score"]["mean"] != pytest.approx(stats["score"]["mean"], abs=1e-6)
    assert stats["quality"] == {t["name"]: t for t in plain["targets"]}["quality"]  # no listener ids: as it was

    # --resume keeps the run's own setting.
    again = _train(demo, tmp_path, "on", "--resume", "--listener-norm", "off")
    assert again.exit_code == 2 and "--listener-norm is on, not off" in again.output


def _means_of(m: Manifest, name: str) -> list[float]:
    return [it.targets[name] for it in m.items]


@pytest.mark.slow
def test_cross_validation_cleans_each_fold(demo: Path, tmp_path: Path) -> None:
    result = _train(demo, tmp_path, "cv", "--listener-norm", "auto", "--folds", "2")
    assert result.exit_code == 0, result.output
    for k in (1, 2):
        fold = tmp_path / "cv" / "folds" / f"fold{k}"
        report = json.loads((fold / "listeners.json").read_text())
        # Each fold's own training clips (not its inner validation or held-out clips) are cleaned.
        # (Whether L03 is dropped depends on the fold: z-scoring removes its offset, and over a few
        # clips of similar truth its order is noise.)
        assert report["targets"][0]["clips"] == json.loads((fold / "heldout.json").read_text())["n_train"]
        assert f"fold {k}/2: listener norm" in result.output and "listener norm (threshold" in (fold / "train.log").read_text()


def test_on_without_listener_ids_is_a_one_line_error(demo: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    shutil.copytree(demo, plain)
    per = plain / "meta_data" / "train.csv"
    rows = read_csv(per)
    with per.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["wav_file_name", "text", "score"])
        w.writerows([r["wav_file_name"], r["text"], r["score"]] for r in rows)
    result = _train(plain, tmp_path / "runs", "x", "--listener-norm", "on")
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert lines[0].startswith("error: ") and "train_average.csv" in lines[0] and "train.csv" in lines[0]
    assert "no listener column" in lines[0] and "listener, listener_id, rater, rater_id, worker_id" in lines[0]
    assert not (tmp_path / "runs" / "x").exists()
    # auto: a one-line note, then training goes on with the official means.
    console, out = quiet()
    from mos.data.detect import open_dataset

    train = open_dataset(plain, None)["train"]
    assert not listener_norm_active(TrainConfig(listener_norm="auto"), train, console)
    assert out.getvalue().strip() == f"listener norm: skipped (auto: {train.source} has no listener ids)"
    assert not listener_norm_active(TrainConfig(listener_norm="off"), train, console)
    with pytest.raises(MosError, match="--listener-norm on needs listener ids"):
        listener_norm_active(TrainConfig(listener_norm="on"), train, console)


def test_config_checks() -> None:
    for bad, message in ((dict(listener_norm="yes"), "--listener-norm yes: expected off or on or auto"),
                         (dict(listener_threshold=1.5), "--listener-threshold 1.5: a correlation")):
        with pytest.raises(MosError, match=message):
            TrainConfig(**bad).check()
    TrainConfig(listener_norm="auto", listener_threshold=-1).check()
