"""Training on several processes with PyTorch's DDP: the process group (gloo on CPU, nccl on
CUDA) from the variables `torchrun` sets, the global batch dealt to the ranks, collectives the
trainer needs, and `mos train --nproc N`, which starts torchrun itself.

The global batch is `--batch-size`: every rank draws the same shuffled order (the loader's
generator is seeded alike on every rank) and takes a contiguous chunk of each global batch, so
N processes see the batches one process would. The losses are computed on the whole global
batch on every rank (each rank's rows keep their gradient, the others' are gathered without),
then multiplied by the world size: DDP averages gradients over ranks, and the sum over ranks of
each rank's share is the gradient one process takes on that batch.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as td
from torch.utils.data import BatchSampler, RandomSampler, Sampler

from mos.errors import MosError

ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
TIMEOUT = timedelta(minutes=30)
B = TypeVar("B")


@dataclass(frozen=True)
class Dist:
    """This process's place in the process group."""

    rank: int
    world: int
    local_rank: int
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        td.barrier()

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the body first (e.g. writes a cache); the others run it after, reading."""
        if not self.is_main:
            td.barrier()
        yield
        if self.is_main:
            td.barrier()

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order, on every rank."""
        out: list[Any] = [None] * self.world
        td.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank."""
        box = [obj]
        td.broadcast_object_list(box, src=0)
        return box[0]

    def gather_rows(self, local: torch.Tensor) -> torch.Tensor:
        """The rows of every rank's `local` [n_r, ...] concatenated in rank order; this rank's
        rows are `local` itself (gradient kept), the others' carry none. Ranks may hold
        different numbers of rows."""
        sizes = torch.tensor([local.shape[0]], dtype=torch.long, device=local.device)
        all_sizes = [torch.zeros_like(sizes) for _ in range(self.world)]
        td.all_gather(all_sizes, sizes)
        counts = [int(s) for s in all_sizes]
        padded = local.detach().new_zeros((max(counts), *local.shape[1:]))
        padded[: local.shape[0]] = local.detach()
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        td.all_gather(parts, padded.contiguous())
        rows = [p[:n] for p, n in zip(parts, counts)]
        rows[self.rank] = local
        return torch.cat(rows)

    def global_batch(self, raw: torch.Tensor, batch: B) -> tuple[torch.Tensor, B]:
        """The global batch's raw outputs (this rank's rows with gradient) and `batch` with the
        global batch's targets and manifest positions (what the losses read)."""
        return self.gather_rows(raw), replace(batch, targets=self.gather_rows(batch.targets),  # type: ignore[type-var]
                                              index=self.gather_rows(batch.index))


def env_world() -> int:
    """WORLD_SIZE as torchrun sets it (1 when not under torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise MosError(f"WORLD_SIZE={os.environ['WORLD_SIZE']}: not a number") from None


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank `rank`'s own random streams (dropout, crops, gains): rank 0 keeps the
    run's seed, so it draws what a single process draws; the others draw other numbers."""
    return seed if rank == 0 else seed + 1_000_003 * rank


def device_for(name: str) -> torch.device:
    """The device of this rank: cuda:LOCAL_RANK when --device is cuda (or auto with CUDA), else cpu."""
    local = int(os.environ.get("LOCAL_RANK", "0"))
    wants_cuda = name.startswith("cuda") or (name == "auto" and torch.cuda.is_available())
    if not wants_cuda:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise MosError("--device cuda: PyTorch sees no CUDA device here")
    if local >= torch.cuda.device_count():
        raise MosError(f"LOCAL_RANK {local}: this machine has {torch.cuda.device_count()} CUDA device(s); "
                       "start at most that many processes per node")
    torch.cuda.set_device(local)
    return torch.device("cuda", local)


def env_rank() -> int:
    """RANK as torchrun sets it (0 when not under torchrun)."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        raise MosError(f"RANK={os.environ['RANK']}: not a number") from None


def setup(device_name: str) -> Dist | None:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT):
    gloo on CPU, nccl on CUDA. None when this is a single process."""
    world = env_world()
    if world <= 1:
        return None
    missing = [v for v in ENV + ("MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
    if missing:
        raise MosError(f"WORLD_SIZE={world} but {', '.join(missing)} not set: start several processes with "
                       "torchrun or mos train --nproc N")
    device = device_for(device_name)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not td.is_initialized():
        # torch.distributed.nn.functional binds `group.WORLD` as a default argument of its
        # functions when it is first imported, and DDP imports it. Imported after the group
        # exists, it holds ten references to the group for the life of the process, so
        # destroy_process_group cannot destroy it and gloo's worker threads outlive the
        # interpreter: a thread still letting go of the last collective's tensors when Python
        # finalises needs the GIL, is unwound by pthread_exit and aborts the process ("terminate
        # called without an active exception", exit code 134). Imported first, its defaults are
        # None, and teardown() joins those threads while the interpreter is alive.
        import torch.distributed.nn.functional  # noqa: F401

        td.init_process_group(backend, timeout=TIMEOUT)
    return Dist(td.get_rank(), td.get_world_size(), int(os.environ["LOCAL_RANK"]), backend)


def teardown(dist: Dist | None) -> None:
    """Destroy the process group: its backend's threads end here, not at interpreter exit."""
    if dist is not None and td.is_initialized():
        td.destroy_process_group()


class ShardedBatches(Sampler[list[int]]):
    """Each global batch of `batches`, cut into `world` contiguous chunks (sizes differing by at
    most one); yields chunk `rank`. Every rank must see the same global batches (same generator)."""

    def __init__(self, batches: BatchSampler, rank: int, world: int) -> None:
        self.batches, self.rank, self.world = batches, rank, world

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches:
            yield list(np.array_split(np.asarray(batch, dtype=np.int64), self.world)[self.rank].tolist())

    def __len__(self) -> int:
        return len(self.batches)


def sharded_batches(dataset: Any, batch_size: int, generator: torch.Generator | None, drop_last: bool,
                    rank: int, world: int) -> ShardedBatches:
    """This rank's share of the shuffled global batches DataLoader(shuffle=True, generator) would
    make: the same sampler, so the same order from the same generator state."""
    return ShardedBatches(BatchSampler(RandomSampler(dataset, generator=generator), batch_size, drop_last), rank, world)


def shard_bounds(n: int, rank: int, world: int) -> tuple[int, int]:
    """[start, stop) of rank's contiguous share of n items (sizes differing by at most one)."""
    edges = np.array_split(np.arange(n), world)[rank]
    return (int(edges[0]), int(edges[-1]) + 1) if len(edges) else (n, n)


def strip_nproc(argv: Sequence[str]) -> list[str]:
    """`argv` without `--nproc N` / `--nproc=N`."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def launch(nproc: int, argv: Sequence[str]) -> int:
    """Run torchrun (mos.trainer.torchrun: `python -m torch.distributed.run` with a quiet failure)
    as `--standalone --nproc-per-node N -m mos <argv>` (argv without --nproc) and return its exit
    code. --standalone picks a free local port. Each process gets cores / N threads."""
    cmd = [sys.executable, "-m", "mos.trainer.torchrun", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "mos", *strip_nproc(argv)]
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    return subprocess.call(cmd, env=env)
