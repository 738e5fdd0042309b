"""Embedding distillation: the bundle's pooled-embedding output, the teacher's content-keyed cache
(one teacher run per clip, reused, resumable), a student that learns the teacher's embeddings from
unrated audio alone, and `mos distill` with it end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

torch = pytest.importorskip("torch")

from conftest import TINY  # noqa: E402
from fixtures_train import quiet  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from mos.audio import read_audio  # noqa: E402
from mos.data.manifest import Item, Manifest  # noqa: E402
from mos.distill.run import DistillSettings, run_distill  # noqa: E402
from mos.distill.teacher import load_teacher  # noqa: E402
from mos.distill.teacher_cache import TeacherCache, content_key, teach  # noqa: E402
from mos.errors import MosError  # noqa: E402
from mos.runtime.engine import ScoreEngine  # noqa: E402
from mos.trainer.checkpoint import load_model  # noqa: E402
from mos.trainer.config import TrainConfig  # noqa: E402
from mos.trainer.splits import Splits, resolve_splits  # noqa: E402


def _pool_items(pool: Path) -> list[Item]:
    return [Item(id=p.stem, path=p, targets={"score": float("nan"), "quality": float("nan")})
            for p in sorted(pool.glob("*.wav"))]


def test_bundle_embedding_output_is_the_models_pooled_embedding(teacher_setup) -> None:
    teacher = load_teacher(teacher_setup["teacher"])
    assert teacher.bundle.embedding_dim == TINY["channels"][-1]
    model, _ = load_model(teacher_setup["teacher"])
    engine = ScoreEngine(teacher.bundle)
    paths = sorted(teacher_setup["pool"].glob("*.wav"))[:3]
    waves = [read_audio(p, 16000) for p in paths]
    long = np.concatenate([waves[0]] * 25)  # 12.5 s: two windows, averaged by length
    rows, emb = engine.embed_arrays(waves + [long], [None] * 4)
    assert emb.shape == (4, teacher.bundle.embedding_dim) and rows.shape == (4, 2)
    assert np.allclose(rows, engine.score_arrays(waves + [long], [None] * 4), atol=1e-6)
    with torch.no_grad():
        for wave, got in zip(waves, emb[:3]):
            frames, lengths = model.encode_audio(torch.from_numpy(wave)[None], torch.tensor([len(wave)]))
            want = model.pooled_audio(frames, lengths)[0].numpy()
            assert np.allclose(got, want, atol=1e-4 * max(1.0, float(np.abs(want).max())))
        first = long[:160000]
        parts = [first, long[160000:]]
        pooled = [model.pooled_audio(*model.encode_audio(torch.from_numpy(p)[None], torch.tensor([len(p)])))[0].numpy()
                  for p in parts]
    expect = (pooled[0] * len(parts[0]) + pooled[1] * len(parts[1])) / len(long)
    assert np.allclose(emb[3], expect, atol=1e-4 * max(1.0, float(np.abs(expect).max())))


def test_teacher_runs_once_per_clip_and_its_cache_is_reused(teacher_setup, tmp_path: Path) -> None:
    teacher = load_teacher(teacher_setup["teacher"])
    pool = tmp_path / "pool"
    shutil.copytree(teacher_setup["pool"], pool)
    (pool / "broken.wav").write_bytes(b"RIFF\x00\x00not a wav")
    shutil.copy(pool / sorted(p.name for p in teacher_setup["pool"].glob("*.wav"))[0], pool / "same_audio.wav")
    items = _pool_items(pool)
    cache = TeacherCache(tmp_path / "cache", teacher)
    done: list[int] = []
    first = teach(teacher, iter(items), cache, device="cpu", note=done.append, chunk_size=16)  # a stream of items
    assert first.taught == 48 and first.cached == 1  # the copy has the same content: run once
    assert len(first.failed) == 1 and "broken.wav" in first.failed[0] and "\n" not in first.failed[0]
    assert [k is None for k in first.keys] == [it.path.name == "broken.wav" for it in items]
    assert done == [16, 32, 48, 50] and len(cache) == 48  # a shard per chunk the teacher ran on
    again = TeacherCache(tmp_path / "cache", teacher)  # a new run reads the shards back
    second = teach(teacher, items, again, device="cpu")
    assert second.taught == 0 and second.cached == 49 and second.keys == first.keys
    k = first.keys[0]
    assert np.array_equal(again.embeddings[k], cache.embeddings[k]) and np.array_equal(again.scores[k], cache.scores[k])
    # keyed by content: the same bytes under another name are known
    assert content_key(pool / "same_audio.wav", None, False) in again
    # a kill while writing leaves a temporary file, never a shard; the next run teaches what is missing
    last = sorted(again.dir.glob("part-*.npz"))[-1]
    lost = len(np.load(last)["keys"])
    last.rename(again.dir / f".{last.name}.tmp")
    third = teach(teacher, items, TeacherCache(tmp_path / "cache", teacher), device="cpu")
    assert third.taught == lost and third.keys == first.keys


def test_a_teacher_without_the_embedding_output_teaches_its_scores_only(teacher_setup, tmp_path: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(teacher_setup["teacher"] / "bundle", old)
    meta = json.loads((old / "mos.json").read_text())
    del meta["audio"]["embedding"]  # as a bundle exported before the embedding output reads
    meta["audio"]["outputs"].remove("embedding")
    (old / "mos.json").write_text(json.dumps(meta))
    cfg = TrainConfig(data=str(teacher_setup["data"]), name="s", runs_dir=str(tmp_path / "runs"), epochs=1, lr=3e-3,
                      patience=10, text_encoder="none", seed=1)
    settings = DistillSettings(teacher=str(old), model=TINY, speed_repeats=1, threads=1, progress=False,
                               teacher_cache=str(tmp_path / "cache"))
    wave = [read_audio(sorted(teacher_setup["pool"].glob("*.wav"))[0], 16000)]
    with pytest.raises(MosError, match="no pooled-embedding output .*export it again"):
        ScoreEngine(load_teacher(old).bundle).embed_arrays(wave, [None])
    with pytest.raises(MosError, match="no pooled-embedding output.*--embedding-weight 0") as err:
        run_distill(cfg, settings, quiet()[0])
    assert "\n" not in str(err.value)
    settings.embedding_weight = 0.0
    console, buf = quiet()
    result = run_distill(cfg.with_overrides(overwrite=True), settings, console)
    assert "teacher old: scores of 56 clips" in buf.getvalue()  # 32 training + 24 validation clips
    assert json.loads((result.run_dir / "bundle" / "mos.json").read_text())["distillation"]["embedding_weight"] == 0.0


def _embed(model, items: list[Item]) -> np.ndarray:
    with torch.no_grad():
        out = []
        for it in items:
            wave = torch.from_numpy(read_audio(it.path, 16000))[None]
            frames, lengths = model.encode_audio(wave, torch.tensor([wave.shape[1]]))
            out.append(model.pooled_audio(frames, lengths)[0].numpy())
    return np.stack(out)


def test_student_taught_by_embeddings_alone_tracks_the_teacher(teacher_setup, tmp_path: Path) -> None:
    """No ratings and no teacher scores in the loss: only the teacher's embeddings of unrated audio.
    The student's projected embeddings then point where the teacher's do on clips it never saw, far
    more than an untrained student's, and a ridge fit on its embeddings follows the teacher's scores."""
    from sklearn.linear_model import RidgeCV

    from mos.distill.trainer import DistillTrainer, TeacherStats
    from mos.model import ModelConfig, MosModel

    teacher = load_teacher(teacher_setup["teacher"])
    cache = TeacherCache(tmp_path / "cache", teacher)
    pool = _pool_items(teacher_setup["pool"])
    splits = resolve_splits(teacher_setup["data"], None, 0.2, 0, None, None)
    held_out = splits.train.items + splits.validation.items  # the student never trains on these
    keys = teach(teacher, pool + held_out, cache, device="cpu").keys
    pool_keys, held_keys = keys[: len(pool)], keys[len(pool):]
    know = cache.knowledge([k for k in pool_keys if k])
    stats = TeacherStats.of(know.embeddings)
    cfg = TrainConfig(data=str(teacher_setup["data"]), name="emb", runs_dir=str(tmp_path / "runs"), epochs=12, lr=3e-3,
                      patience=20, text_encoder="none", seed=0, batch_size=16)
    train = Manifest(pool, splits.train.targets, splits.train.source)
    console, _ = quiet()
    trainer = DistillTrainer(cfg, Splits(train, splits.validation, "pool", None), console, tmp_path / "runs" / "emb",
                             model_overrides={**TINY, "distill_embedding_dim": cache.dim},
                             teacher=know.scores, teacher_weight=0.0, agree_weight=0.0,
                             teacher_embeddings=stats.standardise(know.embeddings), embedding_weight=1.0)
    untrained = MosModel(ModelConfig.from_dict(trainer.model.cfg.to_dict())).eval()
    untrained.load_state_dict(trainer.model.state_dict())  # the same start, the same log-mel statistics
    trainer.fit()
    student = trainer.model.eval()
    want = stats.standardise(cache.knowledge(held_keys).embeddings)

    def cosine(model) -> float:
        with torch.no_grad():
            got = model.embedding_projection(torch.from_numpy(_embed(model, held_out))).numpy()
        return float(np.mean(np.sum(got * want, 1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))))

    trained_cos, fresh_cos = cosine(student), cosine(untrained)
    assert trained_cos > fresh_cos + 0.3, (trained_cos, fresh_cos)  # measured: 0.41 against 0.003
    # a head fitted on the student's embeddings of the pool follows the teacher on the held-out clips
    head = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(_embed(student, pool), know.scores)
    pred = head.predict(_embed(student, held_out))
    truth = cache.knowledge(held_keys).scores
    srcc = [spearmanr(pred[:, j], truth[:, j]).statistic for j in range(truth.shape[1])]
    assert min(srcc) > 0.6, srcc


@pytest.fixture(scope="module")
def embedded(teacher_setup, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("embdistill")
    cfg = TrainConfig(data=str(teacher_setup["data"]), name="emb-student", runs_dir=str(root / "runs"), epochs=4,
                      lr=3e-3, patience=10, text_encoder="none", seed=1)
    settings = DistillSettings(teacher=str(teacher_setup["teacher"]), unlabeled=str(teacher_setup["pool"]),
                               model=TINY, speed_repeats=1, threads=1, progress=False,
                               teacher_cache=str(root / "cache"))
    console, buf = quiet()
    return run_distill(cfg, settings, console), buf.getvalue(), cfg, settings


def test_distill_embeds_every_clip_and_exports_a_student_with_its_own_embedding(embedded) -> None:
    result, log, _, _ = embedded
    assert "scores and 64-d embeddings of 104 clips" in log, log  # 32 train + 48 pool + 24 validation
    meta = json.loads((result.run_dir / "bundle" / "mos.json").read_text())
    assert meta["distillation"]["embedding_weight"] == 1.0
    assert meta["audio"]["embedding"]["dim"] == 64  # the student's own pooled embedding, not the projection
    assert "embedding" in meta["audio"]["outputs"]
    report = json.loads((result.run_dir / "distill.json").read_text())
    assert report["training_clips"]["unlabeled"] == 48 and report["student"]["clips_per_s"] > 0
    model, _ = load_model(result.run_dir)  # the projection onto the teacher's 64-d embedding is not exported
    projection = sum(p.numel() for p in model.embedding_projection.parameters())
    assert projection == 64 * 64 + 64
    assert report["student"]["parameters"] == sum(p.numel() for p in model.parameters()) - projection


def test_another_student_of_the_same_teacher_reuses_the_cache_and_resume_continues(embedded) -> None:
    result, _, cfg, settings = embedded
    console, buf = quiet()
    run_distill(cfg.with_overrides(name="emb-other", epochs=2), settings, console)
    assert "of 0 clips; 104 from its cache" in buf.getvalue(), buf.getvalue()
    console, buf = quiet()
    again = run_distill(cfg.with_overrides(epochs=5, resume=True), settings, console, {"epochs"})
    log = buf.getvalue()
    assert "104 from its cache" in log and "resuming" in log and "at epoch 5" in log, log
    epochs = [json.loads(x)["epoch"] for x in (again.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [0, 1, 2, 3, 4, 5]


def test_unreadable_pool_clips_are_named_and_left_out_and_a_24khz_student(teacher_setup, tmp_path: Path) -> None:
    pool = tmp_path / "pool"
    shutil.copytree(teacher_setup["pool"], pool)
    (pool / "zz_broken.wav").write_bytes(b"RIFF\x00\x00not a wav")
    sf.write(pool / "zz_silent.wav", np.zeros(0, dtype=np.float32), 16000)
    cfg = TrainConfig(data=str(teacher_setup["data"]), name="s", runs_dir=str(tmp_path / "runs"), epochs=1, lr=3e-3,
                      patience=10, text_encoder="none", seed=1)
    settings = DistillSettings(teacher=str(teacher_setup["teacher"]), unlabeled=str(pool), model=TINY, speed_repeats=1,
                               threads=1, progress=False, teacher_cache=str(tmp_path / "cache"), student_rate=24000)
    console, buf = quiet()
    result = run_distill(cfg, settings, console)
    log = buf.getvalue()
    assert "2 unreadable and left out (first: " in log and "zz_broken.wav" in log, log
    assert "left out of training: 2 clip(s)" in log
    # --student-rate: a 24 kHz student (25 ms windows, 10 ms hop), exported and verified as any other
    meta = json.loads((result.run_dir / "bundle" / "mos.json").read_text())
    assert meta["sample_rate"] == 24000 and "verify" in log and "parity" in log
    model, _ = load_model(result.run_dir)
    assert (model.cfg.n_fft, model.cfg.win_length, model.cfg.hop_length) == (600, 600, 240)


def test_augmentation_is_deterministic_for_a_seed_and_each_effect_changes_the_audio(teacher_setup, tmp_path: Path) -> None:
    from mos.distill.augment import Degradation, apply, degraded_copies

    items = _pool_items(teacher_setup["pool"])[:6]
    a = degraded_copies(items, 2, tmp_path / "a", seed=3)
    b = degraded_copies(items, 2, tmp_path / "b", seed=3)
    c = degraded_copies(items, 1, tmp_path / "c", seed=4)
    assert len(a) == 12 and [x.path.name for x in a] == [x.path.name for x in b]
    def same(x: Item, y: Item) -> bool:  # the samples (a float wav's PEAK chunk holds the time it was written)
        return np.array_equal(sf.read(x.path, dtype="float32")[0], sf.read(y.path, dtype="float32")[0])

    assert all(same(x, y) for x, y in zip(a, b))
    assert not all(same(x, y) for x, y in zip(a, c))
    wave = read_audio(items[0].path, 16000)
    rng = np.random.default_rng(0)
    for d in (Degradation(0.0, codec="mp3", mp3_quality=9.0), Degradation(0.0, codec="gsm"),
              Degradation(0.0, codec="band", band_hz=8000), Degradation(0.0, reverb_room=0.8),
              Degradation(0.0, snr_db=10.0), Degradation(0.0, clip_db=-20.0), Degradation(6.0)):
        out = apply(wave, 16000, d, rng)
        assert out.shape == wave.shape and out.dtype == np.float32 and np.abs(out).max() <= 1.0
        assert np.abs(out - wave).mean() > 1e-3 * np.abs(wave).mean(), d.describe()
    # a band limit to 8 kHz leaves nothing above 4 kHz
    band = apply(wave, 16000, Degradation(0.0, codec="band", band_hz=8000), rng)
    spec = np.abs(np.fft.rfft(band)) ** 2
    assert spec[int(len(spec) * 4500 / 8000):].sum() < 1e-3 * spec.sum()
