"""What the trainer feeds the model and how it validates: distinct augmentation per loader
worker, validation scored the way `mos score` scores, and gradient accumulation that really
equals a larger batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

torch = pytest.importorskip("torch")

from fixtures_train import quiet  # noqa: E402

from mos.audio import read_audio  # noqa: E402
from mos.data.manifest import Item, Manifest, Target  # noqa: E402
from mos.windows import split_windows, window_mean  # noqa: E402
from mos.trainer.config import TrainConfig  # noqa: E402
from mos.trainer.loop import Trainer  # noqa: E402
from mos.trainer.validation import predict  # noqa: E402
from mos.trainer.splits import Splits, resolve_splits  # noqa: E402


def _ramp_manifest(tmp_path: Path, n: int = 16) -> Manifest:
    """n items that all point at one 1 s ramp: a crop's first sample says where it started and
    its slope says the gain, so two identical augmentations give identical waveforms."""
    path = tmp_path / "ramp.wav"
    sf.write(path, (np.arange(16000) / 16000 * 0.5).astype(np.float32), 16000, subtype="FLOAT")
    items = [Item(id=f"c{i:02d}", path=path, targets={"score": float(i % 5)}) for i in range(n)]
    return Manifest(items, [Target("score", 0.0, 10.0)], "ramp")


def test_loader_workers_draw_distinct_crops_and_gains(tmp_path: Path) -> None:
    m = _ramp_manifest(tmp_path)
    cfg = TrainConfig(data="ramp", text_encoder="none", num_workers=2, batch_size=2, max_seconds=0.1, gain_db=6.0,
                      seed=3, epochs=2)
    trainer = Trainer(cfg, Splits(m, m, "ramp"), quiet()[0], tmp_path / "run")
    epochs = []
    for _ in range(2):
        seen = []
        for batch in trainer.train_loader:
            for wav in batch.waveform.numpy():
                seen.append((round(float(wav[0]), 6), round(float(wav[1] - wav[0]), 9)))
        epochs.append(seen)
    for seen in epochs:  # no two clips (served by the two workers) share crop and gain
        assert len(set(seen)) == len(seen) == 16, seen
    assert not set(epochs[0]) & set(epochs[1])  # and the next epoch draws new ones


def test_validation_scores_whole_clips_like_mos_score(small_demo: Path, tmp_path: Path) -> None:
    # A 0.3 s training window on 1 s clips: every validation clip is 4 windows (0.3+0.3+0.3+0.1 s).
    cfg = TrainConfig(data=str(small_demo), text_encoder="none", max_seconds=0.3, epochs=1, batch_size=8)
    splits = resolve_splits(small_demo, None, 0.2, 0)
    trainer = Trainer(cfg, splits, quiet()[0], tmp_path / "run")
    model = trainer.model.eval()
    assert model.cfg.window_seconds == 0.3  # contract 2: the bundle's window comes from --max-seconds
    with torch.no_grad():  # push scores past the range so that clamping before averaging would differ
        model.heads["score"].bias.fill_(2.5)
    pred, _, _ = predict(model, trainer.val_loader, torch.device("cpu"), False)
    window = 4800
    for i, item in enumerate(splits.validation.items[:6]):
        wave = read_audio(item.path, 16000)
        pieces = split_windows(wave, window)
        assert len(pieces) == 4
        batch = torch.zeros(len(pieces), window)
        for k, piece in enumerate(pieces):
            batch[k, : len(piece)] = torch.from_numpy(piece)
        lengths = torch.tensor([len(p) for p in pieces])
        with torch.no_grad():
            raw = model.scores(batch, lengths, clamp=False).numpy()
        expected = model.clamp(torch.from_numpy(window_mean(raw, lengths.numpy())).float()[None]).numpy()[0]
        np.testing.assert_allclose(pred[i], expected, rtol=1e-5, atol=1e-5)
        first_window_only = model.scores(batch[:1], lengths[:1]).detach().numpy()[0]
        assert not np.allclose(pred[i], first_window_only, atol=1e-3)


def _trainer(small_demo: Path, tmp_path: Path, batch_size: int, accumulate: int) -> Trainer:
    cfg = TrainConfig(data=str(small_demo), text_encoder="none", batch_size=batch_size, accumulate=accumulate,
                      rank_weight=0.0, corr_weight=0.0, epochs=3, lr=3e-3, seed=0)
    splits = resolve_splits(small_demo, None, 0.2, 0)
    splits.train.items = splits.train.items[:48]
    trainer = Trainer(cfg, splits, quiet()[0], tmp_path / f"b{batch_size}a{accumulate}")
    for module in trainer.model.modules():  # deterministic: no dropout
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    trainer.train_epoch(1)
    return trainer


@pytest.mark.slow
def test_gradient_accumulation_equals_a_larger_batch(small_demo: Path, tmp_path: Path) -> None:
    """With batch-mean MSE only (no batch-level ranking/correlation terms) and no dropout,
    2 accumulated batches of 8 are one batch of 16: the same optimiser steps, the same weights."""
    big = _trainer(small_demo, tmp_path, 16, 1)
    accumulated = _trainer(small_demo, tmp_path, 8, 2)
    small = _trainer(small_demo, tmp_path, 8, 1)
    assert (big.steps, accumulated.steps, small.steps) == (3, 3, 6)  # 48 training clips
    want, got, other = (t.model.state_dict() for t in (big, accumulated, small))
    # Summing two half-batch gradients differs from one full-batch sum in the last float bits, and
    # Adam's m / sqrt(v) magnifies that where a gradient is near zero: a few weights differ by
    # 1e-5 to 1e-4 (7.5e-5 seen in CI, depending on the BLAS's summation order); a smaller batch
    # moves them by more than 1e-3.
    for name, value in want.items():
        torch.testing.assert_close(got[name], value, rtol=1e-3, atol=2e-4)
    assert max(float((other[k] - want[k]).abs().max()) for k in want) > 1e-3  # the comparison can tell
