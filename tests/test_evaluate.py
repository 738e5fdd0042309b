"""Tests for mos.evaluate on real prediction and rating files written to tmp_path."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from mos.errors import MosError
from mos.evaluate import clip_key, evaluate_files, format_report, read_predictions, run_eval
from mos.metrics import Metrics, compute_metrics, system_level

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
    assert clip_key("x") == clip_key("x.wav") == clip_key("dir/sub/x.wav") == clip_key("dir\\x.WAV") == "x"
    assert clip_key("a.flac") == "a.flac"


def test_read_score_csv_skips_failed_rows(tmp_path: Path) -> None:
    pred = tmp_path / "scores.csv"
    pred.write_text(
        "id,path,caption,score,duration,status,error\n"
        "wav/00000.wav,/data/wav/00000.wav,\"rain, thunder\",6.5,10.0,ok,\n"
        "wav/00001.wav,/data/wav/00001.wav,a motorcycle,,0.0,error,cannot decode\n"
        "00002,/data/00002.wav,,5.25,10.0,ok,\n",
        encoding="utf-8",
    )
    assert read_predictions(pred) == {"00000": {"score": 6.5}, "00002": {"score": 5.25}}


def test_read_xacle_answer_and_audiomos_answer(tmp_path: Path) -> None:
    xacle = tmp_path / "inference.csv"
    xacle.write_text("wav_file_name,pred_score\n00000.wav,6.5\n00001.wav,7\n", encoding="utf-8")
    assert read_predictions(xacle) == {"00000": {"score": 6.5}, "00001": {"score": 7.0}}
    answer = tmp_path / "answer.txt"
    answer.write_text("sysA_P1,3.25,4.0\n\nsysA_P2,1.5,2.0\n", encoding="utf-8")
    assert read_predictions(answer) == {
        "sysA_P1": {"overall": 3.25, "textual": 4.0},
        "sysA_P2": {"overall": 1.5, "textual": 2.0},
    }


def test_read_predictions_errors(tmp_path: Path) -> None:
    ambiguous = tmp_path / "ambiguous.csv"
    ambiguous.write_text("wav_file_name,pred_score\na/x.wav,1\nb/x.wav,2\n", encoding="utf-8")
    with pytest.raises(MosError, match=r"ambiguous\.csv: line 3: .*both name clip 'x'"):
        read_predictions(ambiguous)
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
