"""The text encoder is pinned by a sha256 of its files: recorded at training, refused when it
changed (also by export), and its tokenizer.json is written where export asks, never into the
encoder's own folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from mos.errors import MosError  # noqa: E402
from mos.model import ModelConfig, MosModel, TargetSpec  # noqa: E402
from mos.model.encoders.loading import encoder_sha256  # noqa: E402
from mos.model.text_encoder import FrozenTextEncoder, resolve_text_model_dir  # noqa: E402
from mos.trainer.checkpoint import save_checkpoint  # noqa: E402


@pytest.fixture()
def encoder_dir(tmp_path: Path) -> Path:
    """A local copy of the MiniLM encoder without its tokenizer.json (weights linked, not copied)."""
    src = resolve_text_model_dir("minilm")
    dest = tmp_path / "encoder"
    dest.mkdir()
    for f in src.iterdir():
        if f.is_file() and f.name != "tokenizer.json":
            if f.suffix in (".safetensors", ".bin"):
                (dest / f.name).symlink_to(f)
            else:
                shutil.copyfile(f, dest / f.name)
    return dest


def test_changed_encoder_is_refused(encoder_dir: Path) -> None:
    pinned = FrozenTextEncoder(str(encoder_dir)).sha256
    assert pinned == encoder_sha256(encoder_dir)
    FrozenTextEncoder(str(encoder_dir), expected_sha256=pinned)  # unchanged: accepted
    cfg = json.loads((encoder_dir / "tokenizer_config.json").read_text())
    cfg["model_max_length"] = 128  # a changed tokenizer setting changes the features
    (encoder_dir / "tokenizer_config.json").write_text(json.dumps(cfg))
    with pytest.raises(MosError, match="differ from the ones the model was trained with") as err:
        FrozenTextEncoder(str(encoder_dir), expected_sha256=pinned)
    assert "\n" not in str(err.value)


def test_tokenizer_json_is_written_where_asked_only(encoder_dir: Path, tmp_path: Path) -> None:
    before = sorted(p.name for p in encoder_dir.iterdir())
    enc = FrozenTextEncoder(str(encoder_dir))
    work = tmp_path / "work"
    work.mkdir()
    written = enc.save_tokenizer(work / "tokenizer.json")
    assert written.is_file() and json.loads(written.read_text())["model"]["type"] == "WordPiece"
    assert sorted(p.name for p in encoder_dir.iterdir()) == before  # nothing written into the encoder folder
    from tokenizers import Tokenizer

    ids = Tokenizer.from_file(str(written)).encode("a dog barks twice").ids
    assert ids == enc.tokenize(["a dog barks twice"])["input_ids"][0].tolist()


def test_export_refuses_a_changed_encoder(encoder_dir: Path, tmp_path: Path) -> None:
    from mos.export.build import export_bundle

    sha = encoder_sha256(encoder_dir)
    torch.manual_seed(0)
    model = MosModel(ModelConfig(text_encoder=str(encoder_dir), text_encoder_sha256=sha,
                                 targets=[TargetSpec("score", 0.0, 10.0, 5.0, 2.0)]))
    ckpt = tmp_path / "run" / "checkpoints" / "best.pt"
    save_checkpoint(ckpt, model, {"epoch": 1, "validation_metrics": {}, "train_config": {}, "data": "synthetic"})
    (encoder_dir / "vocab.txt").write_text((encoder_dir / "vocab.txt").read_text() + "newword\n")
    with pytest.raises(MosError, match="differ from the ones the model was trained with"):
        export_bundle(ckpt, tmp_path / "bundle", opset=17, verify=False)
