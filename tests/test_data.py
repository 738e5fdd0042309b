"""Tests for the torch-free dataset readers on small fabricated trees and the real MUSHRA table."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from fixtures_mushra import REAL_MUSHRA, TINY_SYSTEMS, needs_real_mushra, read_table, tiny_mushra  # noqa: F401
from mos.data.captions import Captions, load_captions
from mos.data.detect import Kind, identify, open_dataset, open_inputs, open_ratings
from mos.data.folder import load_folder, scan_folder
from mos.data.manifest import Target
from mos.data.musiceval import find_system_mos, load_musiceval, load_system_mos, split_clip_name
from mos.data.table import ColumnMap, load_table, load_table_groups, parse_column_spec
from mos.data.xacle import load_xacle
from mos.errors import ManifestError



# ------------------------------------------------------------------------------- fixtures


def write_wav(path: Path, seconds: float = 0.2, rate: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(rate * seconds)) / rate
    sf.write(path, (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate)
    return path


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


XACLE_TRAIN = (
    "wav_file_name,text,average_score,quality_score\n"
    '00001.wav,"A dog barks, then a car passes",7.5,6\n'
    '00002.wav,"Someone says ""hello"" twice",2.25,3.5\n'
    "00003.wav,Rain on a tin roof,10,9\n"
)
XACLE_VALID = "wav_file_name,text,average_score\n00004.wav,Birds chirp,4\n00005.wav,A bell rings,0\n"


@pytest.fixture
def xacle_parent(tmp_path: Path) -> Path:
    """XACLE_dataset_train_val/XACLE_dataset/{meta_data,wav} with train, validation, test."""
    parent = tmp_path / "XACLE_dataset_train_val"
    root = parent / "XACLE_dataset"
    meta = root / "meta_data"
    write_text(meta / "train_average.csv", XACLE_TRAIN)
    write_text(
        meta / "train.csv",
        "wav_file_name,listener_id,score\n00001.wav,L1,7\n00001.wav,L2,8\n00002.wav,L1,2\n",
    )
    write_text(meta / "validation_average.csv", XACLE_VALID)
    write_text(meta / "test.csv", "wav_file_name,text\n00006.wav,Wind howls\n")
    for split, names in {"train": [1, 2, 3], "validation": [4, 5], "test": [6]}.items():
        for n in names:
            write_wav(root / "wav" / split / f"{n:05d}.wav")
    return parent


ME_PROMPTS = "id\ttext\nP044\tA calm piano piece, slow tempo\nP045\tUpbeat electronic dance track\n"
ME_DEMO = "id\ttext\naudiomos2025-track1-S001_P044.wav\tDemo prompt for S001\n"
ME_TRAIN = (
    "audiomos2025-track1-S002_P044.wav,3.5,4.25\n"
    "audiomos2025-track1-S001_P044.wav,2.0,1.5\n"
    "audiomos2025-track1-S003_P099.wav,5,1\n"
)
ME_DEV = "audiomos2025-track1-S002_P045.wav,4.0,3.0\n"


@pytest.fixture
def musiceval_root(tmp_path: Path) -> Path:
    root = tmp_path / "MusicEval-phase1"
    write_text(root / "sets" / "train_mos_list.txt", ME_TRAIN)
    write_text(root / "sets" / "dev_mos_list.txt", ME_DEV)
    write_text(root / "sets" / "test_list.txt", "audiomos2025-track1-S004_P045\n")
    write_text(root / "prompt_info.txt", ME_PROMPTS)
    write_text(root / "demo_prompt_info.txt", ME_DEMO)
    for name in ["S002_P044", "S001_P044", "S003_P099", "S002_P045", "S004_P045"]:
        write_wav(root / "wav" / f"audiomos2025-track1-{name}.wav")
    return root


def expect_error(call, *parts: str) -> str:
    """Run `call`, require a one-line ManifestError whose message holds every part."""
    with pytest.raises(ManifestError) as excinfo:
        call()
    message = str(excinfo.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"
    return message


# ------------------------------------------------------------------------------- XACLE


def test_xacle_train_from_parent(xacle_parent: Path) -> None:
    m = load_xacle(xacle_parent, "train")
    assert [it.id for it in m.items] == ["00001.wav", "00002.wav", "00003.wav"]
    assert m.targets == [Target("score", 0, 10), Target("quality", 0, 10)]
    first, second, third = m.items
    assert first.caption == "A dog barks, then a car passes"
    assert second.caption == 'Someone says "hello" twice'
    assert first.targets == {"score": 7.5, "quality": 6.0}
    assert third.targets["score"] == 10.0
    assert first.ratings == {"score": (7.0, 8.0)} and second.ratings == {"score": (2.0,)}
    assert third.ratings == {}
    assert all(it.system is None and it.path.is_file() for it in m.items)
    assert first.path == xacle_parent / "XACLE_dataset" / "wav" / "train" / "00001.wav"
    assert "train_average.csv" in m.source and m.has_captions()


def test_xacle_roots_direct_and_two_levels_down(xacle_parent: Path) -> None:
    direct = load_xacle(xacle_parent / "XACLE_dataset", "validation")
    deep = load_xacle(xacle_parent.parent, "validation")
    assert [it.id for it in direct.items] == [it.id for it in deep.items] == ["00004.wav", "00005.wav"]
    assert direct.items[1].targets == {"score": 0.0}
    assert direct.targets == [Target("score", 0, 10)]
    assert direct.items[0].ratings == {}


def test_xacle_test_split_csv_and_folder(xacle_parent: Path) -> None:
    m = load_xacle(xacle_parent, "test")
    assert [(it.id, it.caption, it.targets) for it in m.items] == [("00006.wav", "Wind howls", {})]
    assert m.targets == []
    (xacle_parent / "XACLE_dataset" / "meta_data" / "test.csv").unlink()
    folder = load_xacle(xacle_parent, "test")
    assert [(it.id, it.caption) for it in folder.items] == [("00006.wav", None)]


def test_xacle_unknown_split_and_root(xacle_parent: Path, tmp_path: Path) -> None:
    expect_error(lambda: load_xacle(xacle_parent, "eval"), "eval")
    (tmp_path / "empty").mkdir()
    expect_error(lambda: load_xacle(tmp_path / "empty", "train"), "empty", "XACLE")


def _meta(parent: Path) -> Path:
    return parent / "XACLE_dataset" / "meta_data"


@pytest.mark.parametrize(
    "content,parts",
    [
        ("wav_file_name,text\n00001.wav,x\n", ["train_average.csv:1:", "average_score"]),
        ("text,average_score\nx,1\n", ["train_average.csv:1:", "wav_file_name"]),
        ("", ["train_average.csv", "empty"]),
        ("wav_file_name,text,average_score\n", ["train_average.csv", "no rows"]),
        (
            "wav_file_name,text,average_score\n00001.wav,a,1\n\n00002.wav,b,abc\n",
            ["train_average.csv:4:", "average_score 'abc' is not a number"],
        ),
        ("wav_file_name,text,average_score\n00001.wav,a,nan\n", ["train_average.csv:2:", "not a finite number"]),
        ("wav_file_name,text,average_score\n00001.wav,a,10.5\n", ["train_average.csv:2:", "outside 0..10"]),
        ("wav_file_name,text,average_score\n00001.wav,a,-1\n", ["train_average.csv:2:", "outside 0..10"]),
        ("wav_file_name,text,average_score\n00009.wav,a,1\n", ["train_average.csv:2:", "00009.wav", "not found"]),
        (
            "wav_file_name,text,average_score\n00001.wav,a,1\n00002.wav,b,2\n00001.wav,c,3\n",
            ["train_average.csv:4:", "duplicate wav_file_name '00001.wav'", "line 2"],
        ),
        ("wav_file_name,text,average_score\n00001.wav,a,1,extra\n", ["train_average.csv:2:", "expected 3 fields"]),
        (
            'wav_file_name,text,average_score\n00001.wav,"multi\nline caption",1\n00002.wav,b,x\n',
            ["train_average.csv:4:", "'x'"],
        ),
        ("wav_file_name,text,average_score,quality_score\n00001.wav,a,1,good\n", ["train_average.csv:2:", "quality_score 'good'"]),
    ],
)
def test_xacle_errors(xacle_parent: Path, content: str, parts: list[str]) -> None:
    write_text(_meta(xacle_parent) / "train_average.csv", content)
    expect_error(lambda: load_xacle(xacle_parent, "train"), *parts)


def test_xacle_missing_csv_and_bad_bytes(xacle_parent: Path) -> None:
    (_meta(xacle_parent) / "validation_average.csv").unlink()
    expect_error(lambda: load_xacle(xacle_parent, "validation"), "validation_average.csv", "not found")
    (_meta(xacle_parent) / "train_average.csv").write_bytes(
        b"wav_file_name,text,average_score\n00001.wav,caf\xe9,1\n"
    )
    expect_error(lambda: load_xacle(xacle_parent, "train"), "train_average.csv:2:", "UTF-8")


def test_xacle_listener_file_errors(xacle_parent: Path) -> None:
    write_text(_meta(xacle_parent) / "train.csv", "wav_file_name,listener\n00001.wav,L1\n")
    expect_error(lambda: load_xacle(xacle_parent, "train"), "train.csv:1:", "'score'")
    write_text(_meta(xacle_parent) / "train.csv", "wav_file_name,rating\n00001.wav,7\n00001.wav,??\n")
    expect_error(lambda: load_xacle(xacle_parent, "train"), "train.csv:3:", "rating '??'")


def test_xacle_check_audio_off(xacle_parent: Path) -> None:
    for wav in (xacle_parent / "XACLE_dataset" / "wav" / "train").iterdir():
        wav.unlink()
    expect_error(lambda: load_xacle(xacle_parent, "train"), "not found")
    m = load_xacle(xacle_parent, "train", check_audio=False)
    assert len(m) == 3 and not m.items[0].path.exists()


# ------------------------------------------------------------------------------- MusicEval


def test_musiceval_train(musiceval_root: Path) -> None:
    m = load_musiceval(musiceval_root, "train")
    assert m.targets == [Target("overall", 1, 5), Target("textual", 1, 5)]
    by_id = {it.id: it for it in m.items}
    s2 = by_id["audiomos2025-track1-S002_P044.wav"]
    assert s2.targets == {"overall": 3.5, "textual": 4.25}
    assert s2.system == "S002"
    assert s2.caption == "A calm piano piece, slow tempo"
    assert by_id["audiomos2025-track1-S001_P044.wav"].caption == "Demo prompt for S001"
    assert by_id["audiomos2025-track1-S003_P099.wav"].caption is None
    assert all(it.path.is_file() for it in m.items)


def test_musiceval_dev_test_and_parent(musiceval_root: Path) -> None:
    dev = load_musiceval(musiceval_root.parent, "dev")
    assert [(it.id, it.caption) for it in dev.items] == [
        ("audiomos2025-track1-S002_P045.wav", "Upbeat electronic dance track")
    ]
    test = load_musiceval(musiceval_root, "test")
    assert test.targets == [] and test.items[0].targets == {}
    assert test.items[0].id == "audiomos2025-track1-S004_P045.wav" and test.items[0].system == "S004"
    assert test.items[0].path.is_file()


def test_musiceval_without_prompt_files(musiceval_root: Path) -> None:
    (musiceval_root / "prompt_info.txt").unlink()
    (musiceval_root / "demo_prompt_info.txt").unlink()
    m = load_musiceval(musiceval_root, "train")
    assert len(m) == 3 and not m.has_captions()


def test_split_clip_name() -> None:
    assert split_clip_name("audiomos2025-track1-S002_P044.wav") == ("S002", "P044")
    assert split_clip_name("x/audiomos2025-track1-S013_P001") == ("S013", "P001")
    assert split_clip_name("plain.wav") == (None, None)


@pytest.mark.parametrize(
    "content,parts",
    [
        ("audiomos2025-track1-S002_P044.wav,3.5\n", ["train_mos_list.txt:1:", "2 fields"]),
        ("audiomos2025-track1-S002_P044.wav,3,4,5\n", ["train_mos_list.txt:1:", "4 fields"]),
        ("audiomos2025-track1-S002_P044.wav,good,4\n", ["train_mos_list.txt:1:", "overall 'good' is not a number"]),
        (
            "audiomos2025-track1-S002_P044.wav,3,4\naudiomos2025-track1-S001_P044.wav,3,x\n",
            ["train_mos_list.txt:2:", "textual 'x'"],
        ),
        ("audiomos2025-track1-S002_P044.wav,6,4\n", ["train_mos_list.txt:1:", "outside 1..5"]),
        ("audiomos2025-track1-S009_P044.wav,3,4\n", ["train_mos_list.txt:1:", "S009_P044.wav", "not found"]),
        (
            "audiomos2025-track1-S002_P044.wav,3,4\naudiomos2025-track1-S002_P044.wav,3,4\n",
            ["train_mos_list.txt:2:", "duplicate"],
        ),
        (
            "audiomos2025-track1-S002_P044.wav,3,4\naudiomos2025-track1-S001_P044.wav\n",
            ["train_mos_list.txt:2:", "line 1"],
        ),
        ("", ["train_mos_list.txt", "empty"]),
    ],
)
def test_musiceval_list_errors(musiceval_root: Path, content: str, parts: list[str]) -> None:
    write_text(musiceval_root / "sets" / "train_mos_list.txt", content)
    expect_error(lambda: load_musiceval(musiceval_root, "train"), *parts)


def test_musiceval_prompt_errors(musiceval_root: Path) -> None:
    write_text(musiceval_root / "prompt_info.txt", "id\ttext\nP044 no tab here\n")
    expect_error(lambda: load_musiceval(musiceval_root, "train"), "prompt_info.txt:2:", "tab")
    write_text(musiceval_root / "prompt_info.txt", "P044\tone\nP045\tx\nP044\ttwo\n")
    expect_error(lambda: load_musiceval(musiceval_root, "train"), "prompt_info.txt:3:", "P044")
    expect_error(lambda: load_musiceval(musiceval_root, "eval"), "eval_mos_list.txt", "not found")


# ------------------------------------------------------------------------------- tables


MUSHRA_MAP = ColumnMap(
    path="path",
    targets={"mushra": "mean_score"},
    system="system",
    ratings={"mushra": "ratings"},
    ranges={"mushra": (0, 100)},
)


def test_mushra_layout_table(tiny_mushra: Path) -> None:
    """The real table's columns and layout (ref.wav in every stim_XX folder), always here."""
    m = load_table(tiny_mushra, MUSHRA_MAP)
    rows = read_table(tiny_mushra)
    assert len(m) == 12 and [it.id for it in m.items] == [r["path"] for r in rows]
    assert sum(it.id.endswith("/ref.wav") for it in m.items) == 4  # the same name, four clips
    assert {it.system for it in m.items} == {system for system, _ in TINY_SYSTEMS.values()}
    assert all(it.path.is_file() for it in m.items) and m.targets == [Target("mushra", 0, 100)]
    first = m.items[0]
    assert first.id == "audio/stim_01/ref.wav" and first.path == tiny_mushra.parent / "audio" / "stim_01" / "ref.wav"
    assert first.targets["mushra"] == pytest.approx(float(rows[0]["mean_score"]))
    assert first.targets["mushra"] == pytest.approx(np.mean(first.ratings["mushra"]), abs=1e-3)
    spec = parse_column_spec("path=path,target:mushra=mean_score,system=system,ratings:mushra=ratings,range:mushra=0:100")
    assert spec == MUSHRA_MAP
    groups = load_table_groups(tiny_mushra, "signal")
    assert len(groups) == 12 and len(set(groups.values())) == 4
    assert groups["audio/stim_02/codec_a.wav"] == rows[4]["signal"]
    assert open_ratings(tiny_mushra, spec).items[3].id == "audio/stim_02/ref.wav"


@needs_real_mushra
def test_mushra_ratings_table() -> None:
    assert REAL_MUSHRA is not None
    table = REAL_MUSHRA / "ratings.csv"
    m = load_table(table, MUSHRA_MAP)
    assert len(m) == 128
    assert len({it.system for it in m.items}) == 8
    assert all(it.path.is_file() for it in m.items)
    assert m.targets == [Target("mushra", 0, 100)]
    first = m.items[0]
    assert first.id == "audio/stim_01/prop_13.wav" and first.system == "Proposed 1.38"
    assert first.targets["mushra"] == pytest.approx(55.545)
    assert len(first.ratings["mushra"]) == 11
    assert first.targets["mushra"] == pytest.approx(np.mean(first.ratings["mushra"]), abs=1e-3)
    groups = load_table_groups(table, "signal")
    assert len(groups) == 128 and len(set(groups.values())) == 16
    assert groups["audio/stim_01/prop_13.wav"] == "VCTK_p229_293"
    assert sum(it.id.endswith("/ref.wav") for it in m.items) == 16


def test_parse_column_spec() -> None:
    cmap = parse_column_spec(" path=file , id=key,caption=text,target=mos,range:mos=-1.5:2.5 ")
    assert cmap.path == "file" and cmap.id == "key" and cmap.caption == "text"
    assert cmap.targets == {"mos": "mos"} and cmap.ranges == {"mos": (-1.5, 2.5)}
    for bad, part in [
        ("path", "not key=column"),
        ("colour=x", "unknown key 'colour'"),
        ("target:a=x,range:a=5:1", "LOW < HIGH"),
        ("target:a=x,range:a=0-1", "LOW:HIGH"),
        ("range:b=0:1", "'b'"),
        ("path=a,path=b", "twice"),
    ]:
        expect_error(lambda bad=bad: parse_column_spec(bad), part)


def test_jsonl_table_inferred_range(tmp_path: Path) -> None:
    write_wav(tmp_path / "a.wav")
    write_wav(tmp_path / "sub" / "b.wav")
    lines = [
        {"file": "a.wav", "mos": 3.5, "prompt": "a caption", "votes": [3, 4]},
        {"file": "sub/b.wav", "mos": 1.25, "prompt": "", "votes": None},
        {"file": str(tmp_path / "a.wav"), "mos": None, "id": "abs"},
    ]
    table = write_text(tmp_path / "t.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n\n")
    cmap = ColumnMap(path="file", targets={"mos": "mos"}, caption="prompt", ratings={"mos": "votes"})
    m = load_table(table, cmap)
    assert m.targets == [Target("mos", 1.25, 3.5)]
    assert [it.id for it in m.items] == ["a.wav", "sub/b.wav", str(tmp_path / "a.wav")]
    assert m.items[0].caption == "a caption" and m.items[1].caption is None
    assert m.items[0].ratings == {"mos": (3.0, 4.0)} and m.items[1].ratings == {}
    assert m.items[2].targets == {}
    assert m.items[1].path == tmp_path / "sub" / "b.wav"


def test_table_errors(tmp_path: Path) -> None:
    write_wav(tmp_path / "a.wav")
    cmap = ColumnMap(targets={"mos": "mos"})
    cases = [
        ("t.csv", "file,mos\na.wav,3\n", ["t.csv:1:", "missing column 'path'"]),
        ("t.csv", "path,mos\na.wav,3\na.wav,4\n", ["t.csv:3:", "duplicate id 'a.wav'"]),
        ("t.csv", "path,mos\nmissing.wav,3\n", ["t.csv:2:", "missing.wav", "not found"]),
        ("t.csv", "path,mos\na.wav,three\n", ["t.csv:2:", "mos 'three'"]),
        ("t.csv", "path,mos\na.wav,\n", ["t.csv", "no values"]),
        ("t.jsonl", '{"path": "a.wav", "mos": 1}\n[1, 2]\n', ["t.jsonl:2:", "JSON object"]),
        ("t.jsonl", '{"path": "a.wav", "mos": 1}\n{"path": \n', ["t.jsonl:2:", "invalid JSON"]),
        ("t.jsonl", '{"path": "a.wav"}\n', ["t.jsonl", "'mos'"]),
        ("t.tsv", "path\ta.wav\n", ["t.tsv", ".csv or .jsonl"]),
    ]
    for name, content, parts in cases:
        file = write_text(tmp_path / name, content)
        expect_error(lambda file=file: load_table(file, cmap), *parts)
    ranged = ColumnMap(targets={"mos": "mos"}, ratings={"mos": "r"}, ranges={"mos": (1, 5)})
    file = write_text(tmp_path / "r.csv", 'path,mos,r\na.wav,3,"[1, 9]"\n')
    expect_error(lambda: load_table(file, ranged), "r.csv:2:", "outside 1..5")
    file = write_text(tmp_path / "r.csv", 'path,mos,r\na.wav,3,"1 2 3"\n')
    expect_error(lambda: load_table(file, ranged), "r.csv:2:", "JSON list")
    file = write_text(tmp_path / "r.csv", "path,mos,r\na.wav,7,\n")
    expect_error(lambda: load_table(file, ranged), "r.csv:2:", "outside 1..5")


# ------------------------------------------------------------------------------- folder


def test_load_folder(tmp_path: Path) -> None:
    write_wav(tmp_path / "b.wav")
    write_wav(tmp_path / "a" / "z.FLAC")
    write_wav(tmp_path / "a" / "y.wav")
    sf.write(tmp_path / "c.ogg", np.zeros(1600, np.float32), 16000, format="OGG", subtype="VORBIS")
    write_text(tmp_path / "notes.txt", "x")
    write_text(tmp_path / "._b.wav", "mac resource fork")
    m = load_folder(tmp_path)
    assert [it.id for it in m.items] == ["a/y.wav", "a/z.FLAC", "b.wav", "c.ogg"]
    assert m.targets == [] and all(it.targets == {} for it in m.items)
    assert m.items[1].path == tmp_path / "a" / "z.FLAC"
    (tmp_path / "empty").mkdir()
    expect_error(lambda: load_folder(tmp_path / "empty"), "empty", "no audio files")
    expect_error(lambda: load_folder(tmp_path / "nope"), "nope", "not a directory")


# ------------------------------------------------------------------------------- captions


def test_captions_xacle_csv(xacle_parent: Path) -> None:
    caps = load_captions(_meta(xacle_parent) / "train_average.csv")
    assert isinstance(caps, Captions) and len(caps) == 3
    assert caps.lookup("00001.wav") == "A dog barks, then a car passes"
    assert caps.lookup("00001") == "A dog barks, then a car passes"
    assert caps.lookup("wav/train/00002.wav") == 'Someone says "hello" twice'
    assert caps.lookup("99999.wav") is None


def test_captions_custom_columns_and_duplicates(tmp_path: Path) -> None:
    file = write_text(
        tmp_path / "c.csv",
        "clip,desc,other\nx1,first,1\nx2,second,2\nx1,first,3\nx3,one,4\nx3,two,5\n",
    )
    caps = load_captions(file, id_column="clip", text_column="desc")
    assert caps.lookup("x1.wav") == "first" and caps.lookup("x2") == "second"
    assert caps.duplicates == {"x3"} and caps.lookup("x3") is None and caps.is_duplicate("x3.wav")
    assert not caps.is_duplicate("x1")
    expect_error(lambda: load_captions(file), "c.csv:1:", "wav_file_name")
    expect_error(lambda: load_captions(file, id_column="clip", text_column="text"), "c.csv:1:", "'text'")


def test_captions_prompt_info(musiceval_root: Path) -> None:
    caps = load_captions(musiceval_root / "prompt_info.txt")
    assert "id" not in caps.texts
    assert caps.lookup("audiomos2025-track1-S002_P044.wav") == "A calm piano piece, slow tempo"
    assert caps.lookup("P045") == "Upbeat electronic dance track"
    demo = load_captions(musiceval_root / "demo_prompt_info.txt")
    assert demo.lookup("audiomos2025-track1-S001_P044") == "Demo prompt for S001"
    assert demo.lookup("audiomos2025-track1-S002_P044.wav") is None


def test_captions_malformed(tmp_path: Path) -> None:
    ragged = write_text(tmp_path / "r.csv", "wav_file_name,text\na.wav,x\nb.wav,y,z\n")
    expect_error(lambda: load_captions(ragged), "r.csv:3:", "expected 2 fields")
    binary = tmp_path / "b.csv"
    binary.write_bytes(b"wav_file_name,text\na.wav,ok\nb.wav,\xff\xfe\n")
    expect_error(lambda: load_captions(binary), "b.csv:3:", "UTF-8")
    notab = write_text(tmp_path / "p.txt", "P001\tfine\nP002 broken\n")
    expect_error(lambda: load_captions(notab), "p.txt:2:", "tab")
    expect_error(lambda: load_captions(tmp_path / "missing.csv"), "missing.csv", "not found")


# ------------------------------------------------------------------------------- detect


def test_open_dataset_trees(xacle_parent: Path, musiceval_root: Path, tmp_path: Path) -> None:
    xacle = open_dataset(xacle_parent)
    assert set(xacle) == {"train", "validation"} and len(xacle["train"]) == 3
    music = open_dataset(musiceval_root)
    assert set(music) == {"train", "dev"} and len(music["dev"]) == 1
    folder = open_dataset(xacle_parent / "XACLE_dataset" / "wav")
    assert set(folder) == {"all"} and len(folder["all"]) == 6
    (tmp_path / "nothing").mkdir()
    write_text(tmp_path / "nothing" / "readme.md", "hi")
    expect_error(lambda: open_dataset(tmp_path / "nothing"), "nothing", "not a dataset", "XACLE", "MusicEval")
    expect_error(lambda: open_dataset(tmp_path / "absent"), "absent")


def test_open_dataset_files(xacle_parent: Path, tmp_path: Path) -> None:
    split_csv = open_dataset(_meta(xacle_parent) / "train_average.csv")
    assert set(split_csv) == {"all"}
    m = split_csv["all"]
    assert len(m) == 3 and m.items[0].path.is_file() and m.items[0].ratings == {"score": (7.0, 8.0)}
    write_wav(tmp_path / "a.wav")
    generic = write_text(tmp_path / "g.csv", "file,mos\na.wav,3\n")
    expect_error(lambda: open_dataset(generic), "g.csv", "column mapping", "file, mos")
    got = open_dataset(generic, ColumnMap(path="file", targets={"mos": "mos"}))
    assert got["all"].items[0].targets == {"mos": 3.0}
    jsonl = write_text(tmp_path / "g.jsonl", '{"file": "a.wav"}\n')
    expect_error(lambda: open_dataset(jsonl), "g.jsonl", "column mapping")


def test_open_ratings(xacle_parent: Path, musiceval_root: Path, tmp_path: Path) -> None:
    gt_dir = tmp_path / "gt"
    xacle_csv = write_text(gt_dir / "validation_average.csv", XACLE_VALID)
    m = open_ratings(xacle_csv)
    assert [it.targets for it in m.items] == [{"score": 4.0}, {"score": 0.0}]
    me_list = write_text(gt_dir / "sets" / "answer_mos_list.txt", "audiomos2025-track1-S002_P044,3,4\n")
    me = open_ratings(me_list)
    assert me.items[0].id == "audiomos2025-track1-S002_P044.wav"
    assert me.items[0].targets == {"overall": 3.0, "textual": 4.0}
    generic = write_text(gt_dir / "g.csv", "path,mos\nnot_here.wav,3\n")
    assert open_ratings(generic, parse_column_spec("path=path,target=mos")).items[0].targets == {"mos": 3.0}
    unrated = write_text(gt_dir / "test.csv", "wav_file_name,text\n00006.wav,Wind\n")
    expect_error(lambda: open_ratings(unrated), "test.csv", "no scores")
    expect_error(lambda: open_ratings(gt_dir), "gt", "directory")
    expect_error(lambda: open_ratings(generic), "g.csv", "column mapping")


def test_data_modules_are_torch_free() -> None:
    for name in ["mos.audio", "mos.data.xacle", "mos.data.musiceval", "mos.data.table",
                 "mos.data.folder", "mos.data.captions", "mos.data.detect"]:
        module = sys.modules[name]
        assert (module.__doc__ or "").strip().count("\n") == 0
        source = Path(module.__file__).read_text()
        assert "import torch" not in source and "from torch" not in source


# ------------------------------------------------------------------------------- one decision


def test_identify_decides_every_kind_once(xacle_parent: Path, musiceval_root: Path, tmp_path: Path) -> None:
    write_wav(tmp_path / "clips" / "a.wav")
    cases = {
        xacle_parent: Kind.XACLE_TREE,
        musiceval_root: Kind.MUSICEVAL_TREE,
        tmp_path / "clips": Kind.FOLDER,
        _meta(xacle_parent) / "train_average.csv": Kind.XACLE_CSV,
        write_text(tmp_path / "answers.csv", "wav_file_name,pred_score\na.wav,1\n"): Kind.XACLE_CSV,
        write_text(tmp_path / "g.csv", "file,mos\na.wav,3\n"): Kind.TABLE,
        write_text(tmp_path / "g.jsonl", '{"file": "a.wav"}\n'): Kind.TABLE,
        musiceval_root / "sets" / "test_list.txt": Kind.MUSICEVAL_LIST,
        write_text(tmp_path / "gt" / "answer_mos_list.txt", "x,3,4\n"): Kind.MUSICEVAL_LIST,
        write_text(tmp_path / "my_list.txt", "clips/a.wav\n"): Kind.LIST,  # not in sets/: paths
        write_text(tmp_path / "files.lst", "clips/a.wav\n"): Kind.LIST,
        tmp_path / "clips" / "a.wav": Kind.AUDIO,
        write_text(tmp_path / "song.m4a", "not decodable here"): Kind.AUDIO,
    }
    for path, kind in cases.items():
        assert identify(path) is kind, path
    assert identify(tmp_path / "g.csv", ColumnMap(path="file")) is Kind.TABLE
    assert identify(_meta(xacle_parent) / "train_average.csv", ColumnMap(path="wav_file_name")) is Kind.TABLE
    expect_error(lambda: identify(tmp_path / "my_list.txt", ColumnMap()), "my_list.txt", "--columns", "list file")
    expect_error(lambda: identify(tmp_path / "absent.wav"), "absent.wav", "no such file")
    # train, eval and score read a list of paths the same way: never as a MusicEval list
    expect_error(lambda: open_dataset(tmp_path / "my_list.txt"), "my_list.txt", "not a dataset")
    assert [it.path for it in open_inputs(tmp_path / "my_list.txt").manifest.items] == [tmp_path / "clips" / "a.wav"]
    expect_error(lambda: open_ratings(tmp_path / "my_list.txt"), "my_list.txt", "expected a ratings file")


def test_open_inputs_trees_score_the_test_split_or_the_one_chosen(xacle_parent: Path, musiceval_root: Path) -> None:
    default = open_inputs(xacle_parent)
    assert [it.id for it in default.manifest.items] == ["00006.wav"]
    assert default.description.startswith("XACLE tree test split at") and "--split" in default.description
    chosen = open_inputs(xacle_parent, split="val")
    assert [it.id for it in chosen.manifest.items] == ["00004.wav", "00005.wav"]
    expect_error(lambda: open_inputs(xacle_parent, split="eval"), "no eval split", "train, validation, test")
    music = open_inputs(musiceval_root)
    assert [it.id for it in music.manifest.items] == ["audiomos2025-track1-S004_P045.wav"]
    assert [it.caption for it in open_inputs(musiceval_root, split="validation").manifest.items] == [
        "Upbeat electronic dance track"]
    assert open_inputs(musiceval_root, split="dev", captions=False).manifest.items[0].caption is None
    (musiceval_root / "sets" / "test_list.txt").unlink()
    both = open_inputs(musiceval_root)
    assert len(both.manifest.items) == 4 and "train+dev" in both.description and "no test split" in both.description
    expect_error(lambda: open_inputs(musiceval_root / "sets" / "dev_mos_list.txt", split="dev"), "--split", "MusicEval list")


def test_folder_scan_lists_what_it_leaves_out(tmp_path: Path) -> None:
    write_wav(tmp_path / "a.wav")
    write_wav(tmp_path / "sub" / "b.flac")
    for name in ("x.m4a", "sub/y.M4A", "sub/z.m4a", "notes.txt", ".DS_Store", "README"):
        write_text(tmp_path / name, "not audio")
    scan = scan_folder(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in scan.files] == ["a.wav", "sub/b.flac"]
    assert [(s.kind, s.count, s.example) for s in scan.skipped] == [
        (".m4a", 3, "sub/y.M4A"), (".txt", 1, "notes.txt"), ("no extension", 1, "README"), ("hidden", 1, ".DS_Store")]
    assert "not a format the installed libsndfile reads" in scan.skipped[0].reason
    only_m4a = tmp_path / "phone"
    write_text(only_m4a / "memo.m4a", "x")
    expect_error(lambda: open_inputs(only_m4a), "phone", "no audio files", "1 .m4a (e.g. memo.m4a)")


# ------------------------------------------------------------------------------- system_mos


def test_system_mos_file(musiceval_root: Path) -> None:
    assert find_system_mos(musiceval_root) is None
    folder = musiceval_root / "system_mos"
    write_text(folder / "system_mos_phase1.csv", "S001,3.5,4\nS002,2.25,1.5\n\n")
    write_text(folder / "system_mos_phase10.csv", "sysID,overall,textual\nS001,3,3\n")
    write_text(folder / "system_mos_notes.csv", "x")
    assert find_system_mos(musiceval_root) == folder / "system_mos_phase10.csv"
    assert load_system_mos(folder / "system_mos_phase1.csv") == {
        "S001": {"overall": 3.5, "textual": 4.0}, "S002": {"overall": 2.25, "textual": 1.5}}
    assert load_system_mos(folder / "system_mos_phase10.csv") == {"S001": {"overall": 3.0, "textual": 3.0}}
    for content, parts in [
        ("S001,3.5\n", ["phase1.csv:1:", "2 fields"]),
        ("S001,3,4\nS001,2,2\n", ["phase1.csv:2:", "duplicate system 'S001'", "line 1"]),
        ("S001,3,7\n", ["phase1.csv:1:", "outside 1..5"]),
        ("S001,3,4\nS002,x,4\n", ["phase1.csv:2:", "overall 'x'"]),
        ("", ["phase1.csv", "no system ratings"]),
    ]:
        write_text(folder / "system_mos_phase1.csv", content)
        expect_error(lambda: load_system_mos(folder / "system_mos_phase1.csv"), *parts)
    ratings = open_ratings(musiceval_root / "sets" / "dev_mos_list.txt")
    assert ratings.system_source == str(folder / "system_mos_phase10.csv")
    assert ratings.system_targets == {"S001": {"overall": 3.0, "textual": 3.0}}


# ------------------------------------------------------------------------------- caption keys


def test_captions_match_the_relative_path_first_and_a_file_name_only_when_unique(tmp_path: Path) -> None:
    file = write_text(tmp_path / "c.csv", "wav_file_name,text\n001.wav,by name\nb/002.wav,b two\n"
                                          "a/002.wav,a two\nwav/c/003.wav,deep three\n")
    caps = load_captions(file)
    ids = ["a/001.wav", "b/001.wav", "a/002.wav", "b/002.WAV", "c/003.wav", "d/004.wav"]
    found = caps.match(ids)
    assert [f.text for f in found] == [None, None, "a two", "b two", "deep three", None]
    for f in found[:2]:  # the same file name in two folders never silently shares a caption
        assert f.key == "001.wav" and "fits 2 inputs (a/001.wav, b/001.wav)" in (f.error or "")
    assert found[5].error is None and found[5].key is None
    assert caps.match(["a/001.wav", "c/005.wav"])[0].text == "by name"  # the one input with that name
    assert caps.match(["002.wav"])[0].error.startswith("ambiguous caption: '002.wav' fits 2 keys")  # type: ignore[union-attr]
    assert caps.lookup("001") == "by name" and caps.lookup("b/002") == "b two"
