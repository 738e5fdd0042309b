"""`mos demo`: the whole product on the built-in demo set: train -> export -> score -> eval -> bench."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console


@dataclass
class DemoPaths:
    run: Path
    bundle: Path
    scores: Path
    submission: Path
    evaluation: Path
    bench: Path


def run_demo(console: Console, runs_dir: Path = Path("runs"), demo_dir: Path = Path("data/demo"),
             epochs: int = 30, bench: bool = True) -> DemoPaths:
    from mos.bench.run import BenchOptions, run_bench
    from mos.evaluate import run_eval
    from mos.export.run_data import export_run
    from mos.runtime.scorer import ScoreOptions, run_score
    from mos.trainer.config import TrainConfig
    from mos.trainer.run import run_training

    start = time.perf_counter()

    def step(title: str) -> None:
        console.rule(f"[bold]{title}[/bold]  ({time.perf_counter() - start:.0f} s)")

    step("1/5 mos train (built-in demo set)")
    # The demo's run folder is the demo's own output, made again on every `mos demo`: replace it.
    result = run_training(TrainConfig(name="demo", runs_dir=str(runs_dir), demo_dir=str(demo_dir), epochs=epochs,
                                      overwrite=True), console)
    run = Path(result.run_dir)

    step("2/5 mos export runs/demo --opset 17 --quantize int8")
    report = export_run(run, run / "bundle", 17, "int8", log=lambda m: console.print(m, markup=False))
    for line in report.format():
        console.print(line, markup=False)

    step("3/5 mos score (validation clips, with captions) -> CSV and the XACLE answer file")
    tree = demo_dir / "XACLE_dataset"
    wavs, captions = tree / "wav" / "validation", tree / "meta_data" / "validation_average.csv"
    scores, submission = run / "scores.csv", run / "submission.csv"
    for fmt, out in (("csv", scores), ("xacle", submission)):
        summary = run_score(ScoreOptions(inputs=wavs, bundle=report.bundle, captions=captions, out=out, format=fmt,
                                         progress=False), console)
        console.print(f"{out}: {summary.scored} files scored, {summary.failed} failed, "
                      f"{summary.scored / max(summary.seconds, 1e-9):.1f} clips/s on {summary.provider}")

    step("4/5 mos eval runs/demo/scores.csv validation_average.csv")
    evaluation = run / "eval.json"
    console.print(run_eval(scores, captions, evaluation), markup=False)

    bench_out = run / "bench.json"
    if bench:
        step("5/5 mos bench --quick")
        run_bench(BenchOptions(bundle=report.bundle, quick=True, out=bench_out), console)

    paths = DemoPaths(run, report.bundle, scores, submission, evaluation, bench_out)
    step("done")
    console.print(f"demo finished in {time.perf_counter() - start:.0f} s. Outputs:")
    console.print(f"  run folder (config, checkpoints, metrics.jsonl, curves.png, scatter.png): {paths.run}")
    files = sorted(p.name for p in paths.bundle.iterdir() if p.is_file())
    console.print(f"  ONNX bundle ({', '.join(files)}): {paths.bundle}")
    console.print(f"  scores: {paths.scores}   XACLE answer file: {paths.submission}")
    console.print(f"  metrics: {paths.evaluation}" + (f"   bench: {paths.bench}" if bench else ""))
    console.print(f"  demo data: {tree}")
    return paths
