"""`mos score --ray`: the jobs of a `mos score` run scored by a Ray Data pipeline.

Files -> read tasks (decode and resample with mos.audio, long files cut into windows) -> a pool
of actors, each holding one ONNX Runtime session opened in its constructor -> score rows, which
the driver folds into the same per-file results as the local pipeline (mos.runtime.pipeline).
Captions are encoded once on the driver (each distinct caption) and broadcast with ray.put.
Ray is imported only here, and only when a run asks for it.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from mos.audio import iter_audio_windows
from mos.bundle import Bundle, load_bundle
from mos.errors import MosError, one_line
from mos.runtime.engine import EngineOptions, ScoreEngine, finish_raw, open_text_encoder
from mos.runtime.inputs import Job
from mos.runtime.pipeline import FileResult, FileState, score_segments_safely
from mos.runtime.reader import AudioSpec, decode_file
from mos.runtime.session import CPU, CUDA, SessionConfig
from mos.runtime.text import CaptionTable

INSTALL_HINT = "--ray needs Ray Data: pip install 'mos-toolkit[ray]' (ray[data]) on the driver and every node"


def import_ray() -> ModuleType:
    """The ray module (with ray.data), or MosError with the install command."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise MosError(INSTALL_HINT) from None
    return ray


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide: `address` None joins RAY_ADDRESS when set, else starts a local Ray;
    `actors` 0 sizes the pool from the cluster; each actor reserves `cpus_per_actor` CPUs and
    runs its session with that many intra-op threads."""

    address: str | None = None
    actors: int = 0
    cpus_per_actor: int = 1


@dataclass(frozen=True)
class ActorPlan:
    """The actor pool for a cluster of `cpus` CPUs and `gpus` GPUs."""

    actors: int
    num_cpus: int
    num_gpus: int
    device: str  # "cpu" or "cuda": what each actor's session runs on
    cpus: int
    gpus: int

    @property
    def provider(self) -> str:
        return CUDA if self.device == "cuda" else CPU

    def describe(self) -> str:
        gpu = f" + {self.num_gpus} GPU" if self.num_gpus else ""
        left = self.cpus - self.actors * self.num_cpus
        return (f"{self.actors} actor(s) x {self.num_cpus} CPU{gpu} ({self.num_cpus} ONNX Runtime thread(s) each), "
                f"{left} CPU(s) left for the read tasks, of {self.cpus} CPUs and {self.gpus} GPUs")


def plan_actors(cpus: float, gpus: float, device: str, options: RayOptions) -> ActorPlan:
    """Size the actor pool so that at least one CPU stays free for the read tasks: an actor pool
    holding every CPU starves the reads and Ray Data waits forever, with no error.

    CPU: `options.actors`, or as many actors as fit in three quarters of the CPUs. GPU (`device`
    cuda, or auto on a cluster with GPUs): one GPU per actor, `options.actors` or one per GPU.
    """
    total_cpus, total_gpus = int(cpus), int(gpus)
    per = max(1, int(options.cpus_per_actor))
    if device == "cuda" and total_gpus == 0:
        raise MosError("--device cuda: the Ray cluster has no GPU (`ray status` lists its resources)")
    use_gpu = device == "cuda" or (device == "auto" and total_gpus > 0)
    if use_gpu:
        actors = options.actors or total_gpus
        if actors > total_gpus:
            raise MosError(f"--ray-actors {actors}: the Ray cluster has {total_gpus} GPU(s), one per actor")
    else:
        actors = options.actors or max(1, min(int(total_cpus * 0.75) // per, (total_cpus - 1) // per))
    if actors * per > total_cpus - 1:
        raise MosError(
            f"--ray-actors {actors} x --ray-cpus-per-actor {per}: the Ray cluster has {total_cpus} CPU(s) and the "
            "read tasks need at least one (an actor pool holding every CPU waits forever): ask for fewer"
        )
    return ActorPlan(actors, per, 1 if use_gpu else 0, "cuda" if use_gpu else "cpu", total_cpus, total_gpus)


def _decode_rows(job: dict[str, Any], sample_rate: int, window_seconds: float) -> Iterator[dict[str, Any]]:
    """A read task's rows for one job: the whole clip, or one row per window of a long file, the
    last marked final; a file that fails gives one final error row (at the part it reached).

    The task reads `source` (the absolute path: a worker's working directory is not the
    driver's); messages name `path`, the path as the local run writes it."""
    base = {"index": job["index"], "path": job["path"], "caption": job["caption"]}
    empty = np.zeros(0, dtype=np.float32)
    if job["error"]:
        yield {**base, "part": 0, "final": True, "wave": empty, "error": job["error"]}
        return
    source = Path(job["source"])

    def message(error: str) -> str:
        return error.replace(str(source), job["path"], 1)

    decoded = decode_file(source, AudioSpec(sample_rate, window_seconds))
    if decoded.error is not None or not decoded.long:
        wave = empty if decoded.wave is None else decoded.wave
        yield {**base, "part": 0, "final": True, "wave": wave, "error": message(decoded.error or "")}
        return
    part, held = 0, None
    try:
        for wave in iter_audio_windows(source, sample_rate, window_seconds):
            if held is not None:
                yield {**base, "part": part, "final": False, "wave": held, "error": ""}
                part += 1
            held = wave
    except Exception as exc:  # a row, never a failed task
        yield {**base, "part": part, "final": True, "wave": empty, "error": message(one_line(exc, source))}
        return
    if held is None:
        yield {**base, "part": 0, "final": True, "wave": empty, "error": f"{job['path']}: no audio scored"}
    else:
        yield {**base, "part": part, "final": True, "wave": held, "error": ""}


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_ERROR_LINE = re.compile(r"^[\w.]*(Error|Exception)\b[^:]*: ")


def ray_cause(exc: BaseException) -> str:
    """The root cause in one line: Ray's task and actor errors carry the remote traceback as
    text, whose last `SomeError: message` line says what went wrong on the worker."""
    lines = [" ".join(line.split()) for line in _ANSI.sub("", str(exc)).splitlines() if line.strip()]
    causes = [line for line in lines if _ERROR_LINE.match(line)]
    text = causes[-1] if causes else (lines[0] if lines else type(exc).__name__)
    if "ModuleNotFoundError" in text or "No module named" in text:
        text += " (is the same mos-toolkit, with its [ray] extra, installed on every node?)"
    return text if len(text) <= 400 else text[:400] + "..."


def fold_rows(batches: Iterable[dict[str, np.ndarray]], jobs: list[Job], sample_rate: int,
              finish: Callable[[np.ndarray], np.ndarray]) -> Iterator[tuple[int, FileResult]]:
    """ScoreActor's score rows folded into one result per file, (job index, result), in the order
    files finish: a file's windows' length-weighted mean once all its parts are in (its final
    row says how many), or its first error.

    A row is counted once by (index, part): a Ray task that fails and is retried can deliver
    rows it had already delivered, which would otherwise weigh a window twice or finish a file
    before its last window (or never, its count overshot)."""
    states: dict[int, FileState] = {}
    parts: dict[int, set[int]] = {}  # the parts folded in so far, per unfinished file
    expected: dict[int, int] = {}  # windows of a file, known once its final row is in
    finished: set[int] = set()
    for batch in batches:
        for k in range(len(batch["index"])):
            index, part = int(batch["index"][k]), int(batch["part"][k])
            seen = parts.setdefault(index, set())
            if index in finished or part in seen:
                continue  # delivered again
            seen.add(part)
            state = states.setdefault(index, FileState(jobs[index], index=index))
            error = str(batch["error"][k])
            if error:
                state.fail(error)
            else:
                length = int(batch["length"][k])
                state.outstanding += 1
                state.samples += length
                state.windows += 1
                state.add(batch["scores"][k], length)
            if bool(batch["final"][k]):
                expected[index] = part + 1
            if state.error is not None or state.windows == expected.get(index):
                state.complete = True
                finished.add(index)
                del states[index], parts[index]
                expected.pop(index, None)
                yield index, state.result(sample_rate, finish)


class ScoreActor:
    """One actor of the pool: an ONNX Runtime session opened in the constructor, scoring batches
    of clips (windows) into one score row each, or the row's one-line error."""

    def __init__(self, bundle_dir: str, options: EngineOptions, captions: list[Any] | None = None) -> None:
        """`captions`: [the object ref of the broadcast CaptionTable], or None. Ray Data pickles
        constructor arguments, so the ref is fetched here, explicitly (zero-copy on a node)."""
        table = import_ray().get(captions[0]) if captions else None
        self.engine = ScoreEngine(load_bundle(bundle_dir), options, text=table)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        errors = [str(e) for e in batch["error"]]
        waves = [np.asarray(w, dtype=np.float32) for w in batch["wave"]]
        todo = [i for i, e in enumerate(errors) if not e]
        scores = np.full((len(errors), self.engine.raw_width), np.nan, dtype=np.float64)
        captions = [str(batch["caption"][i]) or None for i in todo]
        results = score_segments_safely(self.engine, [waves[i] for i in todo], captions, self.engine.batch_size)
        for i, result in zip(todo, results):
            if isinstance(result, str):
                errors[i] = f"{batch['path'][i]}: {result}"
            else:
                scores[i] = result
        return {
            "index": np.asarray(batch["index"], dtype=np.int64),
            "part": np.asarray(batch["part"], dtype=np.int64),
            "final": np.asarray(batch["final"], dtype=bool),
            "length": np.array([w.shape[0] for w in waves], dtype=np.int64),
            "scores": scores,
            "error": np.array(errors, dtype=object),
        }


class RayScorer:
    """A connection to Ray, the actor plan and the captions broadcast; `results(jobs)` scores.

    Use as a context manager: a Ray instance started here is shut down on exit; one that was
    already running (ray.init by the caller) is left running.
    """

    def __init__(self, bundle: Bundle, engine_options: EngineOptions, options: RayOptions, jobs: list[Job]) -> None:
        self.ray = import_ray()
        self.bundle = bundle
        self.started_here = False
        self.where = ""
        self.captions_ref: Any = None
        self.captions_note = ""
        self._connect(options.address)
        try:
            resources = self.ray.cluster_resources()
            self.plan = plan_actors(resources.get("CPU", 0), resources.get("GPU", 0), engine_options.device, options)
            self.engine_options = replace(engine_options, device=self.plan.device, threads=self.plan.num_cpus)
            self.batch_size = engine_options.batch_size or (64 if self.plan.device == "cuda" else 16)
            if bundle.uses_text:
                self._broadcast_captions([j.caption for j in jobs if j.caption and j.error is None])
        except BaseException:
            self.close()
            raise

    def _connect(self, address: str | None) -> None:
        if self.ray.is_initialized():
            self.where = "the running Ray"
            return
        env_address = os.environ.get("RAY_ADDRESS")
        self.where = f"the Ray cluster at {address or env_address}" if address or env_address else "a local Ray"
        kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
        if not (address or env_address):
            kwargs["include_dashboard"] = False  # a local instance for this run only
        try:
            self.ray.init(address=address, **kwargs)
        except Exception as exc:  # ConnectionError, ValueError, RuntimeError ... from ray.init
            raise MosError(f"Ray: cannot connect to {self.where} ({one_line(exc, limit=200)})") from None
        self.started_here = True

    def _broadcast_captions(self, captions: list[str]) -> None:
        """Encode each distinct caption once, here, and put the table in the object store."""
        start = time.perf_counter()
        encoder = open_text_encoder(self.bundle, SessionConfig(device="cpu"), self.engine_options.text_batch_size,
                                    self.engine_options.int8)
        table = CaptionTable.build(encoder, captions)
        self.captions_ref = self.ray.put(table)
        self.captions_note = (f"captions: {len(table)} distinct encoded in {time.perf_counter() - start:.1f} s "
                              f"({table.nbytes / 2**20:.1f} MiB broadcast)")

    @property
    def provider(self) -> str:
        return self.plan.provider

    def describe(self) -> str:
        """Where it runs, the actor plan and the captions broadcast, for the run's stderr."""
        lines = [f"ray: {self.where}; {self.plan.describe()}"]
        if self.captions_note:
            lines.append(f"ray: {self.captions_note}")
        return "\n".join(lines)

    def results(self, jobs: list[Job]) -> Iterator[FileResult]:
        """One FileResult per job, in the order files finish (not the input order)."""
        if not jobs:
            return
        ds = self._dataset(jobs)
        finish = partial(finish_raw, self.bundle, self.engine_options.quantiles)
        finished: set[int] = set()
        try:
            for index, result in fold_rows(ds.iter_batches(batch_size=None, batch_format="numpy"), jobs,
                                           self.bundle.sample_rate, finish):
                finished.add(index)
                yield result
        except Exception as exc:  # an actor that cannot start, a lost node: Ray's own errors
            raise MosError(f"Ray: the scoring pipeline failed ({ray_cause(exc)}); the finished rows are saved: "
                           "re-run with --resume") from None
        for index, job in enumerate(jobs):  # a safety net: every job gets a row
            if index not in finished:
                yield FileResult(job, None, None, f"{job.path}: Ray returned no result for this file")

    def _dataset(self, jobs: list[Job]) -> Any:
        ctx = self.ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # `mos score` draws its own
        ctx.print_on_execution_start = False
        for handler in logging.getLogger("ray.data").handlers:  # its full log stays in the session's ray-data.log
            if isinstance(handler, logging.StreamHandler):
                handler.setLevel(logging.CRITICAL)  # failures reach the user as one MosError line
        rows = [{"index": i, "path": str(j.path), "source": str(Path(j.path).absolute()), "caption": j.caption or "",
                 "error": j.error or ""} for i, j in enumerate(jobs)]
        chunk = 2 * self.batch_size  # rows per actor call, sorted by length into batches there
        blocks = max(1, min(math.ceil(len(rows) / chunk), 4096))
        ds = self.ray.data.from_items(rows, override_num_blocks=blocks)
        ds = ds.flat_map(_decode_rows, fn_kwargs={"sample_rate": self.bundle.sample_rate,
                                                  "window_seconds": self.bundle.window_seconds}, num_cpus=1)
        return ds.map_batches(
            ScoreActor,
            fn_constructor_kwargs={"bundle_dir": str(self.bundle.root.resolve()), "options": self.engine_options,
                                   "captions": None if self.captions_ref is None else [self.captions_ref]},
            batch_size=chunk,
            batch_format="numpy",
            compute=self.ray.data.ActorPoolStrategy(size=self.plan.actors),
            num_cpus=self.plan.num_cpus,
            num_gpus=self.plan.num_gpus or None,
        )

    def close(self) -> None:
        """Shut down the Ray instance this scorer started (none other)."""
        if self.started_here and self.ray.is_initialized():
            self.ray.shutdown()
        self.started_here = False

    def __enter__(self) -> RayScorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
