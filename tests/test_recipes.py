"""Recipes (`mos train --recipe NAME`) and the training options they are made of: the L1 and
ListNet losses (values computed by hand here), SGD with a constant learning rate, choosing the
best epoch by the validation loss; each shipped recipe on tiny fabricated data."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from typer.testing import CliRunner  # noqa: E402

from mos.cli import app  # noqa: E402
from mos.errors import MosError  # noqa: E402
from mos.trainer.config import TrainConfig  # noqa: E402
from mos.trainer.losses import combined_loss, l1_loss, listnet_loss, ranking_loss  # noqa: E402
from mos.trainer.recipes import known_recipes, load_recipe  # noqa: E402
from mos.trainer.run import run_training  # noqa: E402

from fixtures_train import quiet, read_csv, tiny_demo, tiny_musiceval  # noqa: E402

RECIPES = ["musiceval-baseline", "musiceval-baseline-exact", "xacle-2027-baseline", "xacle-audiomos", "xacle-clap"]


# -- losses -------------------------------------------------------------------------------------


def test_l1_is_the_mean_absolute_error() -> None:
    pred = torch.tensor([0.0, 1.0, 2.0, -1.0])
    true = torch.tensor([2.0, 0.5, 2.0, 1.0])
    assert float(l1_loss(pred, true)) == pytest.approx((2.0 + 0.5 + 0.0 + 2.0) / 4)


def test_listnet_top1_by_hand() -> None:
    pred = torch.tensor([0.0, 1.0, 2.0])
    true = torch.tensor([2.0, 0.0, 1.0])
    # softmax of the true scores: e^2, e^0, e^1 over their sum; log-softmax of the predictions.
    zt = math.exp(2) + math.exp(0) + math.exp(1)
    p = [math.exp(2) / zt, math.exp(0) / zt, math.exp(1) / zt]
    zp = math.exp(0) + math.exp(1) + math.exp(2)
    log_q = [0 - math.log(zp), 1 - math.log(zp), 2 - math.log(zp)]
    expected = -(p[0] * log_q[0] + p[1] * log_q[1] + p[2] * log_q[2])
    assert expected == pytest.approx(1.8281, abs=1e-4)  # 0.6652*2.4076 + 0.0900*1.4076 + 0.2447*0.4076
    assert float(listnet_loss(pred, true)) == pytest.approx(expected, rel=1e-6)
    # Temperature 2: every score halved before the softmax.
    zt2 = math.exp(1) + math.exp(0) + math.exp(0.5)
    p2 = [math.exp(1) / zt2, math.exp(0) / zt2, math.exp(0.5) / zt2]
    zp2 = math.exp(0) + math.exp(0.5) + math.exp(1)
    expected2 = -sum(pi * (qi - math.log(zp2)) for pi, qi in zip(p2, [0.0, 0.5, 1.0]))
    assert float(listnet_loss(pred, true, temperature=2.0)) == pytest.approx(expected2, rel=1e-6)
    # Its minimum, the entropy of the true distribution, is reached by any shift of the truth.
    entropy = -sum(pi * math.log(pi) for pi in p)
    assert float(listnet_loss(true + 3.0, true)) == pytest.approx(entropy, rel=1e-6)
    assert float(listnet_loss(pred, true)) > entropy


def test_combined_loss_weighs_l1_and_listnet_per_target() -> None:
    pred = torch.tensor([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0]])
    true = torch.tensor([[2.0, 1.0], [0.0, 1.0], [1.0, 1.0]])
    # target 0: L1 = (2 + 1 + 1) / 3, ListNet 1.8281 (above); target 1: L1 = 0, ListNet over three
    # equal scores = -3 * (1/3) * log(1/3) = log 3.
    zt = math.exp(2) + math.exp(0) + math.exp(1)
    zp = math.exp(0) + math.exp(1) + math.exp(2)
    listnet0 = -(math.exp(2) * (0 - math.log(zp)) + math.exp(0) * (1 - math.log(zp))
                 + math.exp(1) * (2 - math.log(zp))) / zt
    expected = ((4 / 3 + 0.5 * listnet0) + (0.0 + 0.5 * math.log(3))) / 2
    got = combined_loss(pred, true, 1.0, 0.0, 0.0, pointwise="l1", listnet_weight=0.5)
    assert float(got) == pytest.approx(expected, rel=1e-6)
    mse = combined_loss(pred, true, 1.0, 0.0, 0.0)  # the default pointwise loss is still the MSE
    assert float(mse) == pytest.approx(((4 + 1 + 1) / 3 + 0.0) / 2, rel=1e-6)


def test_ranking_loss_in_blocks_equals_all_pairs_at_once() -> None:
    """The validation loss takes the pairs of a whole validation set a block of rows at a time."""
    g = torch.Generator().manual_seed(0)
    pred, true = torch.randn(300, generator=g), torch.randn(300, generator=g).round()
    assert float(ranking_loss(pred, true, block=7)) == pytest.approx(float(ranking_loss(pred, true)), abs=1e-6)  # measured 1.2e-7


def test_bad_loss_optimizer_schedule_and_selection_settings() -> None:
    cases = [
        (dict(loss="l1", clip_tau=0.3), "--clip-tau 0.3"),
        (dict(loss="huber"), "--loss huber: expected mse or l1"),
        (dict(optimizer="adam"), "--optimizer adam: expected adamw or sgd"),
        (dict(schedule="cosine"), "--schedule cosine"),
        (dict(select_by="lcc"), "--select-by lcc"),
        (dict(listnet_weight=-1.0), "--listnet-weight -1"),
        (dict(head="mlp"), "--head mlp: expected fusion, pooled, per-target, svr, ridge or auto"),
        (dict(head_activation="swish"), "--head-activation swish: expected gelu, relu or none"),
        (dict(audio_only_targets=["overall"]), "--audio-only-targets overall: needs --head per-target"),
    ]
    for changes, message in cases:
        with pytest.raises(MosError, match=message.replace("-", r"\-")):
            TrainConfig(**changes).check()
    TrainConfig(loss="l1").check()  # L1 without --clip-tau is fine


def test_relu_head_activation_is_linear_relu_dropout_with_a_bare_output_layer() -> None:
    from mos.model.mos_model import mlp

    layers = [type(m).__name__ for m in mlp([6, 5, 4, 1], 0.3, "relu", last_linear=True)]
    assert layers == ["Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]
    TrainConfig(head_activation="relu").check()


# -- optimiser, schedule, selection -----------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An XACLE-layout tree (32 train, 12 validation clips of 0.5 s, with captions)."""
    return tiny_demo(tmp_path_factory.mktemp("tiny")) / "XACLE_dataset"


def _cfg(root: Path, data: Path, **changes) -> TrainConfig:
    base = dict(data=str(data), name="t", runs_dir=str(root / "runs"), epochs=3, batch_size=8, patience=10, seed=0,
                text_encoder="none")
    base.update(changes)
    return TrainConfig(**base)


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_sgd_with_a_constant_schedule_keeps_the_rate_and_resumes_exactly(demo: Path, tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, demo, optimizer="sgd", schedule="constant", lr=3e-3, name="straight")
    result = run_training(cfg, quiet()[0])
    history = _metrics(result.run_dir)
    assert [h["lr"] for h in history[1:]] == [3e-3] * 3
    ckpt = torch.load(result.run_dir / "checkpoints" / "last.pt", weights_only=True)
    groups = ckpt["optimizer"]["param_groups"]
    assert [g["lr"] for g in groups] == [3e-3] and groups[0]["momentum"] == 0.9
    assert "initial_lr" not in groups[0]  # no scheduler ever touched the optimiser
    # Two epochs, then a resume to three: the same weights as three epochs at once.
    run_training(_cfg(tmp_path, demo, optimizer="sgd", schedule="constant", lr=3e-3, name="resumed", epochs=2),
                 quiet()[0])
    run_training(_cfg(tmp_path, demo, name="resumed", epochs=3, resume=True), quiet()[0], {"epochs"})
    again = torch.load(tmp_path / "runs" / "resumed" / "checkpoints" / "last.pt", weights_only=True)
    for k, v in ckpt["state_dict"].items():
        assert torch.equal(v, again["state_dict"][k]), k
    assert [h["lr"] for h in _metrics(tmp_path / "runs" / "resumed")[1:]] == [3e-3] * 3


@pytest.mark.slow
def test_select_by_loss_keeps_the_epoch_of_lowest_validation_loss(demo: Path, tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, demo, epochs=5, select_by="loss", loss="l1", rank_weight=0.0, corr_weight=0.0, lr=3e-3)
    console, out = quiet()
    result = run_training(cfg, console)
    history = _metrics(result.run_dir)[1:]
    losses = [h["val_loss"] for h in history]
    best = json.loads((result.run_dir / "best_metrics.json").read_text())
    assert best["selected_by"] == "loss"
    assert best["epoch"] == history[int(np.argmin(losses))]["epoch"] == result.best_epoch
    assert best["val_loss"] == min(losses)
    by_srcc = history[int(np.argmax([np.mean([m["srcc"] for m in h["val"].values()]) for h in history]))]["epoch"]
    print(f"best by loss: epoch {best['epoch']}; by SRCC it would be epoch {by_srcc}")
    assert f"BEST SAVED (validation loss {min(losses):.4f})" in out.getvalue()
    # The validation loss is the training loss (here the L1 on normalised targets) over the
    # validation clips, from the scores val_predictions.csv holds for the best epoch.
    model = torch.load(result.run_dir / "checkpoints" / "best.pt", weights_only=True)["model_config"]
    rows = read_csv(result.run_dir / "val_predictions.csv")
    l1 = [np.mean([abs(float(r[t["name"]]) - float(r[f"true_{t['name']}"])) / t["std"] for r in rows])
          for t in model["targets"]]
    assert best["val_loss"] == pytest.approx(float(np.mean(l1)), abs=2e-4)  # predictions are written rounded to 1e-4


# -- recipes ------------------------------------------------------------------------------------------


def test_the_shipped_recipes_are_valid_and_say_what_they_reproduce() -> None:
    assert known_recipes() == RECIPES
    figures = {"musiceval-baseline": ["0.688", "0.543"], "musiceval-baseline-exact": ["0.688", "0.543"],
               "xacle-audiomos": ["0.6247", "0.6449", "3.95"],
               "xacle-clap": ["0.584"], "xacle-2027-baseline": ["0.584", "0.565"]}
    for name in RECIPES:
        recipe = load_recipe(name)
        assert recipe.text.startswith(f"# {name}:")
        comments = "".join(line for line in recipe.text.splitlines(keepends=True) if line.startswith("#"))
        assert all(f in comments for f in figures[name]) and "You provide" in comments
        cfg = TrainConfig(**{**recipe.settings, **{k: "x" for k in recipe.requires}})
        cfg.check()
    baseline = load_recipe("musiceval-baseline").settings
    assert (baseline["head"], baseline["head_activation"], baseline["audio_only_targets"]) == \
        ("per-target", "none", ["overall"])
    assert baseline["loss"] == "l1" and baseline["optimizer"] == "sgd" and baseline["schedule"] == "constant"
    assert baseline["select_by"] == "loss" and baseline["batch_size"] == 64 and baseline["patience"] == 20
    assert "30 s" in load_recipe("musiceval-baseline").text  # why max_seconds does not apply to CLAP
    assert load_recipe("xacle-clap").settings["listnet_weight"] == 1.0
    # The baseline script's training: L1 on the raw 1-5 scores, the heads' losses summed, fp32, no
    # gradient clipping, CLAP in eval mode, captions of up to 77 tokens, selection on the unclamped loss.
    assert (baseline["target_scale"], baseline["loss_reduction"], baseline["max_text_tokens"]) == ("raw", "sum", 77)
    assert (baseline["grad_clip"], baseline["encoder_mode"], baseline["amp"]) == (0.0, "eval", False)
    assert baseline["val_loss_clamp"] is False and baseline["weight_decay"] == 0.0
    exact = load_recipe("musiceval-baseline-exact").settings
    assert exact == {**baseline, "encoder_input_rate": 16000}  # the quirk and nothing else
    xacle27 = load_recipe("xacle-2027-baseline").settings  # configs/train.json of the baseline
    assert (xacle27["head"], xacle27["head_layers"], xacle27["head_activation"], xacle27["dropout"]) == \
        ("pooled", [1024, 256], "relu", 0.3)
    assert (xacle27["mse_weight"], xacle27["clip_tau"], xacle27["rank_weight"], xacle27["rank_margin"]) == (1.0, 0.25, 0.5, 0.1)
    assert (xacle27["batch_size"], xacle27["lr"], xacle27["epochs"], xacle27["patience"]) == (12, 2e-5, 20, 10)
    assert "#clap" in load_recipe("xacle-2027-baseline").requires["audio_encoder"]


def _invoke(args: list[str]):
    return CliRunner().invoke(app, args)


def _one_line_error(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:"), result.output
    return lines[0]


def test_show_prints_the_recipe_and_the_settings_with_overrides(tmp_path: Path) -> None:
    config = tmp_path / "mine.toml"
    config.write_text("lr = 0.02\npatience = 4\n")
    result = _invoke(["train", "--recipe", "xacle-clap", "--config", str(config), "--patience", "9",
                      "--runs-dir", str(tmp_path / "runs"), "--show"])
    assert result.exit_code == 0, result.output
    text = result.output
    assert text.startswith("# recipe xacle-clap") and load_recipe("xacle-clap").text.strip() in text
    settings = text.split("# the resulting settings", 1)[1]
    assert "\nlistnet_weight = 1.0\n" in settings and '\nhead = "pooled"\n' in settings
    assert "\nlr = 0.02\n" in settings  # --config over the recipe
    assert "\npatience = 9\n" in settings  # a flag over both
    assert "still to give: --recipe xacle-clap needs DATA" in settings
    assert not (tmp_path / "runs").exists()  # nothing trained
    result = _invoke(["train", "--recipe", "musiceval-baseline", "--freeze-audio", "--show"])
    assert result.exit_code == 0 and "\nfinetune_audio = true\n" in result.output.split("# the resulting", 1)[0]
    assert "\nfinetune_audio = false\n" in result.output.split("# the resulting", 1)[1]  # the flag's "no" wins too


def test_recipe_errors_are_one_line(demo: Path, tmp_path: Path) -> None:
    line = _one_line_error(_invoke(["train", "--recipe", "nope"]))
    assert "no such recipe" in line and all(name in line for name in RECIPES)
    line = _one_line_error(_invoke(["train", str(demo), "--recipe", "musiceval-baseline"]))
    assert "--audio-encoder" in line and "music_audioset_epoch_15_esc_90.14.pt" in line
    assert "laion/clap-htsat-unfused" in line and "--text-encoder" in line and "DATA" not in line
    line = _one_line_error(_invoke(["train", str(demo), "--recipe", "xacle-clap", "--audio-encoder", "x"]))
    assert "needs --text-encoder" in line and "--audio-encoder," not in line
    line = _one_line_error(_invoke(["train", "--recipe", "xacle-audiomos"]))
    assert "needs DATA" in line and "XACLE" in line
    line = _one_line_error(_invoke(["train", "--resume", "--name", "x", "--recipe", "xacle-audiomos"]))
    assert "drop --recipe" in line
    line = _one_line_error(_invoke(["train", str(demo), "--head", "per-target", "--audio-only-targets", "overall",
                                    "--text-encoder", "none", "--runs-dir", str(tmp_path)]))
    assert "--audio-only-targets overall:" in line and "has no such target (its targets: score, quality)" in line
    line = _one_line_error(_invoke(["train", str(demo), "--loss", "l1", "--clip-tau", "0.2",
                                    "--runs-dir", str(tmp_path)]))
    assert "--clip-tau" in line


def _submission_equals_validation(demo: Path, run: Path, tmp_path: Path) -> list[dict]:
    """Export `run`, write the XACLE submission file for the validation clips with the torch-free
    `mos score`, and check each row against what validation in PyTorch gave (val_predictions.csv,
    rounded to 1e-4 there); returns the rows."""
    assert _invoke(["export", str(run)]).exit_code == 0
    submission = tmp_path / "submission.csv"
    result = _invoke(["score", str(demo), "--split", "validation", "--bundle", str(run / "bundle"),
                      "--format", "xacle", "--out", str(submission)])
    assert result.exit_code == 0, result.output
    rows = read_csv(submission)
    truth = read_csv(demo / "meta_data" / "validation_average.csv")
    assert [r["wav_file_name"] for r in rows] == [r["wav_file_name"] for r in truth]
    predicted = {r["id"]: float(r["score"]) for r in read_csv(run / "val_predictions.csv")}
    for row in rows:
        assert float(row["pred_score"]) == pytest.approx(predicted[row["wav_file_name"]], abs=2e-3)
    return rows


@pytest.mark.slow
def test_recipe_xacle_audiomos_one_epoch_with_an_explicit_override(demo: Path, tmp_path: Path) -> None:
    result = _invoke(["train", str(demo), "--recipe", "xacle-audiomos", "--epochs", "1", "--text-encoder", "none",
                      "--lr", "0.002", "--runs-dir", str(tmp_path), "--name", "xa"])
    assert result.exit_code == 0, result.output
    run = tmp_path / "xa"
    train = json.loads((run / "config.json").read_text())["train"]
    assert train["lr"] == 0.002 and train["epochs"] == 1  # flags given win
    assert (train["accumulate"], train["batch_size"], train["patience"]) == (2, 16, 6)  # the recipe's
    assert (train["mse_weight"], train["rank_weight"], train["corr_weight"]) == (1.0, 0.5, 0.5)
    assert train["select_by"] == "srcc" and train["audio_encoder"] == "conv"
    assert (run / "checkpoints" / "best.pt").is_file() and (run / "val_predictions.csv").is_file()
    assert "BEST SAVED (mean SRCC" in result.output
    _submission_equals_validation(demo, run, tmp_path)


@pytest.mark.slow
def test_recipe_xacle_2027_baseline_on_m2d_clap_one_epoch_then_the_submission(demo: Path, tmp_path: Path) -> None:
    """The recipe with a tiny M2D-CLAP checkpoint (audio `#clap`, text the checkpoint's BERT + text_proj):
    one epoch, export, torch-free `mos score --format xacle`: the validation rows are what
    validation in PyTorch wrote to val_predictions.csv."""
    from fixtures_encoders import make_tiny_m2d_clap

    ckpt = make_tiny_m2d_clap(tmp_path / "weights")
    result = _invoke(["train", str(demo), "--recipe", "xacle-2027-baseline", "--epochs", "1",
                      "--audio-encoder", f"{ckpt}#clap", "--text-encoder", str(ckpt),
                      "--runs-dir", str(tmp_path), "--name", "x27", "--feature-cache", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    run = tmp_path / "x27"
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["train"]["audio_encoder"] == f"{ckpt.resolve()}#clap" and cfg["train"]["head_activation"] == "relu"
    assert (cfg["model"]["audio_dim"], cfg["model"]["text_dim"]) == (64, 64)
    rows = _submission_equals_validation(demo, run, tmp_path)
    assert np.std([float(r["pred_score"]) for r in rows]) > 0


@pytest.fixture(scope="module")
def musiceval(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A MusicEval-layout tree: 24 train and 8 dev clips of 0.5 s with prompts (overall, textual)."""
    return tiny_musiceval(tmp_path_factory.mktemp("me"))


def _answer_rows(path: Path) -> list[list[str]]:
    return [line.split(",") for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_recipe_musiceval_baseline_one_epoch_then_the_answer_file(musiceval: Path, tmp_path: Path) -> None:
    """One epoch of the baseline recipe on a tiny CLAP (audio and text): the baseline's two heads
    (overall on the audio embedding alone, textual on [audio, text], linear layers), SGD at a
    constant rate, selection by the validation loss; then export and `mos score --format audiomos`
    on the dev split, whose answer file holds PyTorch's scores."""
    from fixtures_encoders import PROJECTION, make_tiny_clap
    from mos.audio import read_audio
    from mos.model.text_encoder import load_text_encoder
    from mos.trainer.checkpoint import load_model

    clap = make_tiny_clap(tmp_path / "tiny-clap")
    result = _invoke(["train", str(musiceval), "--recipe", "musiceval-baseline", "--epochs", "1", "--batch-size", "4",
                      "--audio-encoder", str(clap), "--text-encoder", str(clap), "--runs-dir", str(tmp_path / "runs"),
                      "--name", "me"])
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "me"
    saved = json.loads((run / "config.json").read_text())
    train, model_cfg = saved["train"], saved["model"]
    assert (train["optimizer"], train["schedule"], train["loss"], train["select_by"]) == ("sgd", "constant", "l1", "loss")
    assert train["batch_size"] == 4 and train["lr"] == 5e-4 and train["finetune_audio"] is True
    assert model_cfg["head"] == "per-target" and model_cfg["audio_only_targets"] == ["overall"]
    # Raw-scale targets (normalised by mean 0, std 1: the heads learn the 1-5 scores), 77 tokens.
    assert [(t["mean"], t["std"]) for t in model_cfg["targets"]] == [(0.0, 1.0), (0.0, 1.0)]
    assert model_cfg["max_text_tokens"] == 77
    assert model_cfg["audio_encoder_kind"] == "clap" and model_cfg["finetune_audio"] is True
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert [g["lr"] for g in ckpt["optimizer"]["param_groups"]] == [5e-4, 5e-4]  # head and fine-tuned tower
    assert _metrics(run)[1]["lr"] == 5e-4
    best = json.loads((run / "best_metrics.json").read_text())
    assert best["selected_by"] == "loss" and best["epoch"] == 1
    assert "BEST SAVED (validation loss" in result.output
    assert "overall [UTTERANCE] MSE=" in result.output and "textual [SYSTEM] MSE=" in result.output  # per level, as the baseline prints

    model, _ = load_model(run)
    shapes = {name: [(m.in_features, m.out_features) for m in head] for name, head in model.heads.items()}
    assert shapes == {"overall": [(PROJECTION, 256), (256, 64), (64, 1)],
                      "textual": [(2 * PROJECTION, 256), (256, 64), (64, 1)]}  # CLAP audio and text: 24 each

    assert _invoke(["export", str(run)]).exit_code == 0
    answer = tmp_path / "answer.txt"
    result = _invoke(["score", str(musiceval), "--split", "dev", "--bundle", str(run / "bundle"),
                      "--format", "audiomos", "--out", str(answer)])
    assert result.exit_code == 0, result.output
    rows = _answer_rows(answer)
    dev = sorted(line.split(",")[0] for line in (musiceval / "sets" / "dev_mos_list.txt").read_text().split())
    assert sorted(r[0] + ".wav" for r in rows) == dev and all(len(r) == 3 for r in rows)
    captions = dict(line.split("\t") for line in (musiceval / "prompt_info.txt").read_text().splitlines())
    text = load_text_encoder(str(clap), model.cfg.max_text_tokens)
    for name, overall, textual in rows:
        x = torch.from_numpy(read_audio(musiceval / "wav" / f"{name}.wav", model.cfg.sample_rate)).unsqueeze(0)
        (token,) = text.encode([captions[name.rsplit("_", 1)[1]]])  # one pooled feature [1, D]
        feats, lengths = token.unsqueeze(0), torch.tensor([token.shape[0]])
        with torch.no_grad():
            expected = model.scores(x, torch.tensor([x.shape[1]]), feats, lengths)[0]
        assert [float(overall), float(textual)] == pytest.approx(expected.tolist(), abs=1e-3)
    # The raw-scale model's outputs lie below 1 after one small step, so the answer file holds
    # clamped 1s: the bundle's unclamped scores are PyTorch's too.
    from mos.runtime.engine import ScoreEngine

    meta = json.loads((run / "bundle" / "mos.json").read_text())
    assert meta["text"]["max_tokens"] == 77
    engine = ScoreEngine.load(run / "bundle")
    names = [r[0] for r in rows]
    waves = [read_audio(musiceval / "wav" / f"{n}.wav", model.cfg.sample_rate) for n in names]
    prompts = [captions[n.rsplit("_", 1)[1]] for n in names]
    raw = engine.score_segments(waves, prompts)
    with torch.no_grad():
        for i, (wave, prompt) in enumerate(zip(waves, prompts)):
            (token,) = text.encode([prompt])
            x = torch.from_numpy(wave).unsqueeze(0)
            expected = model.scores(x, torch.tensor([x.shape[1]]), token.unsqueeze(0), torch.tensor([token.shape[0]]),
                                    clamp=False)[0]
            assert raw[i].tolist() == pytest.approx(expected.tolist(), abs=1e-3)
    print(f"unclamped scores from the bundle: {raw.min():.3f} to {raw.max():.3f}")


@pytest.mark.slow
def test_recipe_musiceval_baseline_exact_feeds_16khz_audio_to_48khz_clap(musiceval: Path, tmp_path: Path) -> None:
    """The quirk: the model's rate is 16 kHz and its window the CLAP window's 480000 samples (30 s of
    16 kHz audio), recorded in the checkpoint and the bundle; `mos score` resamples to 16 kHz and
    gives PyTorch's scores."""
    import csv
    import shutil

    from fixtures_encoders import make_tiny_clap
    from mos.audio import read_audio
    from mos.trainer.checkpoint import load_model

    clap = make_tiny_clap(tmp_path / "tiny-clap")
    result = _invoke(["train", str(musiceval), "--recipe", "musiceval-baseline-exact", "--epochs", "1", "--batch-size", "4",
                      "--freeze-audio", "--audio-encoder", str(clap), "--text-encoder", "none",
                      "--runs-dir", str(tmp_path / "runs"), "--name", "ex"])
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "ex"
    model_cfg = json.loads((run / "config.json").read_text())["model"]
    assert (model_cfg["sample_rate"], model_cfg["window_seconds"]) == (16000, 30.0)
    assert "fed 16000 Hz audio as 48000 Hz" in result.output
    model, _ = load_model(run)
    assert model.audio_encoder.front_end.samples == 480000 == int(model.cfg.window_seconds * model.cfg.sample_rate)
    assert _invoke(["export", str(run)]).exit_code == 0
    meta = json.loads((run / "bundle" / "mos.json").read_text())
    assert meta["sample_rate"] == 16000 and meta["window_seconds"] == 30.0
    clips = tmp_path / "clips"
    clips.mkdir()
    for wav in sorted(musiceval.rglob("*.wav"))[:3]:
        shutil.copy(wav, clips / wav.name)
    out = tmp_path / "scores.csv"
    result = _invoke(["score", str(clips), "--bundle", str(run / "bundle"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 3
    assert model.cfg.target_names == ["overall", "textual"]
    assert [(t.mean, t.std) for t in model.cfg.targets] == [(0.0, 1.0), (0.0, 1.0)]  # raw-scale targets
    from mos.runtime.engine import ScoreEngine

    engine = ScoreEngine.load(run / "bundle")
    for row in rows:
        wave = read_audio(row["path"], 16000)
        x = torch.from_numpy(wave).unsqueeze(0)
        with torch.no_grad():
            expected = model.scores(x, torch.tensor([x.shape[1]]))[0].tolist()
            unclamped = model.scores(x, torch.tensor([x.shape[1]]), clamp=False)[0].tolist()
        assert [float(row["overall"]), float(row["textual"])] == pytest.approx(expected, abs=1e-3)
        assert engine.score_segments([wave], [None])[0].tolist() == pytest.approx(unclamped, abs=1e-3)


def test_one_cycle_schedules_of_any_length_rise_then_fall() -> None:
    """Runs of 10 optimiser steps or fewer (one epoch of a tiny set) used to end in
    ZeroDivisionError inside OneCycleLR: every length from 0 to 40 steps now trains."""
    import warnings

    from mos.trainer.schedule import advance, one_cycle

    warnings.simplefilter("ignore", UserWarning)
    for total in range(0, 41):
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.AdamW([p], lr=1e-3)
        scheduler = one_cycle(opt, 1e-3, total)
        lrs = []
        for _ in range(max(total, 1)):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            advance(scheduler)
        assert all(0 < lr <= 1e-3 for lr in lrs), (total, lrs)
        peak = int(np.argmax(lrs))
        assert lrs[: peak + 1] == sorted(lrs[: peak + 1]) and lrs[peak:] == sorted(lrs[peak:], reverse=True), total


# -- the MusicEval baseline's training, exactly -------------------------------------------------------


def test_loss_reduction_sum_adds_the_targets_losses() -> None:
    """--loss-reduction sum: the baseline's loss1.backward(); loss2.backward() is the gradient of
    the SUM of the per-head L1 losses, twice that of their mean with two heads."""
    from mos.trainer.losses import distribution_loss

    pred = torch.tensor([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0]])
    true = torch.tensor([[2.0, 1.0], [0.0, 1.0], [1.0, 3.0]])
    l1 = [(2 + 1 + 1) / 3, (0 + 0 + 2) / 3]
    assert float(combined_loss(pred, true, 1.0, 0.0, 0.0, pointwise="l1", reduction="sum")) == pytest.approx(sum(l1))
    assert float(combined_loss(pred, true, 1.0, 0.0, 0.0, pointwise="l1")) == pytest.approx(sum(l1) / 2)
    logits = torch.randn(3, 2, 5, generator=torch.Generator().manual_seed(0))
    target = torch.softmax(torch.randn(3, 2, 5, generator=torch.Generator().manual_seed(1)), -1)
    per_target = [float(distribution_loss(logits[:, j:j + 1], target[:, j:j + 1])) for j in range(2)]
    assert float(distribution_loss(logits, target, "sum")) == pytest.approx(sum(per_target), rel=1e-6)
    for changes, message in [(dict(loss_reduction="total"), "--loss-reduction total: expected mean or sum"),
                             (dict(target_scale="minmax"), "--target-scale minmax: expected zscore or raw"),
                             (dict(encoder_mode="frozen"), "--encoder-mode frozen: expected train or eval"),
                             (dict(grad_clip=-1.0), "--grad-clip -1: must not be negative"),
                             (dict(max_text_tokens=0), "--max-text-tokens 0: must be at least 1")]:
        with pytest.raises(MosError, match=message.replace("-", r"\-")):
            TrainConfig(**changes).check()


@pytest.fixture(scope="module")
def tiny_clap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fixtures_encoders import make_tiny_clap

    return make_tiny_clap(tmp_path_factory.mktemp("clap") / "tiny-clap")


@pytest.fixture(scope="module")
def small_musiceval(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 train clips (prompts 2 and 3, systems 0 and 1) and 4 dev clips."""
    return tiny_musiceval(tmp_path_factory.mktemp("me-small"), systems=2, prompts=4)


def _exact(tree: Path, clap: Path, root: Path, **changes) -> TrainConfig:
    """The musiceval-baseline-exact recipe as shipped, on the tiny CLAP (audio and text), CPU,
    one batch holding every training clip."""
    settings = {**load_recipe("musiceval-baseline-exact").settings, "data": str(tree), "audio_encoder": str(clap),
                "text_encoder": str(clap), "runs_dir": str(root / "runs"), "name": "exact", "epochs": 1,
                "batch_size": 4, "device": "cpu", "seed": 0}
    settings.update(changes)
    return TrainConfig(**settings)


def _exact_trainer(cfg: TrainConfig):
    from mos.trainer.loop import Trainer
    from mos.trainer.splits import resolve_splits

    splits = resolve_splits(Path(cfg.data), None, cfg.val_fraction, cfg.seed, None, None)
    return Trainer(cfg, splits, quiet()[0], Path(cfg.runs_dir) / cfg.name), splits


def _clip_scores(model, clap: Path, items, max_tokens: int) -> torch.Tensor:
    """Each clip alone through `model` (16 kHz audio, its caption's CLAP embedding): the unclamped
    scores on the rating scale [clips, targets], with the graph (for a backward)."""
    from mos.audio import read_audio
    from mos.model.text_encoder import load_text_encoder

    text = load_text_encoder(str(clap), max_tokens)
    rows = []
    for it in items:
        x = torch.from_numpy(read_audio(it.path, model.cfg.sample_rate)).unsqueeze(0)
        (token,) = text.encode([it.caption])
        rows.append(model.scores(x, torch.tensor([x.shape[1]]), token.unsqueeze(0), torch.tensor([token.shape[0]]),
                                 clamp=False)[0])
    return torch.stack(rows)


def test_exact_recipe_takes_the_baselines_sgd_step(small_musiceval: Path, tiny_clap: Path, tmp_path: Path) -> None:
    """One optimiser step of musiceval-baseline-exact equals the baseline's step computed here by
    hand: the L1 loss of each head on the RAW scores (1-5), the two heads' losses SUMMED (its two
    backward calls), CLAP in eval mode (no dropout), no gradient clipping, then SGD (lr 5e-4,
    momentum 0.9, no weight decay) on every trainable parameter, the audio tower's included."""
    import copy

    cfg = _exact(small_musiceval, tiny_clap, tmp_path)
    trainer, splits = _exact_trainer(cfg)
    assert len(splits.train.items) == cfg.batch_size == 4
    before = copy.deepcopy(trainer.model).eval()
    trainer.train_epoch(1)
    assert trainer.steps == 1
    names = trainer.model.cfg.target_names
    assert names == ["overall", "textual"]
    scores = _clip_scores(before, tiny_clap, splits.train.items, 77)
    true = torch.tensor([[it.targets[n] for n in names] for it in splits.train.items])
    loss = (scores - true).abs().mean(0).sum()  # L1 per head over the batch, the heads' losses added
    loss.backward()
    params = [(n, p) for n, p in before.named_parameters() if p.requires_grad]
    reached = [(n, p) for n, p in params if p.grad is not None]
    assert any(n.startswith("audio_encoder.backbone.") for n, _ in reached)  # the audio tower is fine-tuned
    assert any(n.startswith("heads.overall.") for n, _ in reached) and any(n.startswith("heads.textual.") for n, _ in reached)
    after = dict(trainer.model.named_parameters())
    # The gradient the trainer stepped with: SGD's momentum buffer after its first step.
    used = torch.cat([trainer.optimizer.state[after[n]]["momentum_buffer"].flatten() for n, _ in reached])
    hand = torch.cat([p.grad.flatten() for _, p in reached])
    error = float((used - hand).norm() / hand.norm())
    print(f"gradient norm {float(hand.norm()):.3f}; the trainer's gradient differs from the hand-computed one "
          f"by {error:.1e} of its norm")
    assert error < 1e-4  # measured 2.3e-7; z-scored targets give 1.14, the mean over targets 0.5, dropout 2.3e-3
    for n, p in reached:  # the step: lr 5e-4 times that gradient (momentum's first step, no weight decay)
        assert torch.allclose(after[n].detach(), torch.add(p.detach(), p.grad, alpha=-5e-4), rtol=1e-6, atol=1e-9), n
    for n, p in params:  # parameters the loss does not reach do not move
        if p.grad is None:
            assert torch.equal(after[n].detach(), p.detach()), n


def test_exact_recipe_selects_on_the_unclamped_validation_loss(small_musiceval: Path, tiny_clap: Path,
                                                               tmp_path: Path) -> None:
    """The baseline keeps the epoch of the lowest validation loss computed on its heads' raw
    outputs, never clamped to 1-5: the untrained model's outputs lie below 1, where a clamped
    loss would not see them move."""
    cfg = _exact(small_musiceval, tiny_clap, tmp_path)
    trainer, splits = _exact_trainer(cfg)
    val, vloss, pred, _ = trainer.validate()
    names = trainer.model.cfg.target_names
    with torch.no_grad():
        scores = _clip_scores(trainer.model.eval(), tiny_clap, splits.validation.items, 77)
    true = torch.tensor([[it.targets[n] for n in names] for it in splits.validation.items])
    unclamped = float((scores - true).abs().mean(0).sum())
    clamped = float((scores.clamp(1.0, 5.0) - true).abs().mean(0).sum())
    assert abs(clamped - unclamped) > 0.1  # the two differ here
    assert vloss == pytest.approx(unclamped, rel=1e-5)
    assert trainer.selection_score(val, vloss) == -vloss
    assert pred.min() >= 1.0  # the metrics and the predictions written are still the clamped scores


def test_exact_recipe_tokenises_captions_to_77_tokens(small_musiceval: Path, tiny_clap: Path, tmp_path: Path) -> None:
    """LAION-CLAP's tokenizer call truncates captions at 77 tokens (padding them to 77, which
    changes no embedding: the padding is masked); the recipe's model and its bundle's tokenizer
    keep 77."""
    from mos.model.text_encoder import FrozenTextEncoder
    from mos.runtime.text import load_tokenizer
    from mos.trainer.model_setup import build_model_config
    from mos.trainer.splits import resolve_splits

    cfg = _exact(small_musiceval, tiny_clap, tmp_path)
    model_cfg = build_model_config(cfg, resolve_splits(small_musiceval, None, 0.2, 0, None, None).train)
    assert model_cfg.max_text_tokens == 77
    encoder = FrozenTextEncoder(str(tiny_clap), max_tokens=model_cfg.max_text_tokens)
    long_caption = "rain on a roof, then drums and a piano; " * 12
    short_caption = "a dog barks twice"
    batch = encoder.tokenize([long_caption, short_caption])
    assert batch["input_ids"].shape == (2, 77) and int(batch["attention_mask"][0].sum()) == 77
    baseline = encoder.tokenizer([long_caption, short_caption], padding="max_length", truncation=True,
                                 max_length=77, return_tensors="pt")
    assert torch.equal(baseline["input_ids"][0], batch["input_ids"][0])
    with torch.no_grad():
        theirs = encoder.module(baseline["input_ids"], baseline["attention_mask"])[:, 0]
    ours = torch.cat(encoder.encode([long_caption, short_caption]))
    assert torch.allclose(ours, theirs, atol=1e-5)
    with torch.no_grad():  # 64 tokens would give the long caption another embedding
        cut = encoder.module(baseline["input_ids"][:1, :64], baseline["attention_mask"][:1, :64])[:, 0]
    assert not torch.allclose(cut, theirs[:1], atol=1e-3)
    runtime = load_tokenizer(encoder.save_tokenizer(tmp_path / "tokenizer.json"), model_cfg.max_text_tokens)
    assert len(runtime.encode(long_caption).ids) == 77


def test_max_text_tokens_beyond_the_encoder_is_one_line(small_musiceval: Path, tmp_path: Path) -> None:
    line = _one_line_error(_invoke(["train", str(small_musiceval), "--max-text-tokens", "600", "--text-encoder", "minilm",
                                    "--runs-dir", str(tmp_path)]))
    assert "--max-text-tokens 600" in line and "at most 512 tokens" in line
