"""`run_score`: options -> manifest (mos.data) -> jobs -> rows: load the bundle, stream rows, write challenge files."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from mos.bundle import BUNDLE_META_FILE, Bundle, load_bundle, verify_files
from mos.data.detect import open_inputs
from mos.data.folder import Skipped, describe_skipped
from mos.data.table import parse_column_spec
from mos.errors import MosError
from mos.files import sha256_file
from mos.runtime.engine import EngineOptions, ScoreEngine, audio_variant, output_columns
from mos.runtime.inputs import make_jobs, read_caption_file
from mos.runtime.pipeline import FileResult, PipelineOptions, score_jobs
from mos.runtime.session import CUDA
from mos.runtime.writers import (
    FORMATS,
    OutputStamp,
    Row,
    RowWriter,
    check_challenge_names,
    check_challenge_targets,
    read_rows,
    resume_rows,
    write_challenge,
)

if TYPE_CHECKING:  # Ray's module loads only for a --ray run
    from mos.runtime.ray_score import RayOptions

DEFAULT_BUNDLE = Path("runs/demo/bundle")


@dataclass
class ScoreOptions:
    """Everything `mos score` takes. `out` None means scores.csv (scores.jsonl for jsonl,
    answer.txt for audiomos). For xacle/audiomos the rows stream to `<out stem>.rows.csv` and the
    challenge file is written at the end."""

    inputs: Path
    bundle: Path = DEFAULT_BUNDLE
    captions: Path | None = None
    caption_columns: str | None = None
    columns: str | None = None
    split: str | None = None
    out: Path | None = None
    format: str = "csv"
    device: str = "auto"
    threads: int = 0
    streams: int = 0
    batch_size: int = 0
    int8: bool = False
    fp16: bool = False
    resume: bool = False
    workers: int = 0
    quantiles: tuple[float, ...] = ()
    progress: bool = True
    ray: RayOptions | None = None  # score on Ray (mos.runtime.ray_score) instead of this process


@dataclass
class ScoreSummary:
    """What a run did. `rtf` is audio seconds scored per wall second (higher is faster)."""

    files: int
    scored: int
    failed: int
    skipped: int
    seconds: float
    audio_seconds: float
    provider: str
    out: Path
    challenge: Path | None = None
    duplicate_ids: list[str] = field(default_factory=list)
    first_errors: list[str] = field(default_factory=list)
    inputs: str = ""
    left_out: list[Skipped] = field(default_factory=list)

    @property
    def clips_per_s(self) -> float:
        return (self.scored + self.failed) / self.seconds if self.seconds > 0 else 0.0

    @property
    def rtf(self) -> float:
        return self.audio_seconds / self.seconds if self.seconds > 0 else 0.0

    @property
    def exit_code(self) -> int:
        """0 when every file has scores, 3 when some failed."""
        return 3 if self.failed else 0


def reader_workers(requested: int, provider: str) -> int:
    """Reader threads: as asked, else 2 on CPU (the session wants the cores) and up to 8 with CUDA."""
    if requested > 0:
        return requested
    return min(8, os.cpu_count() or 2) if provider == CUDA else 2


def output_paths(out: Path | None, fmt: str) -> tuple[Path, Path | None]:
    """(stream file, challenge file or None) for an --out and --format."""
    if fmt not in FORMATS:
        raise MosError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if fmt == "jsonl":
        return (out or Path("scores.jsonl")), None
    if fmt == "csv":
        return (out or Path("scores.csv")), None
    challenge = out or Path("answer.txt" if fmt == "audiomos" else "scores.csv")
    if challenge.is_dir():
        challenge = challenge / ("answer.txt" if fmt == "audiomos" else "scores.csv")
    stem = challenge.name[: -len(challenge.suffix)] if challenge.suffix else challenge.name
    return challenge.with_name(f"{stem}.rows.csv"), challenge


def _row(result: FileResult, targets: list[str]) -> Row:
    job = result.job
    if result.ok and result.scores is not None:
        scores = {t: float(v) for t, v in zip(targets, result.scores)}
        return Row(job.id, str(job.path), job.caption, scores, result.duration, "ok")
    return Row(job.id, str(job.path), job.caption, None, result.duration, "error", result.error)


def _progress(console: Console, enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]scoring"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TextColumn("[red]{task.fields[failed]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
        transient=False,
    )


def output_stamp(bundle: Bundle, variant: str, fmt: str, targets: list[str]) -> OutputStamp:
    """What this run writes with: the stream format, the bundle (sha256 of its mos.json) and the
    audio model file it scores with (its sha256 as mos.json lists it; load_bundle checked it)."""
    model = bundle.audio_model(variant)
    return OutputStamp(fmt, tuple(targets), str(bundle.root.resolve()), sha256_file(bundle.root / BUNDLE_META_FILE),
                       model.name, str(bundle.meta["files"].get(model.name, "")))


def _write_rows(writer: RowWriter, results: Iterator[FileResult], total: int, targets: list[str], console: Console,
                progress_on: bool) -> tuple[int, int, float, list[str], float]:
    """Write each result as it comes, with the progress bar: (scored, failed, audio seconds,
    the first five errors, wall seconds)."""
    scored = failed = 0
    audio_seconds = 0.0
    first_errors: list[str] = []
    start = time.perf_counter()
    try:
        with writer, _progress(console, progress_on) as progress:
            task = progress.add_task("scoring", total=total, rate="", failed="")
            for result in results:
                writer.write(_row(result, targets))
                if result.ok:
                    scored += 1
                    audio_seconds += result.duration or 0.0
                else:
                    failed += 1
                    if len(first_errors) < 5:
                        first_errors.append(result.error or "")
                elapsed = time.perf_counter() - start
                rate = (scored + failed) / elapsed if elapsed > 0 else 0.0
                progress.update(
                    task, advance=1, rate=f"{rate:.1f} clips/s", failed=f"{failed} failed" if failed else ""
                )
    finally:
        seconds = time.perf_counter() - start
    return scored, failed, audio_seconds, first_errors, seconds


def run_score(opts: ScoreOptions, console: Console | None = None) -> ScoreSummary:
    """Score every input file and write the rows (and the challenge file). Bad files become error
    rows; bad run inputs (bundle, captions file, --format for this bundle, inputs, an output
    --resume must not touch) raise MosError before any scoring."""
    console = console or Console(stderr=True)
    if opts.ray is not None and (opts.threads or opts.workers or opts.streams):
        raise MosError("--threads, --streams and --workers size the local pipeline: with --ray, size the actors with "
                       "--ray-actors and --ray-cpus-per-actor")
    stream_path, challenge_path = output_paths(opts.out, opts.format)
    stream_fmt = "jsonl" if opts.format == "jsonl" else "csv"
    bundle = load_bundle(opts.bundle, verify_hashes=False)
    # The files' sha256 are checked on a thread (hashlib and file reads release the GIL) while the
    # inputs are listed and the sessions start; nothing is scored before the check has passed.
    hashing = ThreadPoolExecutor(1, thread_name_prefix="mos-verify")
    verified = hashing.submit(verify_files, bundle)
    hashing.shutdown(wait=False)
    targets = bundle.target_names
    check_challenge_targets(opts.format, targets)
    columns = parse_column_spec(opts.columns) if opts.columns else None
    inputs = open_inputs(opts.inputs, columns, opts.split, captions=bundle.uses_text)
    captions = None
    if opts.captions is not None and bundle.uses_text:
        captions = read_caption_file(opts.captions, opts.caption_columns)
    elif opts.captions is not None:
        console.print(f"note: --captions {opts.captions} is not read: this bundle's model is audio-only",
                      markup=False, highlight=False, soft_wrap=True)
    jobset = make_jobs(inputs.manifest, captions, bundle.uses_text)
    if bundle.uses_text and captions is None and jobset.jobs and not any(j.caption for j in jobset.jobs):
        raise MosError(
            f"{opts.inputs}: the bundle's model needs a caption per clip and these inputs carry none: "
            "pass --captions FILE (CSV wav_file_name,text, or a MusicEval prompt_info.txt)"
        )
    # The jobs hold what scoring needs: let the manifest and the caption table go (memory stays
    # a job per file, not three objects per file, over a long run).
    inputs_description, left_out = inputs.description, inputs.skipped
    del inputs, captions
    if challenge_path is not None:
        check_challenge_names(opts.format, [job.id for job in jobset.jobs])
    # The score columns: the targets, then a distribution model's spreads and quantiles.
    score_columns = output_columns(bundle, opts.quantiles)
    stamp = output_stamp(bundle, audio_variant(opts.int8, opts.fp16), stream_fmt, score_columns)
    keep = resume_rows(stream_path, stream_fmt, score_columns, stamp) if opts.resume else []
    done = {row.id for row in keep}
    todo = [job for job in jobset.jobs if job.id not in done]
    engine_options = EngineOptions(device=opts.device, threads=opts.threads, streams=opts.streams, int8=opts.int8, fp16=opts.fp16,
                                   batch_size=opts.batch_size,
                                   quantiles=opts.quantiles)
    with ExitStack() as stack:
        if opts.ray is None:
            try:
                engine = ScoreEngine(bundle, engine_options)
            except Exception:
                verified.result()  # a corrupted file is reported as such, not as an unloadable model
                raise
            verified.result()
            provider = engine.provider
            pipeline = PipelineOptions(workers=reader_workers(opts.workers, provider), batch_size=engine.batch_size)
            results = score_jobs(engine, todo, pipeline)
        else:
            verified.result()
            from mos.runtime.ray_score import RayScorer

            ray = stack.enter_context(RayScorer(bundle, engine_options, opts.ray, todo))
            console.print(ray.describe(), markup=False, highlight=False, soft_wrap=True)
            provider = ray.provider
            results = ray.results(todo)
        if jobset.duplicate_ids:
            console.print(f"[yellow]warning:[/] {len(jobset.duplicate_ids)} input(s) repeat an id and are scored once "
                          f"(first: {escape(jobset.duplicate_ids[0])})")
        writer = RowWriter(stream_path, stream_fmt, score_columns, stamp=stamp, keep=keep)
        skipped = len(jobset.jobs) - len(todo)
        scored, failed, audio_seconds, first_errors, seconds = _write_rows(writer, results, len(todo), score_columns,
                                                                           console, opts.progress and bool(todo))
    if challenge_path is not None:
        order = {job.id: i for i, job in enumerate(jobset.jobs)}
        rows = [r for r in read_rows(stream_path, stream_fmt, score_columns) if r.id in order]
        rows.sort(key=lambda r: order[r.id])
        write_challenge(challenge_path, opts.format, rows, targets)
    return ScoreSummary(
        files=len(jobset.jobs),
        scored=scored,
        failed=failed,
        skipped=skipped,
        seconds=seconds,
        audio_seconds=audio_seconds,
        provider=provider,
        out=stream_path,
        challenge=challenge_path,
        duplicate_ids=jobset.duplicate_ids,
        first_errors=first_errors,
        inputs=inputs_description,
        left_out=left_out,
    )


def format_summary(summary: ScoreSummary) -> str:
    """The end-of-run lines: counts, speed, provider and where the rows went."""
    parts = [f"scored {summary.scored}", f"failed {summary.failed}"]
    if summary.skipped:
        parts.append(f"skipped {summary.skipped} (already in {summary.out})")
    lines = [f"inputs: {summary.inputs}"] if summary.inputs else []
    if summary.left_out:
        lines.append(f"not scored: {describe_skipped(summary.left_out)}")
    lines += [
        ", ".join(parts) + f" of {summary.files} files in {summary.seconds:.1f} s",
        (f"{summary.clips_per_s:.1f} clips/s, real-time factor {summary.rtf:.0f}x "
         f"({summary.audio_seconds:.0f} s of audio), provider {summary.provider}") if summary.scored
        else f"no audio scored in this run, provider {summary.provider}",
        f"rows: {summary.out}" + (f"; challenge file: {summary.challenge}" if summary.challenge else ""),
    ]
    if summary.first_errors:
        more = summary.failed - len(summary.first_errors)
        lines += [f"  {e}" for e in summary.first_errors]
        if more > 0:
            lines.append(f"  ... and {more} more (status=error rows in {summary.out})")
    return "\n".join(lines)
