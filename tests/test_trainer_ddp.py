"""Training on two CPU processes (DDP over gloo, started by `mos train --nproc 2`) against one
process with the same global batch and seed: the global batch order, the losses on the gathered
batch, the gradient arithmetic (SGD, so a wrong gradient scale shows), validation gathered from
both ranks, rank 0 alone printing and writing, --resume of a DDP run, and every worker ending
with its process group destroyed (no gloo thread left to race the interpreter's shutdown)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fixtures_train import quiet, read_csv, tiny_demo  # noqa: E402

from mos.trainer.batches import ClipDataset, make_loader  # noqa: E402
from mos.trainer.checkpoint import load_checkpoint  # noqa: E402
from mos.trainer.config import TrainConfig  # noqa: E402
from mos.trainer.distributed import shard_bounds, strip_nproc  # noqa: E402
from mos.trainer.run import run_training  # noqa: E402
from mos.trainer.splits import resolve_splits  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# Dropout off: with it, each process draws masks for its own rows, so the runs differ by chance.
# SGD at a constant rate: the update is proportional to the gradient, so a gradient off by the
# world size would show (AdamW would hide it), and a resumed run continues the same schedule.
SETTINGS = ("--epochs", "2", "--batch-size", "8", "--text-encoder", "none", "--dropout", "0", "--optimizer", "sgd",
            "--lr", "0.02", "--schedule", "constant", "--seed", "3")
# Measured on a 2-core CPU: the 2-process run's losses and metrics equal the 1-process run's to
# within 3e-7 relative (summation order of the gathered batch and of gloo's all-reduce).
REL = 1e-5


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_demo(tmp_path_factory.mktemp("tiny"))


# Imported by every process the test starts (a sitecustomize on PYTHONPATH): a torchrun worker
# (RANK set) records, when it exits, the names of the threads it still has.
THREADS_AT_EXIT = """
import atexit, os

def _record():
    out, rank = os.environ.get("MOS_TEST_EXIT_THREADS"), os.environ.get("RANK")
    if out and rank is not None:
        names = []
        for tid in os.listdir("/proc/self/task"):
            try:
                names.append(open(f"/proc/self/task/{tid}/comm").read().strip())
            except OSError:
                pass
        with open(os.path.join(out, f"rank{rank}-{os.getpid()}.txt"), "w") as f:
            f.write("\\n".join(names))

atexit.register(_record)
"""


def mos(*args: str, cwd: Path, threads_dir: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout, in the torchrun processes too
    if threads_dir is not None:
        hook = threads_dir / "hook"
        hook.mkdir(parents=True, exist_ok=True)
        (hook / "sitecustomize.py").write_text(THREADS_AT_EXIT)
        env.update(PYTHONPATH=os.pathsep.join((str(ROOT), str(hook))), MOS_TEST_EXIT_THREADS=str(threads_dir))
    return subprocess.run([sys.executable, "-m", "mos", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def exit_threads(threads_dir: Path) -> dict[str, list[str]]:
    """Each worker's threads at exit, by the file its sitecustomize wrote (rank<r>-<pid>.txt)."""
    return {p.stem: p.read_text().split("\n") for p in sorted(threads_dir.glob("rank*.txt"))}


def metrics(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def single(demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One process, three epochs."""
    runs = tmp_path_factory.mktemp("single")
    cfg = TrainConfig(data=str(demo), name="one", runs_dir=str(runs), epochs=3, batch_size=8, text_encoder="none",
                      dropout=0.0, optimizer="sgd", lr=0.02, schedule="constant", seed=3)
    run_training(cfg, quiet()[0])
    return runs / "one"


@pytest.fixture(scope="module")
def ddp(demo: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two processes, two epochs; then resumed (two processes) to three."""
    runs = tmp_path_factory.mktemp("ddp")
    threads = {"first": tmp_path_factory.mktemp("threads-first"), "resumed": tmp_path_factory.mktemp("threads-resumed")}
    first = mos("train", str(demo), "--name", "two", "--runs-dir", str(runs), *SETTINGS, "--nproc", "2", cwd=runs,
                threads_dir=threads["first"])
    assert first.returncode == 0, first.stderr[-3000:]
    run = runs / "two"
    before = metrics(run)
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    resumed = mos("train", "--name", "two", "--runs-dir", str(runs), "--resume", "--epochs", "3", "--nproc", "2",
                  cwd=runs, threads_dir=threads["resumed"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return {"run": run, "before": before, "after": metrics(run), "out": first.stdout, "resume_out": resumed.stdout,
            "last_state": last["trainer_state"], "exit_threads": {k: exit_threads(v) for k, v in threads.items()}}


def _close(a: dict, b: dict) -> None:
    assert a["epoch"] == b["epoch"]
    for key in ("train_loss", "val_loss"):
        if b[key] is None:
            assert a[key] is None
        else:
            assert a[key] == pytest.approx(b[key], rel=REL), key
    for target, m in b["val"].items():
        for name in ("mse", "lcc", "srcc", "ktau"):
            assert a["val"][target][name] == pytest.approx(m[name], rel=REL, abs=1e-6), (target, name)


@pytest.mark.slow
def test_two_processes_train_as_one_with_the_same_global_batch(single: Path, ddp: dict) -> None:
    ref = metrics(single)
    assert [x["epoch"] for x in ddp["before"]] == [0, 1, 2]
    for a, b in zip(ddp["before"], ref[:3]):
        _close(a, b)
    assert ddp["before"][2]["steps"] == ref[2]["steps"] == 8  # 32 clips, global batches of 8
    assert ref[2]["train_loss"] < 0.9 * ref[1]["train_loss"]  # it learns: the comparison means something


def test_rank_zero_alone_prints_and_writes(ddp: dict) -> None:
    out = ddp["out"]
    assert out.count("DDP: 2 processes (gloo); global batch 8 clips (4 per process) per optimiser step") == 1
    assert out.count("EPOCH 1:") == 1 and out.count("run folder:") == 1
    assert len(ddp["before"]) == 3  # one metrics line per epoch, not one per rank
    rngs = ddp["last_state"]["rng_ranks"]  # each rank's own generators, for --resume
    assert len(rngs) == 2 and ddp["last_state"]["rng"]["loader"].equal(rngs[0]["loader"])
    assert rngs[0]["loader"].equal(rngs[1]["loader"])  # the shared batch order
    assert not torch.equal(rngs[0]["torch"], rngs[1]["torch"])  # but each rank its own dropout stream


def test_resumed_ddp_run_continues_as_one_process_would(single: Path, ddp: dict, demo: Path) -> None:
    ref = metrics(single)
    assert "resuming" in ddp["resume_out"] and ddp["resume_out"].count("EPOCH 3:") == 1
    assert [x["epoch"] for x in ddp["after"]] == [0, 1, 2, 3]
    _close(ddp["after"][3], ref[3])
    rows, ref_rows = read_csv(ddp["run"] / "val_predictions.csv"), read_csv(single / "val_predictions.csv")
    assert len(rows) == 12 and [r["id"] for r in rows] == [r["id"] for r in ref_rows]  # gathered in manifest order
    for r, q in zip(rows, ref_rows):
        for k in ("score", "quality"):
            assert float(r[k]) == pytest.approx(float(q[k]), abs=2e-4)  # written with 4 decimals


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads thread names from /proc (Linux)")
def test_every_worker_exits_with_its_process_group_destroyed(ddp: dict) -> None:
    """Nothing of gloo is left when a worker exits, after training and after a resume: a gloo
    thread alive at exit can be letting go of the last collective's tensors while Python
    finalises, and aborts the process (exit code 134, a few runs in ten on a loaded 2-core machine)."""
    for run, workers in ddp["exit_threads"].items():
        assert sorted(name.split("-")[0] for name in workers) == ["rank0", "rank1"], (run, workers)
        for worker, names in workers.items():
            assert names and not [n for n in names if "gloo" in n], (run, worker, names)


def test_each_rank_gets_a_contiguous_chunk_of_the_single_process_batches(demo: Path) -> None:
    splits = resolve_splits(demo, None, 0.2, 0, None, None)
    names = splits.train.target_names
    zeros, ones = np.zeros(len(names), np.float32), np.ones(len(names), np.float32)
    ds = ClipDataset(splits.train, 16000, names, zeros, ones, None)

    def order(shard: tuple[int, int] | None, batch: int) -> list[list[list[int]]]:
        """Two epochs of batches (manifest positions) from one loader and generator."""
        loader = make_loader(ds, batch, True, 0, torch.Generator().manual_seed(5), True, shard)
        return [[b.index.tolist() for b in loader] for _ in range(2)]

    for world, batch in ((2, 8), (3, 8)):
        one = order(None, batch)
        ranks = [order((r, world), batch) for r in range(world)]
        for epoch in range(2):  # two epochs: the generator advances alike
            for k, global_batch in enumerate(one[epoch]):
                chunks = [ranks[r][epoch][k] for r in range(world)]
                assert sum(chunks, []) == global_batch
                assert max(map(len, chunks)) - min(map(len, chunks)) <= 1


def test_shards_and_arguments() -> None:
    assert [shard_bounds(12, r, 2) for r in range(2)] == [(0, 6), (6, 12)]
    assert [shard_bounds(2, r, 3) for r in range(3)] == [(0, 1), (1, 2), (2, 2)]
    assert strip_nproc(["train", "d", "--nproc", "2", "--epochs", "3"]) == ["train", "d", "--epochs", "3"]
    assert strip_nproc(["train", "--nproc=4", "--name", "x"]) == ["train", "--name", "x"]


@pytest.mark.slow
def test_nproc_refusals_are_one_line(demo: Path, tmp_path: Path) -> None:
    for args, expected in ((("--batch-size", "1", "--nproc", "2"), "--batch-size 1 is the global batch"),
                           (("--folds", "2", "--nproc", "2"), "cross-validation runs in one process")):
        r = mos("train", str(demo), "--runs-dir", str(tmp_path), "--text-encoder", "none", *args, cwd=tmp_path)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and expected in r.stderr, r.stderr
    r = mos("train", str(tmp_path / "missing"), "--runs-dir", str(tmp_path), "--nproc", "2", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
