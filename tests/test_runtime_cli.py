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
    make_mean_bundle,
    read_csv_dicts,
    text_bundle,
    write_captions,
    write_wav,
)
from fixtures_mushra import read_table, tiny_mushra  # noqa: F401
from mos.audio import read_audio
from mos.files import sha256_file
from mos.data.table import parse_column_spec
from mos.evaluate import evaluate_summary, read_predictions
from mos.runtime.writers import meta_path
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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
    assert set(read_predictions(answer).by_key()) == {g[:-4] for g in good}

    xacle = tmp_path / "xacle.csv"
    code, _, stderr = run_score_cli(folder, "--bundle", audio_bundle.path, "--out", xacle, "--format", "xacle", *FAST)
    assert code == 3, stderr
    rows = read_csv_dicts(xacle)
    assert [r["wav_file_name"] for r in rows] == good and all(0 <= float(r["pred_score"]) <= 10 for r in rows)
    assert set(read_predictions(xacle).by_key()) == {g[:-4] for g in good}
    assert set(read_predictions(base).by_key()) == set(read_predictions(jsonl).by_key()) == {g[:-4] for g in good}


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
    shutil.copy(meta_path(clean), meta_path(partial))  # the same bundle wrote it
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


def test_resume_refuses_another_bundle_variant_or_format_and_leaves_the_file(tmp_path: Path, audio_bundle) -> None:  # noqa: F811
    folder, _ = make_folder(tmp_path, 4)
    out = tmp_path / "scores.csv"
    code, _, stderr = run_score_cli(folder, "--bundle", audio_bundle.path, "--out", out, *FAST)
    assert code == 0, stderr
    meta = json.loads(meta_path(out).read_text(encoding="utf-8"))
    assert meta["format"] == "csv" and meta["audio_model"] == "audio.onnx"
    assert meta["bundle_sha256"] == sha256_file(audio_bundle.path / "mos.json")
    assert meta["audio_model_sha256"] == sha256_file(audio_bundle.path / "audio.onnx")
    lines = out.read_text(encoding="utf-8").splitlines()
    out.write_text("\n".join(lines[:3]) + "\n", encoding="utf-8")  # two rows done, as a killed run leaves
    before = out.read_bytes()
    # another bundle with the same targets (a re-export: same model files, another mos.json)
    other = tmp_path / "other-bundle"
    shutil.copytree(audio_bundle.path, other)
    doc = json.loads((other / "mos.json").read_text(encoding="utf-8"))
    (other / "mos.json").write_text(json.dumps({**doc, "exported_at": "another time"}), encoding="utf-8")
    for extra, words in (
        (["--bundle", other], "another bundle"),
        (["--bundle", audio_bundle.path, "--int8"], "audio.int8.onnx"),
        (["--bundle", audio_bundle.path, "--format", "jsonl"], "--format csv"),
    ):
        code, _, stderr = run_score_cli(folder, "--out", out, "--resume", *extra, *FAST)
        line = error_line(stderr)
        assert code == 2 and "cannot resume" in line and words in line and "left as it is" in line, line
        assert out.read_bytes() == before  # never truncated or rewritten
    # a file that does not parse is refused too, untouched
    (tmp_path / "rows.jsonl").write_text('{"id": "clip_000.wav", "score": 1.0, "status": "ok"}\nnot json\n')
    shutil.copy(meta_path(out), meta_path(tmp_path / "rows.jsonl"))
    jsonl_meta = json.loads(meta_path(out).read_text(encoding="utf-8"))
    meta_path(tmp_path / "rows.jsonl").write_text(json.dumps({**jsonl_meta, "format": "jsonl"}))
    code, _, stderr = run_score_cli(folder, "--bundle", audio_bundle.path, "--out", tmp_path / "rows.jsonl",
                                    "--format", "jsonl", "--resume", *FAST)
    assert code == 2 and "line 2 is not a JSON row" in error_line(stderr)
    assert (tmp_path / "rows.jsonl").read_text().endswith("not json\n")
    # without a record of the bundle that wrote it, no resume
    meta_path(out).unlink()
    code, _, stderr = run_score_cli(folder, "--bundle", audio_bundle.path, "--out", out, "--resume", *FAST)
    assert code == 2 and "scores.csv.meta.json" in error_line(stderr) and out.read_bytes() == before
    # the same bundle resumes: two rows kept, two scored
    shutil.copy(tmp_path / "scores.csv", tmp_path / "again.csv")
    code, _, stderr = run_score_cli(folder, "--bundle", audio_bundle.path, "--out", tmp_path / "again.csv", *FAST)
    assert code == 0 and len(read_csv_dicts(tmp_path / "again.csv")) == 4
    lines_again = (tmp_path / "again.csv").read_text(encoding="utf-8").splitlines()
    (tmp_path / "again.csv").write_text("\n".join(lines_again[:3]) + "\n", encoding="utf-8")
    code, _, stderr = run_score_cli(folder, "--bundle", audio_bundle.path, "--out", tmp_path / "again.csv",
                                    "--resume", *FAST)
    assert code == 0 and "skipped 2" in stderr and len(read_csv_dicts(tmp_path / "again.csv")) == 4


def test_text_model_without_any_caption_source_is_exit_2(tmp_path: Path, text_bundle) -> None:  # noqa: F811
    folder, _ = make_folder(tmp_path, 2)
    code, _, stderr = run_score_cli(folder, "--bundle", text_bundle.path, "--out", tmp_path / "x.csv", *FAST)
    assert code == 2 and "--captions" in error_line(stderr)


# --- formats, skipped files, caption keys, challenge names, splits, clamping ----------------------


def test_every_format_libsndfile_reads_is_scored_and_the_rest_is_listed(tmp_path: Path, audio_bundle) -> None:  # noqa: F811
    folder = tmp_path / "in"
    write_wav(folder / "a.wav", 0.6, seed=1)
    write_wav(folder / "b.aiff", 0.6, seed=2)
    mp3 = "MP3" in sf.available_formats()
    if mp3:  # libsndfile >= 1.1 reads and writes mp3
        write_wav(folder / "sub" / "c.mp3", 0.6, seed=3, fmt="MP3")
    (folder / "sub" / "memo.m4a").parent.mkdir(exist_ok=True)
    for name in ("sub/memo.m4a", "talk.m4a", "notes.txt"):
        (folder / name).write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(64))
    out = tmp_path / "scores.csv"
    code, _, stderr = run_score_cli(folder, "--bundle", audio_bundle.path, "--out", out, *FAST)
    assert code == 0, stderr
    rows = read_csv_dicts(out)
    assert [r["id"] for r in rows] == ["a.wav", "b.aiff"] + (["sub/c.mp3"] if mp3 else [])
    assert all(r["status"] == "ok" for r in rows)
    assert "not scored: 3 file(s) not read: not a format the installed libsndfile reads: 2 .m4a " \
           "(e.g. sub/memo.m4a), 1 .txt (e.g. notes.txt)" in stderr, stderr
    # one file of a type it cannot read, or that does not decode: an error row, never a refusal
    (tmp_path / "blob.bin").write_bytes(bytes(range(256)))
    for name, path in (("talk.m4a", folder / "talk.m4a"), ("blob.bin", tmp_path / "blob.bin")):
        single = tmp_path / f"{name}.csv"
        code, _, stderr = run_score_cli(path, "--bundle", audio_bundle.path, "--out", single, *FAST)
        assert code == 3, stderr
        (row,) = read_csv_dicts(single)
        assert row["id"] == name and row["status"] == "error" and "cannot decode audio" in row["error"]


def test_caption_keys_match_paths_first_and_names_only_when_unique(tmp_path: Path, text_bundle, audio_bundle) -> None:  # noqa: F811
    folder = tmp_path / "in"
    for i, rel in enumerate(("a/001.wav", "b/001.wav", "b/002.wav")):
        write_wav(folder / rel, 0.5, seed=i)
    by_name = write_captions(tmp_path / "names.csv", [("001.wav", caption_for(1)), ("002.wav", caption_for(2))])
    out = tmp_path / "names_out.csv"
    code, _, stderr = run_score_cli(folder, "--captions", by_name, "--bundle", text_bundle.path, "--out", out, *FAST)
    assert code == 3, stderr
    rows = {r["id"]: r for r in read_csv_dicts(out)}
    for rel in ("a/001.wav", "b/001.wav"):  # never the same caption for two files without a word
        assert rows[rel]["status"] == "error" and rows[rel]["caption"] == ""
        assert "ambiguous caption: key '001.wav'" in rows[rel]["error"] and "fits 2 inputs" in rows[rel]["error"]
    assert rows["b/002.wav"]["status"] == "ok" and rows["b/002.wav"]["caption"] == caption_for(2)
    by_path = write_captions(tmp_path / "paths.csv", [("b/001.wav", caption_for(4)), ("a/001.wav", caption_for(3)),
                                                      ("002.wav", caption_for(2))])
    code, _, stderr = run_score_cli(folder, "--captions", by_path, "--bundle", text_bundle.path, "--out", out, *FAST)
    assert code == 0, stderr
    assert [r["caption"] for r in read_csv_dicts(out)] == [caption_for(3), caption_for(4), caption_for(2)]
    # no key fits any input: refused up front with the two forms, not an error row per file
    elsewhere = write_captions(tmp_path / "other.csv", [("clips/x9.wav", "a caption"), ("clips/x8.wav", "another")])
    code, _, stderr = run_score_cli(folder, "--captions", elsewhere, "--bundle", text_bundle.path,
                                    "--out", tmp_path / "none.csv", *FAST)
    line = error_line(stderr)
    assert code == 2 and "no caption key matches any input" in line
    assert "'clips/x9.wav'" in line and "'a/001.wav'" in line and not (tmp_path / "none.csv").exists()
    # XACLE answers name clips by file name: two inputs named 001.wav cannot both be in one
    code, _, stderr = run_score_cli(folder, "--bundle", audio_bundle.path, "--format", "xacle",
                                    "--out", tmp_path / "x.csv", *FAST)
    assert code == 2 and "a/001.wav and b/001.wav" in error_line(stderr)
    code, _, stderr = run_score_cli(folder / "b", "--bundle", audio_bundle.path, "--format", "xacle",
                                    "--out", tmp_path / "x.csv", *FAST)
    assert code == 0, stderr
    assert [r["wav_file_name"] for r in read_csv_dicts(tmp_path / "x.csv")] == ["001.wav", "002.wav"]
    listing = tmp_path / "list.txt"
    listing.write_text("in/b/002.wav\nin/a/001.wav\n", encoding="utf-8")
    code, _, stderr = run_score_cli(listing, "--bundle", audio_bundle.path, "--format", "xacle",
                                    "--out", tmp_path / "y.csv", *FAST)
    assert code == 0, stderr
    assert [r["wav_file_name"] for r in read_csv_dicts(tmp_path / "y.csv")] == ["002.wav", "001.wav"]
    assert [r["id"] for r in read_csv_dicts(tmp_path / "y.rows.csv")] == ["in/b/002.wav", "in/a/001.wav"]


def test_audio_only_bundle_ignores_captions(tmp_path: Path, audio_bundle) -> None:  # noqa: F811
    folder, _ = make_folder(tmp_path, 3)
    clashing = write_captions(tmp_path / "clash.csv", [("clip_000.wav", "one text"), ("clip_000.wav", "another text")])
    broken = tmp_path / "broken.csv"
    broken.write_bytes(b"\xff\xfe not a csv")
    for captions in (clashing, broken):
        out = tmp_path / f"{captions.stem}.csv"
        code, _, stderr = run_score_cli(folder, "--captions", captions, "--bundle", audio_bundle.path, "--out", out, *FAST)
        assert code == 0, stderr
        assert "is not read: this bundle's model is audio-only" in stderr
        assert [(r["status"], r["caption"]) for r in read_csv_dicts(out)] == [("ok", "")] * 3


def test_challenge_file_holds_only_the_current_inputs(tmp_path: Path, audio_bundle) -> None:  # noqa: F811
    folder, _ = make_folder(tmp_path, 4)
    answer = tmp_path / "submission.csv"
    code, _, stderr = run_score_cli(folder, "--bundle", audio_bundle.path, "--format", "xacle", "--out", answer, *FAST)
    assert code == 0, stderr
    scores = {r["wav_file_name"]: r["pred_score"] for r in read_csv_dicts(answer)}
    assert len(scores) == 4
    subset = tmp_path / "subset"
    subset.mkdir()
    for name in ("clip_001.wav", "clip_003.wav"):
        shutil.copy(folder / name, subset / name)
    code, _, stderr = run_score_cli(subset, "--bundle", audio_bundle.path, "--format", "xacle", "--out", answer,
                                    "--resume", *FAST)
    assert code == 0 and "skipped 2" in stderr, stderr
    assert "no audio scored in this run" in stderr and "clips/s" not in stderr  # no speed made of nothing
    assert {r["wav_file_name"]: r["pred_score"] for r in read_csv_dicts(answer)} == {
        n: scores[n] for n in ("clip_001.wav", "clip_003.wav")}


def test_xacle_tree_split(tmp_path: Path, audio_bundle, small_demo: Path) -> None:  # noqa: F811
    out = tmp_path / "val.csv"
    code, _, stderr = run_score_cli(small_demo, "--bundle", audio_bundle.path, "--split", "validation", "--out", out,
                                    "--batch-size", "32", *FAST)
    assert code == 0, stderr
    assert len(read_csv_dicts(out)) == 32 and "inputs: XACLE tree validation split at" in stderr
    code, _, stderr = run_score_cli(small_demo, "--bundle", audio_bundle.path, "--split", "test", "--out", out, *FAST)
    assert code == 2 and "no test split" in error_line(stderr)
    test_wav = tmp_path / "tree" / "XACLE_dataset" / "wav"
    shutil.copytree(small_demo / "meta_data", test_wav.parent / "meta_data")
    for split, n in (("train", 2), ("validation", 2), ("test", 3)):
        for i in range(n):
            write_wav(test_wav / split / f"{split}_{i}.wav", 0.3, seed=i)
    code, _, stderr = run_score_cli(tmp_path / "tree", "--bundle", audio_bundle.path, "--out", out, *FAST)
    assert code == 0, stderr  # a full tree: its test split, not train+validation
    assert [r["id"] for r in read_csv_dicts(out)] == ["test_0.wav", "test_1.wav", "test_2.wav"]
    assert "XACLE tree test split at" in stderr


def test_long_files_are_clamped_after_their_windows_are_averaged(tmp_path: Path) -> None:
    """Contract 1: window scores (unclamped) are averaged weighted by length, then clamped."""
    bundle = make_mean_bundle(tmp_path / "bundle", gain=20.0, low=0.0, high=10.0, window_seconds=1.0)
    quiet, loud = np.full(16000, 0.125, np.float32), np.full(8000, 0.75, np.float32)
    long = np.concatenate([quiet, loud])  # windows of 1 s -> 2.5 and 0.5 s -> 15.0 (above 10)
    engine = ScoreEngine.load(bundle, EngineOptions(device="cpu", threads=1))
    np.testing.assert_allclose(engine.score_segments([quiet, loud], [None, None])[:, 0], [2.5, 15.0], rtol=1e-6)
    # (2.5 * 1 + 15 * 0.5) / 1.5 = 6.667; clamping each window first would give (2.5 + 10 * 0.5) / 1.5 = 5.0
    expected = [(2.5 + 15.0 * 0.5) / 1.5, 10.0, 0.0]
    got = engine.score_arrays([long, loud, -loud], [None, None, None])
    np.testing.assert_allclose(got[:, 0], expected, rtol=1e-6)
    folder = tmp_path / "in"
    folder.mkdir()
    for name, wave in (("a_long.wav", long), ("b_loud.wav", loud), ("c_neg.wav", -loud)):
        sf.write(folder / name, wave, 16000, subtype="FLOAT")
    out = tmp_path / "scores.csv"
    code, _, stderr = run_score_cli(folder, "--bundle", bundle, "--out", out, *FAST)
    assert code == 0, stderr
    assert [float(r["score"]) for r in read_csv_dicts(out)] == pytest.approx(expected, rel=1e-5)


def test_a_long_file_scores_as_training_scores_it_whole(tmp_path: Path, text_bundle) -> None:  # noqa: F811
    """`mos score` reads a 25 s 44.1 kHz file window by window; its score is the engine's on the
    whole file resampled at once and cut into the same windows (what validation in training
    scores), to float rounding: no resampler edges at the window boundaries."""
    folder = tmp_path / "in"
    write_wav(folder / "long.wav", 25.0, rate=44100, seed=5, channels=2, subtype="PCM_24")
    write_captions(tmp_path / "captions.csv", [("long.wav", caption_for(4))])
    out = tmp_path / "scores.csv"
    code, _, stderr = run_score_cli(folder, "--captions", tmp_path / "captions.csv", "--bundle", text_bundle.path,
                                    "--out", out, *FAST)
    assert code == 0, stderr
    [row] = read_csv_dicts(out)
    engine = ScoreEngine.load(text_bundle.path, EngineOptions(device="cpu", threads=1))
    whole = read_audio(folder / "long.wav", 16000)
    assert len(whole) > 2 * engine.window_samples  # three windows
    expected = engine.score_arrays([whole], [caption_for(4)])[0]
    np.testing.assert_allclose([float(row["overall"]), float(row["textual"])], expected, rtol=0, atol=2e-6)


def test_a_ratings_table_is_scored_through_its_column_mapping(tmp_path: Path, audio_bundle, tiny_mushra: Path) -> None:  # noqa: F811
    """The same reading of a table as mos train and mos eval: ids are the path column as written,
    so `mos eval` joins the rows back on them."""
    out = tmp_path / "scores.csv"
    code, _, stderr = run_score_cli(tiny_mushra, "--columns", "path=path,target:mushra=mean_score", "--bundle",
                                    audio_bundle.path, "--out", out, *FAST)
    assert code == 0, stderr
    rows = read_csv_dicts(out)
    assert [r["id"] for r in rows] == [r["path"] for r in read_table(tiny_mushra)]
    assert "inputs: table " in stderr
    summary = evaluate_summary(out, tiny_mushra, parse_column_spec("path=path,target:mushra=mean_score,system=system"))
    assert summary.joined == {"id": 12} and summary.results["mushra"]["system"].n == 3
    code, _, stderr = run_score_cli(tiny_mushra, "--bundle", audio_bundle.path, "--out", out, *FAST)
    assert code == 2 and "column mapping (--columns)" in error_line(stderr)
