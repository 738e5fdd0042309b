"""Tests for mos.evaluate on real prediction and rating files written to tmp_path."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from mos.errors import MosError
from fixtures_mushra import COLUMNS as MUSHRA_COLUMNS
from fixtures_mushra import REAL_MUSHRA, needs_real_mushra, read_table, tiny_mushra  # noqa: F401
from mos.data.keys import clip_key
from mos.data.table import parse_column_spec
from mos.evaluate import evaluate_files, evaluate_summary, format_report, read_predictions, run_eval
from mos.metrics import Metrics, compute_metrics, evaluate_levels, system_level

XACLE_TRUTH = {  # wav_file_name -> average_score
    "00000.wav": 8.0,
    "00001.wav": 7.5,
    "00002.wav": 7.5,
    "00003.wav": 9.25,
    "00004.wav": 2.0,
    "00005.wav": 7.75,
}
XACLE_PRED = {
    "00000.wav": 6.5,
    "00001.wav": 7.0,
    "00002.wav": 5.25,
    "00003.wav": 8.0,
    "00004.wav": 3.5,
    "00005.wav": 7.0,
}

MUSIC_TRUTH = {  # wav id -> (overall, textual)
    "audiomos2025-track1-S001_P001.wav": (3.2, 3.5),
    "audiomos2025-track1-S001_P002.wav": (2.8, 3.0),
    "audiomos2025-track1-S002_P001.wav": (4.1, 3.9),
    "audiomos2025-track1-S002_P002.wav": (3.9, 4.4),
    "audiomos2025-track1-S003_P001.wav": (1.7, 2.1),
    "audiomos2025-track1-S003_P002.wav": (2.4, 2.0),
    "audiomos2025-track1-S004_P001.wav": (3.0, 2.9),
}
MUSIC_PRED = {
    "audiomos2025-track1-S001_P001": (3.0, 3.1),
    "audiomos2025-track1-S001_P002": (3.1, 3.4),
    "audiomos2025-track1-S002_P001": (3.8, 4.0),
    "audiomos2025-track1-S002_P002": (3.6, 3.7),
    "audiomos2025-track1-S003_P001": (2.2, 2.5),
    "audiomos2025-track1-S003_P002": (2.0, 2.6),
    "audiomos2025-track1-S004_P001": (3.3, 2.8),
}


def _write_xacle_truth(path: Path, truth: dict[str, float] = XACLE_TRUTH) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["wav_file_name", "text", "average_score"])
        for name, score in truth.items():
            w.writerow([name, f"a sound, with a comma ({name})", score])
    return path


def _write_music_truth(path: Path) -> Path:
    path.write_text("".join(f"{name},{o},{t}\n" for name, (o, t) in MUSIC_TRUTH.items()), encoding="utf-8")
    return path


def test_clip_key() -> None:
    assert clip_key("x") == clip_key("x.wav") == clip_key("./x.WAV") == "x"
    assert clip_key("dir/sub/x.wav") == clip_key("dir\\sub\\x.wav") == clip_key(" dir//sub/./x.wav") == "dir/sub/x"
    assert clip_key("a.flac") == "a" and clip_key("a.mp3") == "a" and clip_key("notes.json") == "notes.json"


def test_read_score_csv_skips_failed_rows(tmp_path: Path) -> None:
    pred = tmp_path / "scores.csv"
    pred.write_text(
        "id,path,caption,score,duration,status,error\n"
        "wav/00000.wav,/data/wav/00000.wav,\"rain, thunder\",6.5,10.0,ok,\n"
        "wav/00001.wav,/data/wav/00001.wav,a motorcycle,,0.0,error,cannot decode\n"
        "00002,/data/00002.wav,,5.25,10.0,ok,\n",
        encoding="utf-8",
    )
    preds = read_predictions(pred)
    assert preds.by_key() == {"wav/00000": {"score": 6.5}, "00002": {"score": 5.25}}
    assert [r.path for r in preds.rows] == ["/data/wav/00000.wav", "/data/00002.wav"]


def test_read_trainer_prediction_file(tmp_path: Path) -> None:
    """Contract 4: `id,<target>...,true_<target>...` then system/group/fold are not targets."""
    pred = tmp_path / "oof_predictions.csv"
    pred.write_text(
        "id,overall,textual,true_overall,true_textual,system,group,fold\n"
        "a/x.wav,3.5,2.0,3.0,2.5,S001,P001,0\n"
        "b/x.wav,1.5,4.0,2.0,4.5,S002,P001,1\n",
        encoding="utf-8",
    )
    preds = read_predictions(pred)
    assert preds.targets == ["overall", "textual"]
    assert preds.by_key() == {"a/x": {"overall": 3.5, "textual": 2.0}, "b/x": {"overall": 1.5, "textual": 4.0}}


def test_read_xacle_answer_and_audiomos_answer(tmp_path: Path) -> None:
    xacle = tmp_path / "inference.csv"
    xacle.write_text("wav_file_name,pred_score\n00000.wav,6.5\n00001.wav,7\n", encoding="utf-8")
    assert read_predictions(xacle).by_key() == {"00000": {"score": 6.5}, "00001": {"score": 7.0}}
    answer = tmp_path / "answer.txt"
    answer.write_text("sysA_P1,3.25,4.0\n\nsysA_P2,1.5,2.0\n", encoding="utf-8")
    assert read_predictions(answer).by_key() == {
        "sysA_P1": {"overall": 3.25, "textual": 4.0},
        "sysA_P2": {"overall": 1.5, "textual": 2.0},
    }


def test_read_predictions_errors(tmp_path: Path) -> None:
    twice = tmp_path / "twice.csv"
    twice.write_text("wav_file_name,pred_score\nx.wav,1\nx,2\n", encoding="utf-8")
    with pytest.raises(MosError, match=r"twice\.csv: line 3: .*both name clip 'x'"):
        read_predictions(twice)
    twice.write_text("wav_file_name,pred_score\na/x.wav,1\na/x.wav,2\n", encoding="utf-8")
    with pytest.raises(MosError, match=r"twice\.csv: line 3: duplicate id 'a/x.wav' \(first on line 2\)"):
        read_predictions(twice)
    two_folders = tmp_path / "folders.csv"  # the same name in two folders: two clips
    two_folders.write_text("wav_file_name,pred_score\na/x.wav,1\nb/x.wav,2\n", encoding="utf-8")
    assert read_predictions(two_folders).by_key() == {"a/x": {"score": 1.0}, "b/x": {"score": 2.0}}
    unknown = tmp_path / "weird.csv"
    unknown.write_text("foo,bar\n1,2\n", encoding="utf-8")
    with pytest.raises(MosError, match=r"weird\.csv: unknown prediction format"):
        read_predictions(unknown)
    bad = tmp_path / "bad.txt"
    bad.write_text("x,3.0,4.0\ny,3.0,oops\n", encoding="utf-8")
    with pytest.raises(MosError, match=r"bad\.txt: line 2: textual 'oops' is not a number"):
        read_predictions(bad)
    with pytest.raises(MosError, match="not found"):
        read_predictions(tmp_path / "missing.csv")


def test_xacle_answer_csv(tmp_path: Path) -> None:
    truth = _write_xacle_truth(tmp_path / "validation_average.csv")
    pred = tmp_path / "inference.csv"
    rows = list(XACLE_PRED.items())[::-1] + [("99999.wav", 1.0)]  # order differs, one unknown clip
    pred.write_text("wav_file_name,pred_score\n" + "".join(f"{k},{v}\n" for k, v in rows), encoding="utf-8")
    results = evaluate_files(pred, truth)
    assert list(results) == ["score"]
    assert list(results["score"]) == ["utterance"]
    names = list(XACLE_TRUTH)
    expected = compute_metrics([XACLE_PRED[n] for n in names], [XACLE_TRUTH[n] for n in names])
    assert results["score"]["utterance"] == expected
    assert expected.n == 6


def test_xacle_score_csv_pairs_differently_named_target(tmp_path: Path) -> None:
    truth = _write_xacle_truth(tmp_path / "validation_average.csv")
    pred = tmp_path / "scores.csv"
    with pred.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "path", "caption", "mos", "duration", "status", "error"])
        for name, value in XACLE_PRED.items():
            w.writerow([f"validation/{name}", f"/x/validation/{name}", "cap", value, 10.0, "ok", ""])
        w.writerow(["validation/broken.wav", "/x/broken.wav", "cap", "", 0.0, "error", "bad header"])
    results = evaluate_files(pred, truth)
    names = list(XACLE_TRUTH)
    assert results["score"]["utterance"] == compute_metrics(
        [XACLE_PRED[n] for n in names], [XACLE_TRUTH[n] for n in names]
    )


def test_missing_prediction_is_an_error(tmp_path: Path) -> None:
    truth = _write_xacle_truth(tmp_path / "validation_average.csv")
    pred = tmp_path / "partial.csv"
    pred.write_text(
        "wav_file_name,pred_score\n"
        + "".join(f"{k},{v}\n" for k, v in XACLE_PRED.items() if k not in ("00003.wav", "00005.wav")),
        encoding="utf-8",
    )
    with pytest.raises(MosError) as err:
        evaluate_files(pred, truth)
    assert str(err.value) == f"{pred}: no prediction for 2 of 6 clips, e.g. 00003.wav"


def test_musiceval_answer_with_system_level(tmp_path: Path) -> None:
    truth = _write_music_truth(tmp_path / "dev_mos_list.txt")
    pred = tmp_path / "answer.txt"
    pred.write_text("".join(f"{k},{o},{t}\n" for k, (o, t) in MUSIC_PRED.items()), encoding="utf-8")
    results = evaluate_files(pred, truth)
    assert set(results) == {"overall", "textual"}
    names = list(MUSIC_TRUTH)
    systems = [n.split("-")[-1].split("_")[0] for n in names]
    for col, target in enumerate(("overall", "textual")):
        p = np.array([MUSIC_PRED[n[:-4]][col] for n in names])
        t = np.array([MUSIC_TRUTH[n][col] for n in names])
        assert results[target]["utterance"] == compute_metrics(p, t)
        assert set(results[target]) == {"utterance", "system"}
        sys_p, sys_t, sys_names = system_level(p, t, systems)
        assert sys_names == ["S001", "S002", "S003", "S004"]
        assert results[target]["system"] == compute_metrics(sys_p, sys_t)
        assert results[target]["system"].n == 4
    # S001 overall by hand: mean prediction (3.0 + 3.1) / 2, mean rating (3.2 + 2.8) / 2
    sys_p, sys_t, _ = system_level([3.0, 3.1], [3.2, 2.8], ["S001", "S001"])
    assert sys_p[0] == pytest.approx(3.05) and sys_t[0] == pytest.approx(3.0)


def test_format_report_lines() -> None:
    results = {
        "overall": {
            "utterance": Metrics(mse=0.407076, lcc=0.75205, srcc=0.760752, ktau=0.570974, n=10),
            "system": Metrics(mse=0.186899, lcc=0.878047, srcc=0.882266, ktau=0.704433, n=3),
        },
        "textual": {
            "utterance": Metrics(mse=0.507618, lcc=0.593813, srcc=0.581332, ktau=0.422476, n=10),
            "system": Metrics(mse=0.143016, lcc=0.783773, srcc=0.795567, ktau=0.596059, n=3),
        },
    }
    assert format_report(results).splitlines() == [
        "==========UTTERANCE===========",
        "======OVERALL QUALITY=======",
        "[UTTERANCE] Test error= 0.407076",
        "[UTTERANCE] Linear correlation coefficient= 0.752050",
        "[UTTERANCE] Spearman rank correlation coefficient= 0.760752",
        "[UTTERANCE] Kendall Tau rank correlation coefficient= 0.570974",
        "======TEXTUAL ALIGNMENT=======",
        "[UTTERANCE] Test error= 0.507618",
        "[UTTERANCE] Linear correlation coefficient= 0.593813",
        "[UTTERANCE] Spearman rank correlation coefficient= 0.581332",
        "[UTTERANCE] Kendall Tau rank correlation coefficient= 0.422476",
        "==========SYSTEM===========",
        "======OVERALL QUALITY=======",
        "[SYSTEM] Test error= 0.186899",
        "[SYSTEM] Linear correlation coefficient= 0.878047",
        "[SYSTEM] Spearman rank correlation coefficient= 0.882266",
        "[SYSTEM] Kendall Tau rank correlation coefficient= 0.704433",
        "======TEXTUAL ALIGNMENT=======",
        "[SYSTEM] Test error= 0.143016",
        "[SYSTEM] Linear correlation coefficient= 0.783773",
        "[SYSTEM] Spearman rank correlation coefficient= 0.795567",
        "[SYSTEM] Kendall Tau rank correlation coefficient= 0.596059",
    ]
    xacle_only = {"score": {"utterance": results["overall"]["utterance"]}}
    assert "SYSTEM" not in format_report(xacle_only)
    assert format_report(xacle_only).splitlines()[1] == "======SCORE======="


def test_run_eval_writes_json(tmp_path: Path) -> None:
    truth = _write_xacle_truth(tmp_path / "validation_average.csv")
    pred = tmp_path / "inference.csv"
    pred.write_text(
        "wav_file_name,pred_score\n" + "".join(f"{k},{v}\n" for k, v in XACLE_PRED.items()) + "extra.wav,1\n",
        encoding="utf-8",
    )
    out = tmp_path / "out" / "metrics.json"
    report = run_eval(pred, truth, json_out=out)
    metrics = evaluate_files(pred, truth)["score"]["utterance"]
    assert report.splitlines()[:6] == [
        "==========UTTERANCE===========",
        "======SCORE=======",
        f"[UTTERANCE] Test error= {metrics.mse:f}",
        f"[UTTERANCE] Linear correlation coefficient= {metrics.lcc:f}",
        f"[UTTERANCE] Spearman rank correlation coefficient= {metrics.srcc:f}",
        f"[UTTERANCE] Kendall Tau rank correlation coefficient= {metrics.ktau:f}",
    ]
    assert "ignored 1 prediction" in report
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert doc["results"]["score"]["utterance"] == metrics.as_dict()
    assert doc["ignored_predictions"] == 1
    assert doc["clips"] == 6


# --- joining on paths: the MUSHRA layout (ref.wav etc. in every stim_XX folder) -----------------


def _mushra_predictions(table: Path, out: Path) -> tuple[dict[str, Path], dict[str, dict[str, Metrics]]]:
    """Prediction files for every clip of a MUSHRA-layout table, as a user gets them, and the
    metrics they must give: `mos score audio/` (ids relative to audio/ plus a path column), the
    trainer's val_predictions.csv (ids as the table writes them), and bare file names."""
    rows = read_table(table)
    rng = np.random.default_rng(3)
    pred = {r["path"]: float(r["mean_score"]) + float(rng.normal(0, 12)) for r in rows}
    out.mkdir(parents=True, exist_ok=True)
    files = {name: out / f"{name}.csv" for name in ("scored_folder", "val_predictions", "bare_names")}
    with files["scored_folder"].open("w", encoding="utf-8") as f:
        f.write("id,path,caption,mushra,duration,status,error\n")
        for r in rows:
            f.write(f"{r['path'][len('audio/'):]},{table.parent / r['path']},,{pred[r['path']]:.6f},0.300,ok,\n")
    with files["val_predictions"].open("w", encoding="utf-8") as f:
        f.write("id,mushra,true_mushra,system\n")
        for r in reversed(rows):
            f.write(f"{r['path']},{pred[r['path']]:.6f},{r['mean_score']},{r['system']}\n")
    with files["bare_names"].open("w", encoding="utf-8") as f:
        f.write("wav_file_name,pred_score\n")
        for name in sorted({r["path"].rsplit("/", 1)[1] for r in rows}):
            f.write(f"{name},50\n")
    p = np.array([round(pred[r["path"]], 6) for r in rows])
    t = np.array([float(r["mean_score"]) for r in rows])
    return files, {"mushra": evaluate_levels(p, t, [r["system"] for r in rows])}


def _check_mushra_join(table: Path, out: Path, clips: int, systems: int) -> None:
    files, expected = _mushra_predictions(table, out)
    columns = parse_column_spec(MUSHRA_COLUMNS)
    for name, how in (("scored_folder", "path suffix"), ("val_predictions", "id")):
        summary = evaluate_summary(files[name], table, columns)
        assert summary.joined == {how: clips} and summary.ignored == 0, name
        assert summary.results["mushra"]["utterance"].as_dict() == pytest.approx(expected["mushra"]["utterance"].as_dict())
        assert summary.results["mushra"]["system"].as_dict() == pytest.approx(expected["mushra"]["system"].as_dict())
        assert summary.results["mushra"]["system"].n == systems
        assert summary.system_truth == {"from": "mean rating of each system's clips", "file": str(table)}
    with pytest.raises(MosError, match=r"no unambiguous prediction, e\.g\. 'audio/stim_01/.*\.wav'.*fit the one prediction"):
        evaluate_summary(files["bare_names"], table, columns)


def test_eval_joins_a_mushra_layout_table_on_relative_paths(tiny_mushra: Path) -> None:
    _check_mushra_join(tiny_mushra, tiny_mushra.parent / "pred", clips=12, systems=3)


@needs_real_mushra
def test_eval_joins_the_real_mushra_table_on_relative_paths(tmp_path: Path) -> None:
    assert REAL_MUSHRA is not None
    _check_mushra_join(REAL_MUSHRA / "ratings.csv", tmp_path, clips=128, systems=8)


def test_eval_cli_reads_a_generic_table_with_columns(tiny_mushra: Path) -> None:
    from typer.testing import CliRunner

    from mos.cli import app

    files, expected = _mushra_predictions(tiny_mushra, tiny_mushra.parent / "pred")
    out = tiny_mushra.parent / "eval.json"
    result = CliRunner().invoke(app, ["eval", str(files["val_predictions"]), str(tiny_mushra),
                                      "--columns", MUSHRA_COLUMNS, "--json", str(out)])
    assert result.exit_code == 0, result.output
    m = expected["mushra"]["system"]
    assert f"[SYSTEM] Spearman rank correlation coefficient= {m.srcc:f}" in result.output
    assert "mean rating of its clips" in result.output
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert doc["results"]["mushra"]["system"]["n"] == 3 and doc["joined"] == {"id": 12}
    result = CliRunner().invoke(app, ["eval", str(files["val_predictions"]), str(tiny_mushra)])
    assert result.exit_code == 2 and "column mapping (--columns)" in result.output


def test_eval_joins_on_the_audio_path_when_ids_differ(tmp_path: Path) -> None:
    """A table with its own id column: `mos score` rows (ids relative to the folder scored) join
    on their path column, the rated file itself."""
    table = tmp_path / "data" / "ratings.csv"
    table.parent.mkdir()
    table.write_text("clip,file,mos\nc1,wav/a/x.wav,1.5\nc2,wav/b/x.wav,4.0\nc3,wav/b/y.wav,3.0\n", encoding="utf-8")
    scores = tmp_path / "scores.csv"
    scores.write_text(
        "id,path,caption,mos,duration,status,error\n"
        + "".join(f"{rel},{table.parent / 'wav' / rel},,{v},1.0,ok,\n" for rel, v in
                  (("a/x.wav", 2.0), ("b/x.wav", 3.5), ("b/y.wav", 2.5))),
        encoding="utf-8",
    )
    summary = evaluate_summary(scores, table, parse_column_spec("id=clip,path=file,target=mos"))
    assert summary.joined == {"path": 3}
    assert summary.results["mos"]["utterance"] == compute_metrics([2.0, 3.5, 2.5], [1.5, 4.0, 3.0])


# --- MusicEval system level: the tree's system_mos file, as the baseline's predict.py ----------


def _musiceval_dev(root: Path) -> tuple[Path, Path]:
    """root/sets/dev_mos_list.txt (MUSIC_TRUTH: 4 systems, up to 2 clips each) and an answer.txt."""
    (root / "sets").mkdir(parents=True)
    truth = _write_music_truth(root / "sets" / "dev_mos_list.txt")
    pred = root / "answer.txt"
    pred.write_text("".join(f"{k},{o},{t}\n" for k, (o, t) in MUSIC_PRED.items()), encoding="utf-8")
    return truth, pred


# System ratings over all of each system's rated clips (more than the list holds), so they differ
# from the mean of the listed clips.
SYSTEM_MOS = {"S001": (3.4, 3.1), "S002": (3.7, 4.3), "S003": (2.3, 2.2), "S004": (2.6, 3.0)}


def test_musiceval_system_level_truth_from_system_mos_file(tmp_path: Path) -> None:
    truth, pred = _musiceval_dev(tmp_path / "MusicEval-phase1")
    without = evaluate_summary(pred, truth)
    assert without.system_truth["from"] == "mean rating of each system's clips"
    system_mos = tmp_path / "MusicEval-phase1" / "system_mos" / "system_mos_phase1.csv"
    system_mos.parent.mkdir()
    system_mos.write_text("".join(f"{s},{o},{t}\n" for s, (o, t) in SYSTEM_MOS.items()), encoding="utf-8")
    out = tmp_path / "metrics.json"
    report = run_eval(pred, truth, out)
    summary = evaluate_summary(pred, truth)
    names = list(MUSIC_TRUTH)
    systems = [n.split("-")[-1].split("_")[0] for n in names]
    for col, target in enumerate(("overall", "textual")):
        p = np.array([MUSIC_PRED[n[:-4]][col] for n in names])
        t = np.array([MUSIC_TRUTH[n][col] for n in names])
        sys_p, _, sys_names = system_level(p, t, systems)
        expected = compute_metrics(sys_p, [SYSTEM_MOS[s][col] for s in sys_names])
        assert summary.results[target]["system"] == expected
        assert summary.results[target]["utterance"] == without.results[target]["utterance"]
        assert summary.results[target]["system"] != without.results[target]["system"]
        assert f"[SYSTEM] Test error= {expected.mse:f}" in report
    assert f"(system level: each system's true score from {system_mos})" in report
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert doc["system_truth"] == {"from": "file", "file": str(system_mos)}

    later = system_mos.with_name("system_mos_phase2.csv")  # a later phase's file wins
    later.write_text("sysID,overall,textual\n" + "".join(f"{s},{o},{t}\n" for s, (o, t) in SYSTEM_MOS.items()
                                                          if s != "S003"), encoding="utf-8")
    with pytest.raises(MosError, match=r"system_mos_phase2\.csv: no overall rating for system S003"):
        evaluate_summary(pred, truth)


def test_a_trainer_split_file_is_evaluated_on_its_own_clips(tiny_mushra: Path) -> None:
    """val_predictions.csv holds the held-out clips only: those are evaluated, and its true_*
    values must be the ratings' (else it was made from other ratings)."""
    rows = [r for r in read_table(tiny_mushra) if r["path"].split("/")[1] in ("stim_02", "stim_04")]
    pred = tiny_mushra.parent / "val_predictions.csv"
    values = [float(r["mean_score"]) + (7.0 if i % 2 else -4.0) * i for i, r in enumerate(rows)]
    pred.write_text("id,mushra,true_mushra\n" + "".join(
        f"{r['path']},{v:.4f},{float(r['mean_score']):.4f}\n" for r, v in zip(rows, values)), encoding="utf-8")
    columns = parse_column_spec(MUSHRA_COLUMNS)
    summary = evaluate_summary(pred, tiny_mushra, columns)
    assert (summary.clips, summary.rated, summary.joined) == (6, 12, {"id": 6})
    expected = evaluate_levels(values, [float(r["mean_score"]) for r in rows], [r["system"] for r in rows])
    assert summary.results["mushra"]["utterance"].as_dict() == pytest.approx(expected["utterance"].as_dict())
    assert summary.results["mushra"]["system"].as_dict() == pytest.approx(expected["system"].as_dict())
    assert "(evaluated the 6 of 12 rated clips" in run_eval(pred, tiny_mushra, columns=MUSHRA_COLUMNS)
    text = pred.read_text(encoding="utf-8").splitlines()
    name, value, _ = text[2].split(",")
    pred.write_text("\n".join([*text[:2], f"{name},{value},12.5", *text[3:]]) + "\n", encoding="utf-8")
    with pytest.raises(MosError, match=r"line 3: true_mushra 12\.5 of 'audio/stim_02/codec_a\.wav' is not the rating"):
        evaluate_summary(pred, tiny_mushra, columns)
    # a mos score file for part of the clips is still an error: challenge files must be complete
    scores = tiny_mushra.parent / "scores.csv"
    scores.write_text("id,mushra\n" + "".join(f"{r['path']},{v}\n" for r, v in zip(rows, values)), encoding="utf-8")
    with pytest.raises(MosError, match=r"no prediction for 6 of 12 clips, e\.g\. audio/stim_01/ref\.wav"):
        evaluate_summary(scores, tiny_mushra, columns)
