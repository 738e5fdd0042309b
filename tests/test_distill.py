"""`mos distill` on fabricated data: a tiny trained teacher (exported), a tiny student. The
teacher's labels are cached and reused, a student trained on teacher labels alone tracks the
teacher on held-out clips, resume works, the student's bundle scores without torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from scipy.stats import spearmanr  # noqa: E402

from fixtures_train import quiet, read_csv  # noqa: E402
from mos.audio import read_audio  # noqa: E402
from mos.distill.run import DistillSettings, run_distill, student_config  # noqa: E402
from mos.errors import MosError  # noqa: E402
from mos.model import ModelConfig, MosModel  # noqa: E402
from mos.trainer.checkpoint import load_model  # noqa: E402
from mos.trainer.config import TrainConfig  # noqa: E402

from conftest import TINY  # noqa: E402
REPO = Path(__file__).resolve().parents[1]  # this checkout's mos, whatever the cwd


def _cfg(teacher_setup: dict[str, Path], name: str, **kw) -> TrainConfig:
    base = dict(data=str(teacher_setup["data"]), name=name, runs_dir=str(teacher_setup["root"] / "runs"), epochs=6, lr=3e-3,
                patience=10, text_encoder="none", seed=1)
    base.update(kw)
    return TrainConfig(**base)


def _settings(teacher_setup: dict[str, Path], cache: str = "teacher-cache", **kw) -> DistillSettings:
    # Score-only distillation: embedding distillation is tests/test_distill_embedding.py's.
    base = dict(teacher=str(teacher_setup["teacher"]), unlabeled=str(teacher_setup["pool"]), teacher_weight=1.0, model=TINY,
                speed_repeats=1, threads=1, progress=False, embedding_weight=0.0,
                teacher_cache=str(teacher_setup["root"] / cache))
    base.update(kw)
    return DistillSettings(**base)


@pytest.fixture(scope="module")
def distilled(teacher_setup: dict[str, Path]) -> tuple[object, str]:
    console, buf = quiet()
    result = run_distill(_cfg(teacher_setup, "student"), _settings(teacher_setup, "cache-student", augment=1), console)
    return result, buf.getvalue()


@pytest.mark.slow
def test_teacher_labels_every_clip_once_and_the_run_records_it(teacher_setup, distilled) -> None:
    result, log = distilled
    run = result.run_dir
    # 32 rated training clips, 48 unrated pool clips, one degraded copy of each, 24 validation clips
    assert f"teacher teacher: scores and 64-d embeddings of {32 + 48 + 80 + 24} clips at " in log and "from its cache" not in log, log
    report = json.loads((run / "distill.json").read_text())
    teacher_sha = json.loads((run / "distill.json").read_text())["teacher"]["bundle_sha256"]
    for who in ("teacher", "student"):
        assert report[who]["clips_per_s"] > 0
        assert set(report[who]["levels"]["score"]["utterance"]) >= {"srcc", "lcc", "mse"}
    assert report["training_clips"] == {"rated": 32, "unrated": 128, "augmented": 80, "unlabeled": 48}
    assert report["srcc_share"] == pytest.approx(
        np.mean([report["student"]["levels"][t]["utterance"]["srcc"] for t in ("score", "quality")])
        / np.mean([report["teacher"]["levels"][t]["utterance"]["srcc"] for t in ("score", "quality")]), abs=1e-3)
    # a normal run folder and bundle; mos.json names the teacher and its validation metrics
    meta = json.loads((run / "bundle" / "mos.json").read_text())
    assert meta["distillation"]["teacher"]["bundle_sha256"] == teacher_sha
    assert set(meta["distillation"]["teacher"]["validation_metrics"]) == {"score", "quality"}
    assert meta["training"]["validation_metrics"]
    assert (run / "best_metrics.json").is_file() and (run / "checkpoints" / "best.pt").is_file()
    assert "teacher vs student on the validation split (24 clips)" in log
    assert "of the teacher's mean utterance-level SRCC" in log and "clips/s" in log


def _scores(run: Path, who: str) -> dict[str, np.ndarray]:
    rows = read_csv(run / "compare" / f"{who}_scores.csv")
    return {r["path"]: np.array([float(r["score"]), float(r["quality"])]) for r in rows}


def test_student_on_teacher_labels_alone_tracks_the_teacher(teacher_setup, distilled) -> None:
    result, _ = distilled
    run = result.run_dir
    teacher, student = _scores(run, "teacher"), _scores(run, "student")
    paths = sorted(teacher)
    # An untrained student of the same size (the trained one's log-mel statistics, fresh weights).
    trained, _ = load_model(run)
    torch.manual_seed(3)
    untrained = MosModel(ModelConfig.from_dict(trained.cfg.to_dict())).eval()
    untrained.frontend.feat_mean.copy_(trained.frontend.feat_mean)
    untrained.frontend.feat_std.copy_(trained.frontend.feat_std)
    with torch.no_grad():
        waves = {p: torch.from_numpy(read_audio(p, 16000))[None] for p in paths}
        fresh = {p: untrained.scores(w, torch.tensor([w.shape[1]]), None, None).numpy()[0] for p, w in waves.items()}
    tracked, chance = [], []
    for j in range(2):
        t = [teacher[p][j] for p in paths]
        tracked.append(spearmanr(t, [student[p][j] for p in paths]).statistic)
        chance.append(spearmanr(t, [fresh[p][j] for p in paths]).statistic)
    # measured: trained 0.946 (score) and 0.965 (quality); untrained 0.018 and 0.637 (the quality
    # target follows loudness and noise, which even random filters pick up)
    assert min(tracked) > 0.8, (tracked, chance)
    assert np.mean(tracked) > np.mean(np.abs(chance)) + 0.3, (tracked, chance)


@pytest.mark.slow
def test_resume_reuses_cached_labels_and_continues_training(teacher_setup) -> None:
    console, buf = quiet()
    run_distill(_cfg(teacher_setup, "resumed", epochs=3), _settings(teacher_setup, "cache-resumed"), console)
    assert "embeddings of 104 clips" in buf.getvalue()  # 32 + 48 + 24, in shards of 64
    shards = sorted((teacher_setup["root"] / "cache-resumed").glob("*/part-*.npz"))
    assert len(shards) == 2
    shards[-1].unlink()  # a kill while the teacher ran: its last chunk was never written
    console, buf = quiet()
    again = run_distill(_cfg(teacher_setup, "resumed", epochs=4, resume=True), _settings(teacher_setup, "cache-resumed"),
                        console, {"epochs"})
    log = buf.getvalue()
    assert "embeddings of 40 clips" in log and "64 from its cache" in log, log
    assert "resuming" in log and "at epoch 4" in log
    assert [json.loads(x)["epoch"] for x in (again.run_dir / "metrics.jsonl").read_text().splitlines()] == [0, 1, 2, 3, 4]
    # a run folder exists: without --resume or --overwrite it is refused; another teacher is refused too
    with pytest.raises(MosError, match="--resume continues it"):
        run_distill(_cfg(teacher_setup, "resumed"), _settings(teacher_setup), console)


def test_student_bundle_scores_without_torch(teacher_setup, distilled, tmp_path: Path) -> None:
    result, _ = distilled
    out = tmp_path / "scores.csv"
    # torch and transformers are installed here: a finder refuses them, as a machine without them would.
    code = ("import sys, importlib.abc\n"
            "class Block(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('torch', 'transformers'):\n"
            "            raise ImportError('blocked: ' + name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "from mos.cli import main\n"
            "sys.argv = ['mos'] + sys.argv[1:]\n"
            "try:\n"
            "    main()\n"
            "finally:\n"
            "    assert not [m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers')]\n")
    folder = teacher_setup["data"] / "wav" / "validation"
    run = subprocess.run([sys.executable, "-c", code, "score", str(folder), "--bundle", str(result.run_dir / "bundle"),
                          "--out", str(out), "--quiet"], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert run.returncode == 0, run.stderr
    rows = read_csv(out)
    assert len(rows) == 24 and all(r["status"] == "ok" for r in rows)


def test_bad_input_is_one_line(teacher_setup, tmp_path: Path) -> None:
    console, _ = quiet()
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    with pytest.raises(MosError, match="no bundle yet; run `mos export"):
        run_distill(_cfg(teacher_setup, "x"), _settings(teacher_setup, teacher=str(tmp_path / "run")), console)
    with pytest.raises(MosError, match="--teacher-weight 1.5"):
        run_distill(_cfg(teacher_setup, "x"), _settings(teacher_setup, teacher_weight=1.5), console)
    with pytest.raises(MosError, match="not a size"):
        student_config(str(tmp_path / "nope.toml"))
    (tmp_path / "s.toml").write_text("epochs = 3\n[model]\nsize = 'tiny'\nwidth = 3\n")
    with pytest.raises(MosError, match="unknown model field"):
        student_config(str(tmp_path / "s.toml"))
    (tmp_path / "s.toml").write_text("epochs = 3\n[model]\nsize = 'tiny'\n")
    assert student_config(str(tmp_path / "s.toml")) == ({"epochs": 3}, TINY)


def test_cli_refuses_a_run_without_a_bundle_in_one_line(teacher_setup, tmp_path: Path) -> None:
    (tmp_path / "big" / "checkpoints").mkdir(parents=True)
    run = subprocess.run([sys.executable, "-m", "mos", "distill", str(tmp_path / "big"), "--data", str(teacher_setup["data"]),
                          "--runs-dir", str(tmp_path / "runs")], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and "no bundle yet; run `mos export" in run.stderr, run.stderr
    assert not (tmp_path / "runs").exists()
