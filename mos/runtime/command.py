"""The `mos score` command (typer): options, progress on stderr, summary, exit codes 0/2/3/130.

Imports only typer and rich at load time, so `mos score --help` starts fast; the scorer (numpy,
ONNX Runtime) loads when the command runs."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from mos.errors import MosError

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_FAILED = 3
EXIT_INTERRUPTED = 130

# The panels of `mos score --help`, in this order.
_INPUT, _MODEL, _OUTPUT, _SPEED, _RAY = "Input", "Model", "Output", "Performance", "Ray"


class OutputFormat(str, Enum):
    csv = "csv"
    jsonl = "jsonl"
    xacle = "xacle"
    audiomos = "audiomos"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


def score(
    inputs: Path = typer.Argument(
        ...,
        help="A folder of audio (recursive; every format libsndfile reads: wav, flac, ogg, mp3, aiff, ...), "
        "a list file (.txt/.lst: one path per line, relative to the list), an XACLE or MusicEval dataset "
        "(tree, *_average.csv, sets/*_list.txt), a CSV/JSONL table with --columns, or one file.",
        show_default=False,
    ),
    captions: Optional[Path] = typer.Option(
        None, "--captions", help="Captions: a CSV (wav_file_name,text as XACLE) or MusicEval prompt_info.txt; "
        "keyed by the path relative to the folder scored, or by file name where only one input has it. "
        "Not read for an audio-only bundle.", rich_help_panel=_INPUT,
    ),
    caption_columns: Optional[str] = typer.Option(
        None, "--caption-columns", help="Columns of a --captions CSV as id_col,text_col (default wav_file_name,text).",
        rich_help_panel=_INPUT,
    ),
    split: Optional[str] = typer.Option(
        None, "--split", help="Split of an XACLE tree (train, validation, test) or a MusicEval tree (train, dev, "
        "test) to score (default: test when the tree has it, else every split).", show_default=False,
        rich_help_panel=_INPUT,
    ),
    columns: Optional[str] = typer.Option(
        None, "--columns", help="Score the clips of a CSV/JSONL table, as mos train reads it, e.g. "
        "'path=path,caption=text'.", show_default=False, rich_help_panel=_INPUT,
    ),
    bundle: Path = typer.Option(Path("runs/demo/bundle"), "--bundle", help="Exported bundle directory (mos export).",
                                rich_help_panel=_MODEL),
    int8: bool = typer.Option(False, "--int8", help="Use the bundle's int8 audio model (and its int8 text model when it has one).",
                              rich_help_panel=_MODEL),
    fp16: bool = typer.Option(False, "--fp16", help="Use the bundle's fp16 audio model (mos export --fp16), for CUDA.",
                              rich_help_panel=_MODEL),
    out: Optional[Path] = typer.Option(
        None,
        "--out",
        help="Output file (default scores.csv; scores.jsonl for jsonl; answer.txt for audiomos). "
        "For xacle/audiomos the rows also stream to <out stem>.rows.csv.",
        show_default=False, rich_help_panel=_OUTPUT,
    ),
    output_format: OutputFormat = typer.Option(
        OutputFormat.csv, "--format", help="csv/jsonl: one row per file; xacle/audiomos: challenge files.",
        rich_help_panel=_OUTPUT,
    ),
    quantiles: Optional[str] = typer.Option(None, "--quantiles", help="For a bundle trained with --distribution: also write these quantiles of the listeners' ratings, e.g. 0.1,0.9 (columns <target>_q10, <target>_q90).",
                                            rich_help_panel=_OUTPUT),
    resume: bool = typer.Option(False, "--resume", help="Keep rows already in the output with status ok and score "
                                "the rest; refused when another bundle, model variant or format wrote the output.",
                                rich_help_panel=_OUTPUT),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar.", rich_help_panel=_OUTPUT),
    device: Device = typer.Option(Device.auto, "--device", help="auto picks CUDA when onnxruntime-gpu and a GPU work.",
                                  rich_help_panel=_SPEED),
    threads: int = typer.Option(0, "--threads", min=0, help="CPU threads per session run (0: the cores divided among "
                                "--streams; with neither, one single-threaded run per core).", rich_help_panel=_SPEED),
    streams: int = typer.Option(0, "--streams", min=0, help="Batches scored at once, each on its own thread (0: one per "
                                "core on CPU, or 1 when --threads is given; 1 on CUDA).", rich_help_panel=_SPEED),
    batch_size: int = typer.Option(0, "--batch-size", min=0, help="Clips (windows) per run (0: 16 on CPU, 64 on CUDA).",
                                   rich_help_panel=_SPEED),
    workers: int = typer.Option(0, "--workers", min=0, help="Reader threads decoding ahead (0: 2 on CPU, up to 8 with CUDA).",
                                rich_help_panel=_SPEED),
    ray: bool = typer.Option(False, "--ray", help="Score on Ray (the ray extra of mos-toolkit): a Ray Data pipeline of read tasks "
                             "and ONNX Runtime actors; a new local Ray unless --ray-address or RAY_ADDRESS names a "
                             "cluster.", rich_help_panel=_RAY),
    ray_address: Optional[str] = typer.Option(
        None, "--ray-address", help="The Ray cluster to join, e.g. auto (the one started on this node with ray start); "
        "passed to ray.init as given; implies --ray.", show_default=False, rich_help_panel=_RAY,
    ),
    ray_actors: int = typer.Option(0, "--ray-actors", min=0, help="Scoring actors (0: one per GPU, or on CPU as many as "
                                   "fit in 3/4 of the cluster's CPUs); at least one CPU stays for the read tasks.",
                                   rich_help_panel=_RAY),
    ray_cpus_per_actor: int = typer.Option(1, "--ray-cpus-per-actor", min=1, help="CPUs each actor reserves; its "
                                           "ONNX Runtime session runs that many threads.", rich_help_panel=_RAY),
) -> None:
    """Score audio files with an exported bundle (ONNX Runtime only; no PyTorch needed).

    One row per file streams to the output as it finishes: id, path, caption, one column per target, duration, status (ok|error), error. A file that cannot be scored gets an error row and the run goes on; files of a folder that are not audio are listed as not scored. With --ray the rows are the same, in the order files finish.

    Examples:
        mos score data/wav --captions data/captions.csv --bundle runs/demo/bundle --out scores.csv
        mos score XACLE_dataset/wav/test --captions test.csv --format xacle --out submission.csv --resume
        mos score /shared/clips --captions /shared/captions.csv --bundle /shared/bundle --ray-address auto

    Exit codes:
        0    every file was scored
        2    bad usage, bundle or captions file (one line on stderr says which and why)
        3    some files failed: their rows say why (status error); the others are scored
        130  interrupted: the finished rows are saved; --resume scores the rest
    """
    from mos.distribution import parse_quantiles
    from mos.runtime.scorer import ScoreOptions, format_summary, run_score

    console = Console(stderr=True)
    try:
        levels = tuple(parse_quantiles(quantiles)) if quantiles is not None else ()
    except ValueError as exc:
        console.print(f"error: --quantiles: {exc}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_USAGE) from None
    if not (ray or ray_address) and (ray_actors or ray_cpus_per_actor != 1):
        console.print("error: --ray-actors and --ray-cpus-per-actor size a Ray run: add --ray (or --ray-address)",
                      markup=False, highlight=False)
        raise typer.Exit(EXIT_USAGE)
    opts = ScoreOptions(
        inputs=inputs,
        bundle=bundle,
        captions=captions,
        caption_columns=caption_columns,
        columns=columns,
        split=split,
        out=out,
        format=output_format.value,
        device=device.value,
        threads=threads,
        streams=streams,
        batch_size=batch_size,
        int8=int8,
        fp16=fp16,
        resume=resume,
        workers=workers,
        quantiles=levels,
        progress=not quiet,
    )
    if ray or ray_address:
        from mos.runtime.ray_score import RayOptions

        opts.ray = RayOptions(address=ray_address, actors=ray_actors, cpus_per_actor=ray_cpus_per_actor)
    try:
        summary = run_score(opts, console)
    except MosError as exc:
        console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_USAGE) from None
    except KeyboardInterrupt:
        console.print("interrupted: finished rows are saved; re-run with --resume to score the rest",
                      markup=False, highlight=False)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    console.print(format_summary(summary), markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(summary.exit_code)


def main() -> None:
    """`python -m mos.runtime.command score ...`: the same as `mos score ...`."""
    from mos.cli import main as mos_main

    mos_main()


if __name__ == "__main__":
    main()
