"""`mos score --ray`: a local Ray with 2 CPUs scores a folder as local `mos score` does (same rows,
scores within 1e-5), resumes a partial output, turns a broken file into an error row, and exits
with the local codes. Ray starts once for the module; the actor plan is checked without Ray."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fixtures_runtime import (  # noqa: F401
    audio_bundle,
    caption_for,
    make_folder,
    read_csv_dicts,
    spread_bundle,
    text_bundle,
    write_captions,
    write_wav,
)
from functools import partial

import numpy as np

from mos.audio import read_audio
from mos.bundle import load_bundle
from mos.errors import MosError
from mos.runtime import EngineOptions, ScoreEngine
from mos.runtime.engine import finish_raw
from mos.runtime.inputs import Job
from mos.runtime.ray_score import RayOptions, ScoreActor, _decode_rows, fold_rows, import_ray, plan_actors
from mos.runtime.scorer import ScoreOptions, run_score
from mos.runtime.writers import meta_path

N_CLIPS = 48
LONG = "long_021s.wav"  # three 10 s windows: the per-window rows are folded into one file row
BROKEN = "broken.wav"
TOLERANCE = 1e-5  # measured: the CSV's 6 decimals agree exactly (batches differ, clips score the same)


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray with 2 CPUs for the module (start-up takes seconds)."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """48 clips of 0.4-1.2 s, one of 21 s, one broken file, and captions for all of them."""
    root = tmp_path_factory.mktemp("ray-clips")
    folder, _ = make_folder(root, N_CLIPS, seconds=0.8)
    write_wav(folder / LONG, 21.0, seed=99)
    (folder / BROKEN).write_bytes(b"RIFF\x24\x00\x00\x00WAVEnot really audio")
    rows = [(f"clip_{i:03d}.wav", caption_for(i % 7)) for i in range(N_CLIPS)]  # 7 distinct captions
    rows += [(LONG, caption_for(1)), (BROKEN, caption_for(2))]
    return folder, write_captions(root / "captions.csv", rows)


def _score(folder: Path, captions: Path | None, bundle: Path, out: Path, ray: bool, **kw):
    opts = ScoreOptions(inputs=folder, captions=captions, bundle=bundle, out=out, device="cpu", progress=False,
                        threads=0 if ray else 1, ray=RayOptions(actors=1, cpus_per_actor=1) if ray else None, **kw)
    return run_score(opts)


def _by_id(path: Path) -> dict[str, dict[str, str]]:
    rows = read_csv_dicts(path)
    assert len(rows) == len({r["id"] for r in rows}), "an id written twice"
    return {r["id"]: r for r in rows}


def _assert_same_rows(ray_rows: dict, local_rows: dict, targets: list[str]) -> None:
    assert set(ray_rows) == set(local_rows)
    for key, local in local_rows.items():
        row = ray_rows[key]
        fields = ("path", "caption", "status", "duration", "error")
        assert [row[f] for f in fields] == [local[f] for f in fields], key
        for t in targets:
            if local["status"] == "ok":
                assert abs(float(row[t]) - float(local[t])) <= TOLERANCE, (key, t, row[t], local[t])
            else:
                assert row[t] == local[t] == ""


@pytest.fixture(scope="module")
def local_rows(clips, text_bundle, tmp_path_factory) -> dict[str, dict[str, str]]:  # noqa: F811
    folder, captions = clips
    out = tmp_path_factory.mktemp("ray-local") / "local.csv"
    summary = _score(folder, captions, text_bundle.path, out, ray=False)
    assert summary.exit_code == 3 and summary.failed == 1
    return _by_id(out)


@pytest.mark.ray
@pytest.mark.slow
def test_ray_rows_equal_local_rows(ray_local, clips, text_bundle, local_rows, tmp_path: Path) -> None:  # noqa: F811
    folder, captions = clips
    out = tmp_path / "ray.csv"
    summary = _score(folder, captions, text_bundle.path, out, ray=True)
    assert (summary.scored, summary.failed, summary.exit_code) == (N_CLIPS + 1, 1, 3)
    assert summary.provider == "CPUExecutionProvider"
    rows = _by_id(out)
    _assert_same_rows(rows, local_rows, text_bundle.targets)
    assert float(rows[LONG]["duration"]) == pytest.approx(21.0, abs=1e-3)
    broken = rows[BROKEN]
    assert broken["status"] == "error" and BROKEN in broken["error"] and "\n" not in broken["error"]


@pytest.mark.ray
@pytest.mark.slow
def test_ray_resumes_a_partial_output(ray_local, clips, text_bundle, local_rows, tmp_path: Path) -> None:  # noqa: F811
    folder, captions = clips
    out = tmp_path / "partial.csv"
    _score(folder, captions, text_bundle.path, out, ray=True)
    lines = out.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines[1:] if not line.startswith(BROKEN)][:20]
    out.write_text(lines[0] + "".join(kept) + "clip_0", encoding="utf-8")  # 20 rows and a torn line
    assert meta_path(out).is_file()
    summary = _score(folder, captions, text_bundle.path, out, ray=True, resume=True)
    assert summary.skipped == 20 and summary.scored + summary.failed == N_CLIPS + 2 - 20
    _assert_same_rows(_by_id(out), local_rows, text_bundle.targets)


@pytest.mark.ray
@pytest.mark.slow
def test_ray_audio_only_bundle_writes_the_xacle_file(ray_local, clips, audio_bundle, tmp_path: Path) -> None:  # noqa: F811
    folder, _ = clips
    local = _score(folder, None, audio_bundle.path, tmp_path / "local" / "submission.csv", ray=False, format="xacle")
    ray = _score(folder, None, audio_bundle.path, tmp_path / "ray" / "submission.csv", ray=True, format="xacle")
    assert local.exit_code == ray.exit_code == 3
    _assert_same_rows(_by_id(ray.out), _by_id(local.out), audio_bundle.targets)
    local_file = read_csv_dicts(local.challenge)
    ray_file = read_csv_dicts(ray.challenge)
    assert [r["wav_file_name"] for r in ray_file] == [r["wav_file_name"] for r in local_file]  # input order
    for a, b in zip(ray_file, local_file):
        assert abs(float(a["pred_score"]) - float(b["pred_score"])) <= TOLERANCE


@pytest.mark.ray
@pytest.mark.slow
def test_ray_spreads_and_quantiles_equal_local(ray_local, clips, spread_bundle, tmp_path: Path) -> None:  # noqa: F811
    """A distribution bundle: the long clip's three windows mix into one spread on the driver as
    they do locally."""
    folder, _ = clips
    columns = ["score", "score_std", "score_q10", "score_q90"]
    local = _score(folder, None, spread_bundle.path, tmp_path / "local.csv", ray=False, quantiles=(0.1, 0.9))
    remote = _score(folder, None, spread_bundle.path, tmp_path / "ray.csv", ray=True, quantiles=(0.1, 0.9))
    assert (local.scored, remote.scored) == (N_CLIPS + 1, N_CLIPS + 1)
    ray_rows, local_rows = _by_id(tmp_path / "ray.csv"), _by_id(tmp_path / "local.csv")
    assert list(next(iter(local_rows.values())))[3:7] == columns
    _assert_same_rows(ray_rows, local_rows, columns)
    assert float(local_rows[LONG]["score_std"]) > 0


@pytest.mark.slow
def test_cli_exit_codes_as_locally(ray_local, clips, text_bundle, tmp_path: Path,  # noqa: F811
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from mos.cli import app

    folder, captions = clips
    good = tmp_path / "good"
    for name in ("clip_000.wav", "clip_001.wav", "clip_002.wav"):
        (good / name).parent.mkdir(exist_ok=True)
        (good / name).write_bytes((folder / name).read_bytes())
    base = ["score", "--captions", str(captions), "--bundle", str(text_bundle.path), "--quiet", "--ray"]
    runner = CliRunner()
    ok = runner.invoke(app, [*base, str(good), "--out", str(tmp_path / "good.csv")])
    assert ok.exit_code == 0, ok.output
    assert "ray: the running Ray; 1 actor(s) x 1 CPU" in ok.output and "scored 3, failed 0" in ok.output
    assert "captions: 3 distinct encoded" in ok.output

    monkeypatch.chdir(folder.parent)  # a relative input: Ray's workers read it from another working directory
    failed = runner.invoke(app, [*base, folder.name, "--out", str(tmp_path / "all.csv")])
    assert failed.exit_code == 3, failed.output
    assert f"scored {N_CLIPS + 1}, failed 1" in failed.output
    broken = _by_id(tmp_path / "all.csv")[BROKEN]
    assert broken["path"] == f"{folder.name}/{BROKEN}" and broken["error"].startswith(f"{folder.name}/{BROKEN}: ")

    greedy = runner.invoke(app, [*base, str(good), "--ray-actors", "2", "--out", str(tmp_path / "x.csv")])
    assert greedy.exit_code == 2 and "read tasks need at least one" in greedy.output
    assert not (tmp_path / "x.csv").exists()
    threads = runner.invoke(app, [*base, str(good), "--threads", "2", "--out", str(tmp_path / "y.csv")])
    assert threads.exit_code == 2 and "--ray-cpus-per-actor" in threads.output
    alone = runner.invoke(app, [*base[:-1], str(good), "--ray-actors", "1", "--out", str(tmp_path / "z.csv")])
    assert alone.exit_code == 2 and "add --ray" in alone.output


def test_actor_plan_leaves_a_cpu_for_the_reads() -> None:
    assert (plan_actors(2, 0, "auto", RayOptions()).actors, plan_actors(2, 0, "auto", RayOptions()).num_cpus) == (1, 1)
    assert plan_actors(16, 0, "cpu", RayOptions()).actors == 12
    assert plan_actors(16, 0, "cpu", RayOptions(cpus_per_actor=4)).actors == 3
    gpu = plan_actors(16, 2, "auto", RayOptions(cpus_per_actor=2))
    assert (gpu.actors, gpu.num_gpus, gpu.num_cpus, gpu.device) == (2, 1, 2, "cuda")
    assert plan_actors(16, 2, "cpu", RayOptions()).num_gpus == 0
    with pytest.raises(MosError, match="read tasks need at least one"):
        plan_actors(2, 0, "cpu", RayOptions(actors=2))
    with pytest.raises(MosError, match="read tasks need at least one"):
        plan_actors(1, 0, "cpu", RayOptions())
    with pytest.raises(MosError, match="no GPU"):
        plan_actors(8, 0, "cuda", RayOptions())
    with pytest.raises(MosError, match="one per actor"):
        plan_actors(8, 1, "cuda", RayOptions(actors=2))


def test_without_ray_installed_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as where it is absent
    with pytest.raises(MosError, match=r"mos-toolkit\[ray\]"):
        import_ray()


def test_the_plain_runtime_does_not_import_ray() -> None:
    code = ("import sys, mos.cli, mos.runtime, mos.runtime.command, mos.runtime.scorer; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'ray' or m == 'mos.runtime.ray_score'))")
    probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert probe.returncode == 0 and probe.stdout.strip() == "[]", probe.stderr


def _batch(rows: list[dict]) -> dict[str, np.ndarray]:
    """Rows as Ray Data hands a batch to an actor (numpy format: one array per column)."""
    batch = {key: np.array([r[key] for r in rows]) for key in ("index", "part", "final", "path", "caption", "error")}
    batch["wave"] = np.empty(len(rows), dtype=object)
    batch["wave"][:] = [r["wave"] for r in rows]
    return batch


@pytest.mark.slow
def test_rows_delivered_twice_by_retried_tasks_are_counted_once(clips, audio_bundle) -> None:  # noqa: F811
    """Real read-task rows scored by a real ScoreActor, then delivered as a retried Ray task
    delivers them: some batches again, before and after the file they belong to is complete.
    Each file comes out once, with the scores of the run without repeats (the 21 s file's three
    windows each weighed once, as the local engine weighs them)."""
    folder, _ = clips
    names = [LONG, "clip_000.wav", "clip_001.wav", BROKEN]
    jobs = [Job(id=name, path=folder / name) for name in names]
    bundle = load_bundle(audio_bundle.path)
    rows = [row for i, job in enumerate(jobs)
            for row in _decode_rows({"index": i, "path": str(job.path), "source": str(job.path), "caption": "",
                                     "error": ""}, bundle.sample_rate, bundle.window_seconds)]
    long_rows = [r for r in rows if r["index"] == 0]
    assert [(r["part"], r["final"]) for r in long_rows] == [(0, False), (1, False), (2, True)]
    actor = ScoreActor(str(audio_bundle.path), EngineOptions(device="cpu", threads=1))
    a = actor(_batch([long_rows[0], rows[3]]))  # the long file's first window, clip_000
    b = actor(_batch([long_rows[1], rows[4]]))  # its second window, clip_001
    c = actor(_batch([long_rows[2], rows[5]]))  # its last window, the broken file's error row
    finish = partial(finish_raw, bundle, ())

    def fold(batches: list[dict]) -> list[tuple[int, object]]:
        return list(fold_rows(batches, jobs, bundle.sample_rate, finish))

    once = fold([a, b, c])
    twice = fold([a, a, b, a, b, c, c, b, a])
    assert sorted(i for i, _ in once) == [0, 1, 2, 3]
    assert [i for i, _ in twice] == [i for i, _ in once]  # each file once, in the same order
    for (_, got), (_, want) in zip(twice, once):
        assert (got.job, got.error, got.duration) == (want.job, want.error, want.duration)
        if want.error is None:
            np.testing.assert_array_equal(got.scores, want.scores)
    results = {i: r for i, r in twice}
    assert results[3].error is not None and BROKEN in results[3].error
    assert results[0].duration == pytest.approx(21.0, abs=1e-3)
    engine = ScoreEngine.load(audio_bundle.path, EngineOptions(device="cpu", threads=1))
    local = engine.score_arrays([read_audio(folder / name, bundle.sample_rate) for name in names[:3]], [None] * 3)
    for i in range(3):
        np.testing.assert_allclose(results[i].scores, local[i, :len(bundle.targets)], atol=1e-5)
