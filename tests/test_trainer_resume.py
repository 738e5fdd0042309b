"""Resume and crash safety: the learning rate after --resume, the run's own config with printed
overrides, kills at every write point, existing run folders, the true stop reason, safe loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from fixtures_train import quiet, tiny_demo  # noqa: E402

import mos.files as files_module  # noqa: E402
import mos.trainer.checkpoint as checkpoint_module  # noqa: E402
import mos.trainer.loop as loop_module  # noqa: E402
from mos.errors import MosError  # noqa: E402
from mos.trainer.checkpoint import load_checkpoint, load_model  # noqa: E402
from mos.trainer.config import TrainConfig  # noqa: E402
from mos.trainer.run import run_training  # noqa: E402


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_demo(tmp_path_factory.mktemp("tiny"))


def _cfg(runs: Path, data: Path, **kw) -> TrainConfig:
    base = dict(data=str(data), name="r", runs_dir=str(runs), epochs=4, batch_size=8, patience=10, lr=3e-3, seed=1,
                text_encoder="none", gain_db=3.0, max_seconds=0.3)
    base.update(kw)
    return TrainConfig(**base)


def _metrics(run: Path) -> list[dict]:
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    for x in lines:
        x.pop("seconds", None)
    return lines


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["state_dict"]


@pytest.fixture(scope="module")
def straight(demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted 4-epoch run (random crops and gains, so every generator matters)."""
    runs = tmp_path_factory.mktemp("straight")
    run_training(_cfg(runs, demo), quiet()[0])
    return runs / "r"


@pytest.mark.slow
def test_resume_with_more_epochs_follows_the_longer_schedule(demo: Path, straight: Path, tmp_path: Path) -> None:
    run_training(_cfg(tmp_path, demo, epochs=2), quiet()[0])
    console, out = quiet()
    run_training(_cfg(tmp_path, demo, epochs=4, resume=True), console, explicit={"epochs"})
    resumed, ref = _metrics(tmp_path / "r"), _metrics(straight)
    assert [x["epoch"] for x in resumed] == [0, 1, 2, 3, 4]
    for a, b in zip(resumed[3:], ref[3:]):  # epochs 3 and 4: the lr an uninterrupted 4-epoch run uses
        assert a["steps"] == b["steps"]
        assert a["lr"] == pytest.approx(b["lr"], rel=1e-12)
    assert resumed[3]["lr"] > 1e-4  # not the ~4e-9 floor of the 2-epoch schedule
    optimizer = load_checkpoint(tmp_path / "r" / "checkpoints" / "last.pt")["optimizer"]
    assert optimizer["param_groups"][0]["lr"] == pytest.approx(ref[4]["lr"], rel=1e-12)


class Killed(BaseException):
    """Stands in for SIGKILL: nothing in the trainer catches it."""


def _kill_on(monkeypatch: pytest.MonkeyPatch, module, name: str, when) -> dict:
    """Make module.name raise Killed the first time when(*args) holds (after or instead of running)."""
    real = getattr(module, name)
    state = {"killed": False}

    def wrapper(*args, **kwargs):
        if not state["killed"] and when(*args):
            state["killed"] = True
            raise Killed()
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)
    return state


def _epoch_of_entry(_self, entry) -> bool:
    return entry["epoch"] == 2


KILL_POINTS = {
    # mid-epoch: during epoch 3's validation
    "mid-epoch": (loop_module.Trainer, "validate", lambda self: len(self.history) == 3),
    # last.pt half written (its temporary file is never renamed)
    "writing last.pt": (files_module, "_sync_and_replace", lambda tmp, path: path.name == "last.pt"
                        and load_checkpoint(tmp)["epoch"] == 2),
    # last.pt written, best.pt not yet (epoch 2 or the next epoch that improves)
    "before best.pt": (loop_module, "copy_checkpoint", lambda src, dest: load_checkpoint(src)["epoch"] >= 2),
    # both checkpoints written, the metrics line not yet
    "before metrics line": (loop_module.Trainer, "_append_metrics", _epoch_of_entry),
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
@pytest.mark.slow
def test_a_kill_anywhere_resumes_to_the_uninterrupted_run(point: str, demo: Path, straight: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    module, name, when = KILL_POINTS[point]
    state = _kill_on(monkeypatch, module, name, when)
    with pytest.raises(Killed):
        run_training(_cfg(tmp_path, demo), quiet()[0])
    assert state["killed"]
    monkeypatch.undo()
    run_training(_cfg(tmp_path, demo, resume=True), quiet()[0])
    run = tmp_path / "r"
    assert _metrics(run) == _metrics(straight)  # no duplicated or missing epoch, same figures
    for ckpt in ("last.pt", "best.pt"):
        got, want = _weights(run / "checkpoints" / ckpt), _weights(straight / "checkpoints" / ckpt)
        assert all(torch.equal(got[k], want[k]) for k in want), ckpt
    assert load_checkpoint(run / "checkpoints" / "best.pt")["epoch"] == load_checkpoint(
        straight / "checkpoints" / "best.pt")["epoch"]
    assert not list((run / "checkpoints").glob(".*.tmp"))


@pytest.mark.slow
def test_stop_reason_is_the_true_one(demo: Path, tmp_path: Path) -> None:
    # lr 0: the weights never change, so epoch 1 is the best and no later epoch improves.
    console, out = quiet()
    result = run_training(_cfg(tmp_path, demo, name="budget", epochs=2, patience=1, lr=0.0), console)
    assert result.stopped == "epoch budget"
    assert "EARLY STOPPING" not in out.getvalue() and "EPOCH BUDGET REACHED: all 2 epochs" in out.getvalue()
    console, out = quiet()
    result = run_training(_cfg(tmp_path, demo, name="patience", epochs=5, patience=1, lr=0.0), console)
    assert result.stopped == "early stopping"
    assert "EARLY STOPPING: no better mean validation SRCC in 1 epochs (stopped after epoch 2 of 5)" in out.getvalue()
    assert [x["epoch"] for x in _metrics(tmp_path / "patience")] == [0, 1, 2]
    assert json.loads((tmp_path / "patience" / "best_metrics.json").read_text())["stopped"] == "early stopping"
    # resuming either run trains nothing, and says why instead of claiming a stop reason
    console, out = quiet()
    run_training(_cfg(tmp_path, demo, name="patience", epochs=9, patience=1, lr=0.0, resume=True), console,
                 explicit={"epochs"})
    assert "NOTHING TO TRAIN: it had already stopped early" in out.getvalue() and "EARLY STOPPING" not in out.getvalue()
    console, out = quiet()
    run_training(_cfg(tmp_path, demo, name="budget", epochs=1, patience=1, lr=0.0, resume=True), console,
                 explicit={"epochs"})
    assert "NOTHING TO TRAIN: it already has 2 epochs" in out.getvalue() and "EPOCH BUDGET" not in out.getvalue()


def mos(*args: str, cwd: Path):
    """`mos ARGS` run in `cwd` through typer's CliRunner (exit code, stdout, stderr as a user sees them)."""
    from typer.testing import CliRunner

    from mos.cli import app

    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        result = CliRunner().invoke(app, list(args))
    result.returncode = result.exit_code
    return result


@pytest.mark.slow
def test_resume_uses_the_runs_config_and_prints_overrides(demo: Path, tmp_path: Path) -> None:
    first = mos("train", str(demo), "--name", "r", "--epochs", "2", "--patience", "7", "--batch-size", "8",
                "--max-seconds", "0.3", "--text-encoder", "none", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    # No data argument and no other flags: the run's own data, batch size, patience and window.
    out = mos("train", "--resume", "--name", "r", "--epochs", "3", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "overrides: --epochs 2 -> 3" in out.stdout
    saved = json.loads((tmp_path / "runs" / "r" / "config.json").read_text())["train"]
    assert (saved["epochs"], saved["patience"], saved["batch_size"], saved["max_seconds"]) == (3, 7, 8, 0.3)
    assert saved["text_encoder"] == "none"
    assert [x["epoch"] for x in _metrics(tmp_path / "runs" / "r")] == [0, 1, 2, 3]
    # A setting that would make it another run is refused, in one line.
    bad = mos("train", str(demo), "--resume", "--name", "r", "--batch-size", "4", cwd=tmp_path)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "--batch-size is 8, not 4" in bad.stderr


@pytest.mark.slow
def test_existing_run_folder_needs_resume_or_overwrite(demo: Path, tmp_path: Path) -> None:
    args = ("train", str(demo), "--name", "x", "--epochs", "1", "--batch-size", "8", "--text-encoder", "none")
    assert mos(*args, cwd=tmp_path).returncode == 0
    stale = tmp_path / "runs" / "x" / "bundle"
    stale.mkdir()
    again = mos(*args, cwd=tmp_path)
    assert again.returncode == 2 and "Traceback" not in again.stderr
    err = again.stderr.strip()
    assert len(err.splitlines()) == 1 and "runs/x" in err and "--resume" in err and "--overwrite" in err
    assert stale.is_dir()  # nothing was touched
    replaced = mos(*args, "--overwrite", cwd=tmp_path)
    assert replaced.returncode == 0, replaced.stderr
    assert not stale.exists() and (tmp_path / "runs" / "x" / "checkpoints" / "best.pt").is_file()
    # --overwrite never deletes a folder that is not a run folder
    other = tmp_path / "runs" / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("mine")
    refused = mos("train", str(demo), "--name", "notes", "--overwrite", "--text-encoder", "none", cwd=tmp_path)
    assert refused.returncode == 2 and "not a mos run folder" in refused.stderr
    assert (other / "todo.txt").read_text() == "mine"


class Payload:
    """A pickle that runs code when loaded without weights_only."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def test_checkpoints_load_weights_only(tmp_path: Path, straight: Path) -> None:
    marker = tmp_path / "ran.txt"
    evil = tmp_path / "evil.pt"
    torch.save({"model_config": {}, "state_dict": {}, "x": Payload(marker)}, evil)
    with pytest.raises(MosError, match="evil.pt: not a mos checkpoint, or it holds more than weights") as err:
        load_checkpoint(evil)
    assert not marker.exists() and "\n" not in str(err.value)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(MosError, match="junk.pt: not a"):
        load_checkpoint(junk)
    # what the trainer writes loads, including every generator state needed to resume
    ckpt = load_checkpoint(straight / "checkpoints" / "last.pt")
    assert set(ckpt["trainer_state"]["rng"]) == {"python", "numpy", "torch", "cuda", "loader", "dataset"}
    load_model(straight)
    # a checkpoint written before this version (a OneCycleLR state in it) still loads
    model, _ = load_model(straight)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=10)
    old = tmp_path / "old.pt"
    checkpoint_module.save_checkpoint(old, model, {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                                                   "trainer_state": {"torch_rng": torch.get_rng_state()}})
    assert load_checkpoint(old)["scheduler"]["total_steps"] == 10


@pytest.mark.slow
def test_a_run_saved_by_the_previous_version_resumes(straight: Path, tmp_path: Path) -> None:
    """last.pt of the previous trainer: a OneCycleLR state and two generator states, no step count."""
    import shutil

    run = tmp_path / "r"
    shutil.copytree(straight, run)
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    st = ckpt["trainer_state"]
    steps = st.pop("optimizer_steps")
    rng = st.pop("rng")
    st.update(torch_rng=rng["torch"], loader_rng=rng["loader"])
    ckpt["scheduler"] = {"last_epoch": steps, "total_steps": steps}
    torch.save(ckpt, run / "checkpoints" / "last.pt")
    cfg = json.loads((run / "config.json").read_text())
    cfg["train"]["data"] = cfg.pop("data_dir")  # and no data_dir in its config.json
    (run / "config.json").write_text(json.dumps(cfg))
    run_training(_cfg(tmp_path, Path("unused"), epochs=5, resume=True), quiet()[0], explicit={"epochs"})
    lines = _metrics(run)
    assert [x["epoch"] for x in lines] == [0, 1, 2, 3, 4, 5]
    assert lines[5]["steps"] == steps + lines[1]["steps"]
