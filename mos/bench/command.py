"""The `mos bench` command (typer); mos.cli registers it."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from mos.errors import MosError


# The panels of `mos bench --help`, in this order.
_WORKLOAD, _GRID, _COMPARE, _OUTPUT = "Workload", "Measurement grid", "Comparisons", "Output"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


def parse_int_list(text: Optional[str], flag: str) -> list[int] | None:
    """'1,2,4' or '1-4' -> [1, 2, 4] / [1, 2, 3, 4]; None stays None."""
    if text is None:
        return None
    out: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                out.extend(range(lo, hi + 1))
            else:
                out.append(int(part))
    except ValueError:
        raise MosError(f"{flag} {text!r}: expected comma-separated whole numbers, e.g. 1,8,32") from None
    if not out or any(v < 1 for v in out):
        raise MosError(f"{flag} {text!r}: expected numbers of at least 1")
    return out


def bench(
    bundle: Path = typer.Option(Path("runs/demo/bundle"), "--bundle", help="Exported bundle directory (mos export).",
                                rich_help_panel=_WORKLOAD),
    data: Optional[Path] = typer.Option(None, "--data", help="A folder of audio to measure on.",
                                        show_default="generated 10 s 16 kHz wav clips, each with its own ~12-word caption",
                                        rich_help_panel=_WORKLOAD),
    captions: Optional[Path] = typer.Option(None, "--captions", help="Captions CSV for --data.",
                                            show_default="a generated caption per file", rich_help_panel=_WORKLOAD),
    clips: Optional[int] = typer.Option(None, "--clips", min=1, help="Clips in the workload.",
                                        show_default="200; --quick: 48", rich_help_panel=_WORKLOAD),
    quick: bool = typer.Option(False, "--quick", help="A small run for a demo: 48 clips, 1 repeat, all cores, batches 1 and 16.",
                               rich_help_panel=_WORKLOAD),
    device: Device = typer.Option(Device.auto, "--device", help="auto picks CUDA when onnxruntime-gpu and a GPU work.",
                                  rich_help_panel=_GRID),
    threads: Optional[str] = typer.Option(None, "--threads", help="Intra-op threads to try, e.g. 1,2 or 1-4.",
                                          show_default="1 to the number of cores; --quick: all cores", rich_help_panel=_GRID),
    streams: Optional[str] = typer.Option(None, "--streams", help="Concurrent 1-thread runs to try (mos score's CPU "
                                          "default is one per core), e.g. 2,4.", show_default="the number of cores",
                                          rich_help_panel=_GRID),
    batch_sizes: Optional[str] = typer.Option(None, "--batch-sizes", help="Batch sizes to try, e.g. 1,8,32.",
                                              show_default="1,8,16,32; --quick: 1,16", rich_help_panel=_GRID),
    repeats: Optional[int] = typer.Option(None, "--repeats", min=1, help="Timed repetitions per cell, after a warm-up.",
                                          show_default="3; --quick: 1", rich_help_panel=_GRID),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="Checkpoint for the PyTorch eager comparison.",
                                              show_default="the bundle's own, from its run folder", rich_help_panel=_COMPARE),
    eager: bool = typer.Option(True, "--eager/--no-eager", help="Measure PyTorch eager too (when torch is importable).",
                               rich_help_panel=_COMPARE),
    peer: bool = typer.Option(True, "--peer/--no-peer", help="Measure DNSMOS on the same clips (when speechmos is installed).",
                              rich_help_panel=_COMPARE),
    peer_bundle: Optional[Path] = typer.Option(None, "--peer-bundle", help="A second peer: an audio-only bundle timed and scored on the same clips, e.g. one from `mos export --pretrained distillmos`.",
                                               rich_help_panel=_COMPARE),
    profile: bool = typer.Option(True, "--profile/--no-profile", help="Time each stage alone (decode, resample, text, model parts, writing).",
                                 rich_help_panel=_COMPARE),
    memory: bool = typer.Option(False, "--memory", help="Also measure peak RSS scoring 100, 1,000 and 10,000 files (about a minute).",
                                rich_help_panel=_COMPARE),
    out: Path = typer.Option(Path("bench.json"), "--out", help="Where the JSON report goes, e.g. benchmarks/results/cpu.json.",
                             rich_help_panel=_OUTPUT),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines; just the tables.", rich_help_panel=_OUTPUT),
) -> None:
    """Measure scoring speed and memory of a bundle: end to end, model alone, thread and batch grids, latency, a stage profile.

    The model alone runs as ONNX Runtime fp32 and int8 and, where torch is importable, PyTorch eager; DNSMOS on the same clips is the peer. Figures are medians over --repeats runs with min-max; warm-up runs are excluded.

    Examples:
        mos bench --bundle runs/demo/bundle --out benchmarks/results/cpu.json
        mos bench --quick --no-peer --no-eager
        mos bench --bundle runs/speech/bundle --peer-bundle ./distillmos
        mos bench --data ./clips --captions captions.csv --threads 1-4 --batch-sizes 1,16

    Exit codes:
        0  the report was written
        2  bad usage or an unreadable bundle or data (one line on stderr says which and why)
    """
    from mos.bench.run import BenchOptions, run_bench

    import sys

    # Piped output (a CI log, a file) gets wide tables instead of rich's 80-column default.
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 150)
    try:
        opts = BenchOptions(
            bundle=bundle, data=data, captions=captions, clips=clips, device=device.value,
            threads=parse_int_list(threads, "--threads"), streams=parse_int_list(streams, "--streams"),
            batch_sizes=parse_int_list(batch_sizes, "--batch-sizes"),
            repeats=repeats, out=out, quick=quick, checkpoint=checkpoint, eager=eager, peer=peer, memory=memory,
            peer_bundle=peer_bundle,
            profile=profile, progress=not quiet,
        )
        run_bench(opts, console)
    except MosError as exc:
        Console(stderr=True).print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
