"""`mos score` end to end: real wav files, real sessions, the typer command; bad inputs, formats, resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import typer
from typer.testing import CliRunner

from fixtures_runtime import (  # noqa: F401
    audio_bundle,
    caption_for,
    make_folder,
    read_csv_dicts,
    text_bundle,
    write_captions,
    write_wav,
)
from mos.audio import read_audio
from mos.evaluate import read_predictions
from mos.runtime import EngineOptions, ScoreEngine
from mos.runtime.command import score

FAST = ["--threads", "1", "--workers", "2", "--quiet"]


def run_score_cli(*args: object) -> tuple[int, str, str]:
    app = typer.Typer(add_completion=False)
    app.command("score")(score)

    @app.callback()
    def _root() -> None:
        """test app"""

    result = CliRunner().invoke(app, ["score", *[str(a) for a in args]])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


# --- the happy path ----------------------------------------------------------------------------


def test_scores_a_folder_like_the_engine_does(tmp_path: Path, text_bundle) -> None:  # noqa: F811
    folder, captions = make_folder(tmp_path, 7)
    out = tmp_path / "scores.csv"
    code, _, stderr = run_score_cli(folder, "--captions", captions, "--bundle", text_bundle.path, "--out", out,
                                    "--batch-size", "3", *FAST)
    assert code == 0, stderr
    assert "scored 7, failed 0" in stderr and "clips/s" in stderr and "CPUExecutionProvider" in stderr
    rows = read_csv_dicts(out)
    assert list(rows[0].keys()) == ["id", "path", "caption", "overall", "textual", "duration", "status", "error"]
    assert [r["id"] for r in rows] == [f"clip_{i:03d}.wav" for i in range(7)]  # input order
    assert all(r["status"] == "ok" and r["error"] == "" for r in rows)
    engine = ScoreEngine.load(text_bundle.path, EngineOptions(device="cpu", threads=1))
    waves = [read_audio(folder / r["id"], 16000) for r in rows]
    expected = engine.score_arrays(waves, [caption_for(i) for i in range(7)])
    got = np.array([[float(r["overall"]), float(r["textual"])] for r in rows])
    np.testing.assert_allclose(got, expected, atol=2e-6)
    assert [float(r["duration"]) for r in rows] == pytest.approx([len(w) / 16000 for w in waves], abs=1e-3)


def test_caption_columns_and_musiceval_prompt_file(tmp_path: Path, text_bundle) -> None:  # noqa: F811
    folder = tmp_path / "wav"
    for i in range(3):
        write_wav(folder / f"sys{i}_P00{i}.wav", 0.6, seed=i)
    mapped = write_captions(
        tmp_path / "meta.csv", [(f"sys{i}_P00{i}.wav", caption_for(i)) for i in range(3)], header=("file", "prompt_text")
    )
    out = tmp_path / "a.csv"
    code, _, stderr = run_score_cli(folder, "--captions", mapped, "--caption-columns", "file,prompt_text",
                                    "--bundle", text_bundle.path, "--out", out, *FAST)
    assert code == 0, stderr
    a = read_csv_dicts(out)
    assert [r["caption"] for r in a] == [caption_for(i) for i in range(3)]
    prompts = tmp_path / "prompt_info.txt"
    prompts.write_text("id\ttext\n" + "".join(f"P00{i}\t{caption_for(i)}\n" for i in range(3)), encoding="utf-8")
    out_b = tmp_path / "b.csv"
    code, _, stderr = run_score_cli(folder, "--captions", prompts, "--bundle", text_bundle.path, "--out", out_b, *FAST)
    assert code == 0, stderr
    assert [r["overall"] for r in read_csv_dicts(out_b)] == [r["overall"] for r in a]


def test_list_file_and_xacle_tree_inputs(tmp_path: Path, text_bundle, small_demo: Path) -> None:  # noqa: F811
    folder, captions = make_folder(tmp_path, 3)
    listing = tmp_path / "files.txt"
    listing.write_text("# my clips\nwav/clip_002.wav\n\nwav/clip_000.wav\n", encoding="utf-8")
    out = tmp_path / "list.csv"
    code, _, stderr = run_score_cli(listing, "--captions", captions, "--bundle", text_bundle.path, "--out", out, *FAST)
    assert code == 0, stderr
    assert [r["id"] for r in read_csv_dicts(out)] == ["wav/clip_002.wav", "wav/clip_000.wav"]

    out = tmp_path / "tree.csv"  # the dataset's own captions, no --captions needed
    code, _, stderr = run_score_cli(small_demo, "--bundle", text_bundle.path, "--out", out, "--batch-size", "32", *FAST)
    assert code == 0, stderr
    rows = read_csv_dicts(out)
    assert len(rows) == 128 and all(r["status"] == "ok" and r["caption"] for r in rows)


# --- bad input: error rows, the rest scored, exit 3 ---------------------------------------------


def _bad_and_odd_files(folder: Path) -> tuple[dict[str, str], list[str]]:
    """Files that must score (ok) and files that must fail (name -> expected error words)."""
    ok: list[str] = []
    for subtype in ("PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"):
        ok.append(write_wav(folder / f"bits_{subtype}.wav", 0.7, rate=16000, subtype=subtype, seed=1).name)
    for rate in (8000, 11025, 22050, 44100, 48000, 96000):
        ok.append(write_wav(folder / f"rate_{rate}.wav", 0.8, rate=rate, seed=2).name)
    for channels in (2, 3, 6, 8):
        ok.append(write_wav(folder / f"ch_{channels}.wav", 0.6, channels=channels, seed=3).name)
    ok.append(write_wav(folder / "sub dir" / "ünïcødé 音 name.wav", 0.5, seed=4).relative_to(folder).as_posix())
    ok.append(write_wav(folder / "song.flac", 0.9, rate=44100, seed=5).name)
    ok.append(write_wav(folder / "song.ogg", 0.9, rate=48000, seed=6).name)
    ok.append(write_wav(folder / "LOUD.WAV", 0.4, seed=7).name)
    ok.append(write_wav(folder / "tiny.wav", 0.001, seed=8).name)
    # one hour at 8 kHz: scored window by window (360 windows), never whole in memory
    hour = folder / "hour.wav"
    with sf.SoundFile(hour, "w", samplerate=8000, channels=1, subtype="PCM_16") as f:
        block = (0.1 * np.sin(np.arange(8000 * 60) / 8.0)).astype(np.float32)
        for _ in range(60):
            f.write(block)
    ok.append(hour.name)

    bad: dict[str, str] = {}
    (folder / "empty.wav").write_bytes(b"")
    bad["empty.wav"] = "empty"
    full = (folder / "bits_PCM_16.wav").read_bytes()
    (folder / "cut_header.wav").write_bytes(full[:30])
    bad["cut_header.wav"] = "cannot decode"
    (folder / "cut_data.wav").write_bytes(full[: len(full) // 2])
    bad["cut_data.wav"] = "truncated"
    (folder / "text.wav").write_text("this is not audio at all\n" * 20)
    bad["text.wav"] = "cannot decode"
    for name, value in (("nan.wav", np.nan), ("inf.wav", np.inf)):
        x = np.zeros(8000, np.float32)
        x[100] = value
        sf.write(folder / name, x, 16000, subtype="FLOAT")
        bad[name] = "NaN or inf"
    flac = (folder / "song.flac").read_bytes()
    (folder / "cut.flac").write_bytes(flac[: len(flac) // 2])
    bad["cut.flac"] = "cannot decode"
    return bad, ok


def test_bad_files_are_error_rows_and_the_rest_is_scored(tmp_path: Path, text_bundle) -> None:  # noqa: F811
    folder = tmp_path / "in"
    bad, ok = _bad_and_odd_files(folder)
    names = sorted(ok + list(bad) + ["no_caption.wav", "dup_caption.wav"])
    write_wav(folder / "no_caption.wav", 0.5)
    write_wav(folder / "dup_caption.wav", 0.5)
    rows = [(n, caption_for(i)) for i, n in enumerate(names) if n != "no_caption.wav"]
    rows.append(("dup_caption.wav", "a different caption for the same clip"))
    captions = write_captions(tmp_path / "captions.csv", rows)
    out = tmp_path / "scores.csv"
    code, _, stderr = run_score_cli(folder, "--captions", captions, "--bundle", text_bundle.path, "--out", out,
                                    "--batch-size", "8", *FAST)
    assert code == 3, stderr
    assert "Traceback" not in stderr
    got = {r["id"]: r for r in read_csv_dicts(out)}
    assert sorted(got) == names  # every file exactly once
    for name in ok:
        assert got[name]["status"] == "ok", got[name]
        assert 1.0 <= float(got[name]["overall"]) <= 5.0
    bad = {**bad, "no_caption.wav": "no caption", "dup_caption.wav": "ambiguous caption"}
    for name, words in bad.items():
        row = got[name]
        assert row["status"] == "error" and row["overall"] == "", row
        assert words in row["error"] and name in row["error"] and "\n" not in row["error"], row
    assert float(got["hour.wav"]["duration"]) == pytest.approx(3600.0, abs=0.01)
    assert f"failed {len(bad)}" in stderr


# --- bad run inputs: one line, exit 2 -----------------------------------------------------------


def test_malformed_captions_file_is_exit_2_naming_it(tmp_path: Path, text_bundle) -> None:  # noqa: F811
    folder, _ = make_folder(tmp_path, 2)
    cases = {
        "nocol.csv": "name,words\nclip_000.wav,hello\n",
        "ragged.csv": 'wav_file_name,text\nclip_000.wav,"a","b"\n',
        "binary.csv": b"\xff\xfe\x00garbage",
    }
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        code, _, stderr = run_score_cli(folder, "--captions", path, "--bundle", text_bundle.path,
                                        "--out", tmp_path / "x.csv", *FAST)
        assert code == 2, (name, stderr)
        assert name in error_line(stderr)
    code, _, stderr = run_score_cli(folder, "--captions", tmp_path / "missing.csv", "--bundle", text_bundle.path, *FAST)
    assert code == 2 and "missing.csv" in error_line(stderr)
    code, _, stderr = run_score_cli(folder, "--captions", tmp_path / "nocol.csv", "--caption-columns", "oops",
                                    "--bundle", text_bundle.path, *FAST)
    assert code == 2 and "--caption-columns" in error_line(stderr)


def test_bad_bundles_are_exit_2_naming_the_file(tmp_path: Path, audio_bundle) -> None:  # noqa: F811
    folder, _ = make_folder(tmp_path, 2)

    def copy(name: str) -> Path:
        dst = tmp_path / name
        shutil.copytree(audio_bundle.path, dst)
        return dst

    missing = copy("missing")
    (missing / "audio.onnx").unlink()
    corrupted = copy("corrupted")
    with (corrupted / "audio.onnx").open("r+b") as f:
        f.seek(1000)
        f.write(b"\x00garbage\x00")
    schema = copy("schema")
    meta = json.loads((schema / "mos.json").read_text())
    meta["schema"] = "mos.bundle/99"
    (schema / "mos.json").write_text(json.dumps(meta))
    nometa = copy("nometa")
    (nometa / "mos.json").unlink()
    expected = {
        missing: "audio.onnx",
        corrupted: "audio.onnx",
        schema: "mos.json",
        nometa: "mos.json",
        tmp_path / "nowhere": "nowhere",
    }
    for bundle, words in expected.items():
        code, _, stderr = run_score_cli(folder, "--bundle", bundle, "--out", tmp_path / "x.csv", *FAST)
        assert code == 2, (bundle, stderr)
        line = error_line(stderr)
        assert words in line and str(bundle) in line, line


def test_bad_usage_is_exit_2(tmp_path: Path, audio_bundle, text_bundle) -> None:  # noqa: F811
    folder, _ = make_folder(tmp_path, 1)
    code, _, stderr = run_score_cli(folder, "--bundle", audio_bundle.path, "--format", "audiomos", *FAST)
    assert code == 2 and "overall and textual" in error_line(stderr)
    code, _, stderr = run_score_cli(folder, "--bundle", text_bundle.path, "--format", "xacle", *FAST)
    assert code == 2 and "xacle" in error_line(stderr)
    code, _, stderr = run_score_cli(tmp_path / "nothing-here", "--bundle", audio_bundle.path, *FAST)
    assert code == 2 and "nothing-here" in error_line(stderr)
    code, _, stderr = run_score_cli(folder, "--bundle", audio_bundle.path, "--int8", "--device", "cuda", *FAST)
    assert code == 2 and "cuda" in error_line(stderr).lower()
    code, _, _ = run_score_cli(folder, "--bundle", audio_bundle.path, "--format", "xml", *FAST)
    assert code == 2


# --- output formats ---------------------------------------------------------------------------


def test_every_output_format_parses_back(tmp_path: Path, audio_bundle, text_bundle) -> None:  # noqa: F811
    folder, captions = make_folder(tmp_path, 4)
    write_wav(folder / "broken.wav", 0.5).write_bytes(b"RIFF")
    base = tmp_path / "base.csv"
    code, _, _ = run_score_cli(folder, "--captions", captions, "--bundle", text_bundle.path, "--out", base, *FAST)
    assert code == 3
    csv_rows = {r["id"]: r for r in read_csv_dicts(base)}
    good = sorted(i for i, r in csv_rows.items() if r["status"] == "ok")
    assert len(good) == 4 and csv_rows["broken.wav"]["status"] == "error"

    jsonl = tmp_path / "s.jsonl"
    code, _, _ = run_score_cli(folder, "--captions", captions, "--bundle", text_bundle.path, "--out", jsonl,
                               "--format", "jsonl", *FAST)
    assert code == 3
    objs = {o["id"]: o for o in map(json.loads, jsonl.read_text(encoding="utf-8").splitlines())}
    assert objs["broken.wav"]["status"] == "error" and objs["broken.wav"]["overall"] is None
    for i in good:
        assert objs[i]["overall"] == pytest.approx(float(csv_rows[i]["overall"]), abs=1e-6)
        assert objs[i]["caption"] == csv_rows[i]["caption"]

    answer = tmp_path / "challenge" / "answer.txt"
    code, _, stderr = run_score_cli(folder, "--captions", captions, "--bundle", text_bundle.path, "--out", answer,
                                    "--format", "audiomos", *FAST)
    assert code == 3, stderr
    lines = answer.read_text().splitlines()
    assert [ln.split(",")[0] for ln in lines] == [g[:-4] for g in good]
    for ln in lines:
        wav_id, overall, textual = ln.split(",")
        assert float(overall) == pytest.approx(float(csv_rows[wav_id + ".wav"]["overall"]), abs=1e-6)
        assert float(textual) == pytest.approx(float(csv_rows[wav_id + ".wav"]["textual"]), abs=1e-6)
    assert (answer.parent / "answer.rows.csv").is_file()
    assert set(read_predictions(answer)) == {g[:-4] for g in good}

    xacle = tmp_path / "xacle.csv"
    code, _, stderr = run_score_cli(folder, "--bundle", audio_bundle.path, "--out", xacle, "--format", "xacle", *FAST)
    assert code == 3, stderr
    rows = read_csv_dicts(xacle)
    assert [r["wav_file_name"] for r in rows] == good and all(0 <= float(r["pred_score"]) <= 10 for r in rows)
    assert set(read_predictions(xacle)) == {g[:-4] for g in good}
    assert set(read_predictions(base)) == set(read_predictions(jsonl)) == {g[:-4] for g in good}


# --- resume ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_resume_keeps_ok_rows_retries_errors_and_drops_a_torn_line(tmp_path: Path, audio_bundle, fmt: str) -> None:  # noqa: F811
    folder, _ = make_folder(tmp_path, 6)
    clean = tmp_path / f"clean.{fmt}"
    code, _, _ = run_score_cli(folder, "--bundle", audio_bundle.path, "--out", clean, "--format", fmt, *FAST)
    assert code == 0
    lines = clean.read_text(encoding="utf-8").splitlines(keepends=True)
    header = lines[:1] if fmt == "csv" else []
    body = lines[len(header):]
    # rows 0 and 1 done, row 2 marked failed earlier, row 3 torn mid-line by a kill
    failed = body[2].replace(",ok,", ",error,boom") if fmt == "csv" else json.dumps(
        {**json.loads(body[2]), "status": "error", "score": None, "error": "boom"}) + "\n"
    partial = tmp_path / f"partial.{fmt}"
    partial.write_text("".join(header + body[:2] + [failed, body[3][:17]]), encoding="utf-8")
    code, _, stderr = run_score_cli(folder, "--bundle", audio_bundle.path, "--out", partial, "--format", fmt,
                                    "--resume", *FAST)
    assert code == 0, stderr
    assert "skipped 2" in stderr
    assert sorted(partial.read_text(encoding="utf-8").splitlines()) == sorted(ln.rstrip("\n") for ln in lines)


def test_resume_refuses_another_bundles_output(tmp_path: Path, audio_bundle) -> None:  # noqa: F811
    folder, _ = make_folder(tmp_path, 2)
    out = tmp_path / "other.csv"
    out.write_text("id,path,caption,overall,textual,duration,status,error\n")
    code, _, stderr = run_score_cli(folder, "--bundle", audio_bundle.path, "--out", out, "--resume", *FAST)
    assert code == 2 and "cannot resume" in error_line(stderr)


def test_text_model_without_any_caption_source_is_exit_2(tmp_path: Path, text_bundle) -> None:  # noqa: F811
    folder, _ = make_folder(tmp_path, 2)
    code, _, stderr = run_score_cli(folder, "--bundle", text_bundle.path, "--out", tmp_path / "x.csv", *FAST)
    assert code == 2 and "--captions" in error_line(stderr)
