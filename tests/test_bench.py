"""`mos bench`: behaviour only (keys, shapes, positive numbers, the table prints). Never a time."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
import typer
from rich.console import Console
from typer.testing import CliRunner

from mos.bench import BenchOptions, run_bench
from mos.bench.command import bench, parse_int_list
from mos.bench.stats import percentile, spread
from mos.bench.workload import caption, generate
from mos.errors import MosError

from fixtures_runtime import text_bundle  # noqa: F401 - a fixture

TINY = dict(channels=(16, 24), strides=(2, 2), hidden=32, attention_heads=2)


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight audio-only model, saved as a checkpoint and exported with an int8 variant."""
    import torch

    from mos.export import export_bundle
    from mos.model import ModelConfig, MosModel
    from mos.trainer.checkpoint import save_checkpoint

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("bench_run")
    model = MosModel(ModelConfig(text_encoder="none", **TINY))
    save_checkpoint(root / "checkpoints" / "best.pt", model,
                    {"data": "synthetic", "validation_metrics": {}, "epoch": 0, "train_config": {}})
    export_bundle(root, root / "bundle", opset=17, quantize="int8", verify=False, force=True)  # no data to judge int8
    return root / "bundle"


def _opts(bundle: Path, out: Path | None, **kw) -> BenchOptions:
    base = dict(bundle=bundle, out=out, quick=True, clips=8, clip_seconds=1.0, threads=[1], batch_sizes=[1, 4],
                peer=False, model_clips=6, latency_clips=4, progress=False)
    base.update(kw)
    return BenchOptions(**base)


def _absolute_paths(value, key: str = "") -> list[str]:
    """Every string in a report that is an absolute path of this machine (the command line as
    typed is the user's own and is left out)."""
    if isinstance(value, dict):
        return [p for k, v in value.items() if k != "command" for p in _absolute_paths(v, k)]
    if isinstance(value, list):
        return [p for v in value for p in _absolute_paths(v, key)]
    return [f"{key}: {value}"] if isinstance(value, str) and Path(value).is_absolute() else []


def _positive(spread_dict: dict) -> bool:
    return all(spread_dict[k] > 0 for k in ("median", "min", "max")) and spread_dict["min"] <= spread_dict["max"]


@pytest.mark.slow
def test_quick_bench_report(tiny_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "results" / "bench.json"
    buf = io.StringIO()
    report = run_bench(_opts(tiny_bundle, out, streams=[2]), Console(file=buf, width=160))

    saved = json.loads(out.read_text())
    assert saved["schema"] == report["schema"] == "mos.bench/1"
    for key in ("machine", "bundle", "workload", "settings", "end_to_end", "model_alone", "latency", "profile",
                "peer", "targets", "notes", "seconds"):
        assert key in saved, key
    m = saved["machine"]
    assert m["cores"] >= 1 and m["cpu"] and m["onnxruntime"] and m["numpy"]
    assert "CPUExecutionProvider" in m["onnxruntime_providers"]
    assert saved["workload"]["clips"] == 8 and saved["workload"]["kind"] == "generated"

    e2e = saved["end_to_end"]
    # one 1-thread run, and two concurrent 1-thread runs (mos score's default on 2 cores)
    assert {(r["variant"], r["streams"], r["batch_size"]) for r in e2e} == {
        (v, s, b) for v in ("fp32", "int8") for s in (1, 2) for b in (1, 4)}
    for r in e2e:
        assert r["threads"] == 1 and r["failed"] == 0 and r["provider"] == "CPUExecutionProvider"
        assert _positive(r["clips_per_s"]) and _positive(r["rtf"])

    ma = saved["model_alone"]
    names = {b["name"] for b in ma["backends"]}
    assert names == {"torch-eager", "ort-fp32", "ort-int8"}
    assert len(ma["rows"]) == 3 * 2  # backends x batch sizes at one thread count
    assert all(_positive(r["clips_per_s"]) for r in ma["rows"])
    assert {(r["backend"], r["batch_size"]) for r in ma["ratios"]} == {
        (b, s) for b in ("ort-fp32", "ort-int8") for s in (1, 4)}
    assert all(r["ratio"] > 0 for r in ma["ratios"])
    assert ma["max_abs_diff_vs_ort_fp32"]["torch-eager"] < 1e-3  # eager runs the bundle's own model

    assert [r["variant"] for r in saved["latency"]] == ["fp32", "int8"]
    for r in saved["latency"]:
        assert 0 < r["min_ms"] <= r["p50_ms"] <= r["p95_ms"] <= r["max_ms"] and r["clips"] == 4

    prof = saved["profile"][0]
    assert prof["variant"] == "fp32" and prof["clips"] == 6
    stages = prof["ms_per_clip"]
    assert stages["decode"] > 0 and any(k.startswith("audio model") for k in stages)
    assert "writing (csv row, flushed)" in stages
    assert saved["peer"] == {"skipped": "--no-peer"}
    figures = {t["figure"] for t in saved["targets"]}
    assert any("end to end fp32" in f for f in figures) and any("PyTorch eager" in f for f in figures)

    # a report may be committed: paths relative to the current directory, none of this machine
    assert _absolute_paths(saved) == []
    assert saved["bundle"]["checkpoint"].endswith("checkpoints/best.pt")
    assert Path(saved["bundle"]["checkpoint"]).resolve() == (tiny_bundle.parent / "checkpoints" / "best.pt").resolve()
    assert saved["workload"]["inputs"] == "generated in a temporary folder (removed after the run)"

    text = buf.getvalue()
    for title in ("End to end", "Model alone", "Latency", "Where a clip's time goes",
                  "Against the project's targets (docs/design.md)"):
        assert title in text
    assert "ort-int8" in text and "torch-eager" in text and f"wrote {out}" in text


def test_bench_on_a_user_folder_without_eager(tiny_bundle: Path, tmp_path: Path) -> None:
    folder = tmp_path / "my_audio"
    (folder / "sub").mkdir(parents=True)
    import numpy as np

    for k in range(5):
        sr = 16000 if k % 2 else 22050
        x = (np.random.default_rng(k).standard_normal((sr // 2, 2)) * 0.05).astype("float32")
        sf.write(folder / ("sub" if k > 2 else "") / f"f{k}.wav", x, sr)
    report = run_bench(_opts(tiny_bundle, None, data=folder, clips=4, eager=False, profile=False),
                       Console(file=io.StringIO()))
    assert report["workload"]["kind"] == "folder" and report["workload"]["clips"] == 4
    assert _absolute_paths(report) == [] and Path(report["workload"]["inputs"]).resolve() == folder.resolve()
    assert all(r["clips"] == 4 for r in report["end_to_end"])
    assert {b["name"] for b in report["model_alone"]["backends"]} == {"ort-fp32", "ort-int8"}
    assert report["model_alone"]["ratios"] == []
    assert "profile" not in report


@pytest.mark.slow
def test_memory_growth_in_fresh_processes(tiny_bundle: Path, tmp_path: Path) -> None:
    opts = _opts(tiny_bundle, None, quick=False, memory=True, memory_counts=(3, 9), memory_clip_seconds=0.2,
                 eager=False, profile=False, repeats=1, batch_sizes=[4], clips=4)
    report = run_bench(opts, Console(file=io.StringIO()))
    rows = report["memory"]["rows"]
    assert [r["files"] for r in rows] == [3, 9]
    for r in rows:
        assert r["scored"] == r["files"] and r["failed"] == 0 and r["peak_rss_mb"] > 0
    assert rows[0]["growth_mb_vs_first"] == 0.0
    assert any("peak RSS growth" in t["figure"] for t in report["targets"])


@pytest.mark.slow
def test_command_with_typer(tiny_bundle: Path, tmp_path: Path) -> None:
    app = typer.Typer(add_completion=False)
    app.command("bench")(bench)

    @app.callback()
    def _root() -> None:
        """test app"""

    out = tmp_path / "cli.json"
    args = ["bench", "--bundle", str(tiny_bundle), "--quick", "--clips", "4", "--threads", "1", "--batch-sizes", "2",
            "--no-peer", "--no-eager", "--no-profile", "--quiet", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "End to end" in result.output
    saved = json.loads(out.read_text())
    assert {r["batch_size"] for r in saved["end_to_end"]} == {2}

    bad = CliRunner().invoke(app, ["bench", "--bundle", str(tmp_path / "nope"), "--no-peer", "--out", str(out)])
    assert bad.exit_code == 2 and "error:" in bad.output
    bad = CliRunner().invoke(app, ["bench", "--bundle", str(tiny_bundle), "--threads", "0,x", "--out", str(out)])
    assert bad.exit_code == 2 and "--threads" in bad.output


@pytest.mark.slow
def test_a_second_peer_bundle_is_timed_and_scored_on_the_same_clips(tiny_bundle: Path, tmp_path: Path) -> None:
    """--peer-bundle (e.g. a `mos export --pretrained distillmos` bundle; any audio-only bundle
    here): timed one clip at a time beside DNSMOS, with its first target's mean score."""
    buf = io.StringIO()
    report = run_bench(_opts(tiny_bundle, None, peer_bundle=tiny_bundle, peer_clips=3, profile=False, eager=False),
                       Console(file=buf, width=200))
    peer = report["peer_bundle"]
    assert peer["clips"] == 3 and peer["clips_per_s"] > 0 and _positive(peer["ms_per_clip"])
    assert peer["target"] == report["bundle"]["targets"][0] and isinstance(peer["score_mean"], float)
    assert "(bundle bundle, ONNX Runtime" in peer["name"] and f"clips/s on 3 clips" in buf.getvalue()


def test_a_peer_bundle_that_reads_captions_is_refused(text_bundle) -> None:
    with pytest.raises(MosError, match="--peer-bundle .*reads captions; a peer bundle must be audio-only"):
        run_bench(_opts(text_bundle.path, None, peer_bundle=text_bundle.path), Console(file=io.StringIO()))


def test_mos_bench_does_not_import_torch() -> None:
    code = ("import sys, mos.bench, mos.bench.command, mos.bench.run, mos.bench.profile, mos.bench.memory, "
            "mos.bench.peer, mos.bench.backends; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_helpers() -> None:
    assert parse_int_list("1,8,32", "--x") == [1, 8, 32]
    assert parse_int_list("1-3", "--x") == [1, 2, 3]
    assert parse_int_list(None, "--x") is None
    with pytest.raises(MosError):
        parse_int_list("0", "--x")
    s = spread([3.0, 1.0, 2.0])
    assert (s["median"], s["min"], s["max"]) == (2.0, 1.0, 3.0)
    assert percentile([1, 2, 3, 4, 5], 50) == 3 and percentile([1.0, 2.0], 100) == 2.0
    caps = [caption(k) for k in range(2000)]
    assert len(set(caps)) == 2000 and all(10 <= len(c.split()) <= 16 for c in caps)


def test_workload_is_deterministic(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", 3, 0.5, 16000, seed=1)
    b = generate(tmp_path / "b", 3, 0.5, 16000, seed=1)
    for fa, fb in zip(a.files, b.files):
        assert fa.read_bytes() == fb.read_bytes()
        assert sf.info(fa).samplerate == 16000 and sf.info(fa).channels == 1
    assert a.captions == b.captions and len(set(a.captions.values())) == 3
    linked = generate(tmp_path / "c", 5, 0.2, 16000, distinct_audio=2)
    assert linked.files[4].read_bytes() == linked.files[0].read_bytes()
    assert len(linked.files) == 5 and len(set(linked.captions.values())) == 5


def test_bench_targets_are_the_ones_docs_design_states() -> None:
    """`mos bench` checks runs against TARGETS; docs/design.md is where users read them."""
    from mos.bench.run import TARGETS

    design = (Path(__file__).resolve().parents[1] / "docs" / "design.md").read_text(encoding="utf-8")
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in design.splitlines()
            if line.startswith("| ") and line.count("|") >= 3}
    assert rows["end to end fp32, 2-core CPU"] == f"at least {TARGETS['e2e_fp32_clips_per_s']:g} clips/s"
    assert rows["end to end int8, 2-core CPU"] == f"at least {TARGETS['e2e_int8_clips_per_s']:g} clips/s"
    assert rows["ONNX Runtime fp32 vs PyTorch eager, same model, model alone"] == f"at least {TARGETS['ort_vs_eager']:g}x"
    assert rows["end to end on one H100"] == f"at least {TARGETS['e2e_gpu_clips_per_s']:,.0f} clips/s"
    dnsmos = next(v for k, v in rows.items() if k.startswith("end to end fp32 vs DNSMOS"))
    assert dnsmos == f"at least {TARGETS['vs_dnsmos']:g}x"
