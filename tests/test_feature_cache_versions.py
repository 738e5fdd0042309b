"""Caches know what made them: every pretrained encoder family declares FEATURES_VERSION and its
EncoderInfo carries it; the feature cache keys its folder on it and stores it in each file, so
features made by other code (an older mos, another family version, a file from before versions)
are encoded again, said in one line, and equal fresh ones; files of this version are reused."""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import mos.model.encoders as encoders  # noqa: E402
from mos.data.manifest import Item  # noqa: E402
from mos.model.encoders import build_audio_encoder, resolve_audio_encoder, ssl  # noqa: E402
from mos.model.encoders.ssl import SslAudioEncoder  # noqa: E402
from mos.trainer.feature_cache import FeatureCache  # noqa: E402

from fixtures_encoders import count_encoded_windows, make_tiny_ast, make_tiny_clap, make_tiny_m2d, save_tiny  # noqa: E402

RATE = 16000
WINDOW = 8000  # 0.5 s windows: the 0.8 s clips have two each


def families() -> list:
    """Every module of mos.model.encoders that is an encoder family (it resolves and builds specs)."""
    found = [importlib.import_module(f"{encoders.__name__}.{m.name}") for m in pkgutil.iter_modules(encoders.__path__)]
    return [m for m in found if callable(getattr(m, "resolve", None)) and callable(getattr(m, "build", None))]


def test_every_encoder_family_declares_its_features_version() -> None:
    names = {m.__name__.rsplit(".", 1)[1] for m in families()}
    assert {"aisfx", "ast", "clap", "distillmos", "laion_clap", "m2d", "ssl"} <= names
    for module in families():
        version = getattr(module, "FEATURES_VERSION", None)
        assert isinstance(version, int) and version >= 1, f"{module.__name__} declares no FEATURES_VERSION"


def test_resolved_encoders_carry_their_familys_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mos.model.encoders import aisfx, ast, clap, distillmos, m2d

    specs = [(clap, "clap", str(make_tiny_clap(tmp_path / "clap"))), (ast, "ast", str(make_tiny_ast(tmp_path / "ast"))),
             (ssl, "ssl", str(save_tiny(tmp_path / "w2v", "wav2vec2", "layer"))),
             (m2d, "m2d", str(make_tiny_m2d(tmp_path / "m2d")))]
    if importlib.util.find_spec("aisfx") is not None:  # its weights ship in that package
        specs.append((aisfx, "aisfx", "aisfx"))
    if importlib.util.find_spec("distillmos") is not None:  # likewise
        specs.append((distillmos, "distillmos", "distillmos"))
    for module, family, spec in specs:
        assert resolve_audio_encoder(spec).code_version == f"{family}.v{module.FEATURES_VERSION}"
        monkeypatch.setattr(module, "FEATURES_VERSION", module.FEATURES_VERSION + 1)
        assert resolve_audio_encoder(spec).code_version == f"{family}.v{module.FEATURES_VERSION}"  # follows the constant


@pytest.fixture(scope="module")
def w2v_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("w2v") / "tiny-wav2vec2", "wav2vec2", "layer")


@pytest.fixture(scope="module")
def items(tmp_path_factory: pytest.TempPathFactory) -> list[Item]:
    root = tmp_path_factory.mktemp("clips")
    out = []
    for k in range(3):
        t = np.arange(int(0.8 * RATE)) / RATE
        wave = 0.3 * np.sin(2 * np.pi * (200 + 90 * k) * t) + 0.05 * np.random.default_rng(k).standard_normal(t.size)
        sf.write(root / f"c{k}.wav", wave.astype(np.float32), RATE)
        out.append(Item(id=f"c{k}.wav", path=root / f"c{k}.wav"))
    return out


@pytest.fixture
def encoded(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many clip windows the speech encoder's features() has been run on."""
    return count_encoded_windows(monkeypatch, SslAudioEncoder)


def prepared(w2v_dir: Path, root: Path, items: list[Item]) -> tuple[FeatureCache, list[str]]:
    """A feature cache under `root` for the tiny wav2vec2 (resolved now), prepared for `items`."""
    lines: list[str] = []
    cache = FeatureCache(root, build_audio_encoder(str(w2v_dir)), WINDOW, torch.device("cpu"), batch_size=4)
    cache.prepare(items, lines.append)
    return cache, lines


def windows(cache: FeatureCache, items: list[Item]) -> list[np.ndarray]:
    return [w for it in items for w in cache.clips[it.path].windows]


def same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(x.shape == y.shape and np.allclose(x, y, atol=1e-6) for x, y in zip(a, b))


def test_files_of_this_version_are_reused(w2v_dir: Path, items: list[Item], tmp_path: Path, encoded: list[int]) -> None:
    fresh, _ = prepared(w2v_dir, tmp_path, items)
    assert sum(encoded) == 6  # three clips of two windows
    assert fresh.dir.name.endswith(f"-ssl.v{ssl.FEATURES_VERSION}")
    for it in items:
        with np.load(fresh.path_for(it), allow_pickle=False) as z:
            assert str(z["code_version"]) == f"ssl.v{ssl.FEATURES_VERSION}"
    encoded.clear()
    again, lines = prepared(w2v_dir, tmp_path, items)
    assert encoded == [] and lines == [f"audio features: all 3 clip(s) from the cache ({again.dir})"]
    assert same(windows(again, items), windows(fresh, items))


def rewrite(path: Path, **changes: object) -> None:
    """A cache file with some arrays changed (None: dropped), as other code could have written it."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    for key, value in changes.items():
        if value is None:
            arrays.pop(key, None)
        else:
            arrays[key] = value
    with path.open("wb") as f:
        np.savez(f, **arrays)


@pytest.mark.parametrize("made_by", ["ssl.v0", None])
def test_a_file_made_by_other_code_is_encoded_again(w2v_dir: Path, items: list[Item], tmp_path: Path,
                                                    encoded: list[int], made_by: str | None) -> None:
    """In this version's folder, a file that records another code version (or none, as files did
    before versions) holds features that code made: they are made again, never read."""
    fresh, _ = prepared(w2v_dir, tmp_path, items)
    want = windows(fresh, items)
    rewrite(fresh.path_for(items[1]), w0=want[2] + 1.0, w1=want[3] - 1.0,
            code_version=None if made_by is None else np.str_(made_by))
    encoded.clear()
    again, lines = prepared(w2v_dir, tmp_path, items)
    assert sum(encoded) == 2  # that clip's two windows, and only those
    assert same(windows(again, items), want)
    assert lines[0] == (f"audio features: 1 cached clip(s) made by other mos code ({made_by or 'unversioned'}; "
                        f"this mos makes ssl.v{ssl.FEATURES_VERSION}), encoding them again")
    with np.load(again.path_for(items[1]), allow_pickle=False) as z:  # written again, by this code
        assert str(z["code_version"]) == f"ssl.v{ssl.FEATURES_VERSION}" and np.allclose(z["w0"], want[2])


def test_an_upgraded_mos_does_not_reuse_an_older_ones_features(w2v_dir: Path, items: list[Item], tmp_path: Path,
                                                               encoded: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    """An older mos (the family's FEATURES_VERSION one lower) wrote features from other front-end
    code (here: scaled); the upgraded mos encodes the clips again and gets what fresh code gives."""
    with monkeypatch.context() as older:
        older.setattr(ssl, "FEATURES_VERSION", ssl.FEATURES_VERSION - 1)
        original = SslAudioEncoder.features
        older.setattr(SslAudioEncoder, "features", lambda self, w, n: (lambda f, m: (2.0 * f, m))(*original(self, w, n)))
        old, _ = prepared(w2v_dir, tmp_path / "shared", items)
    encoded.clear()
    new, _ = prepared(w2v_dir, tmp_path / "shared", items)
    assert sum(encoded) == 6 and new.dir != old.dir
    fresh, _ = prepared(w2v_dir, tmp_path / "elsewhere", items)
    assert same(windows(new, items), windows(fresh, items))
    assert not same(windows(old, items), windows(fresh, items))
