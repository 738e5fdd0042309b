"""The `mos distill` command (typer); mos.cli registers it. torch is imported only when it runs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from mos.errors import MosError


def distill(
    teacher: Path = typer.Argument(..., help="The teacher: an exported bundle, or a run folder holding one in bundle/ (mos export RUN)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Rated data, as for mos train (XACLE/MusicEval tree, CSV/JSONL with --columns). Default: the built-in demo set."),
    unlabeled: Optional[Path] = typer.Option(None, "--unlabeled", help="Unrated audio the teacher labels for the student: a folder, a list file, or a CSV/JSONL table (--unlabeled-columns)."),
    unlabeled_columns: Optional[str] = typer.Option(None, "--unlabeled-columns", help="Column mapping of an --unlabeled table, e.g. 'path=file,caption=text'."),
    captions: Optional[Path] = typer.Option(None, "--captions", help="Captions of the --unlabeled clips (CSV wav_file_name,text, or a MusicEval prompt file), when a model reads text."),
    caption_columns: Optional[str] = typer.Option(None, "--caption-columns", help="Columns of a --captions CSV as id_col,text_col."),
    name: Optional[str] = typer.Option(None, "--name", help="The student's run name: outputs go to <runs-dir>/<name>/ (default: <teacher>-student)."),
    runs_dir: Optional[str] = typer.Option(None, "--runs-dir", help="Where run folders are written (default: runs)."),
    columns: Optional[str] = typer.Option(None, "--columns", help="Column mapping of a generic ratings table, as for mos train."),
    student_config: Optional[str] = typer.Option(None, "--student-config", help="The student's size: edge (default, mos train's model), small, tiny, or a JSON/TOML file of mos train settings with a model table (channels, hidden, ...)."),
    teacher_weight: float = typer.Option(0.5, "--teacher-weight", help="Weight of the teacher's labels (every clip); 1 minus it weighs the human ratings (rated clips only). 1: teacher only."),
    agree_weight: float = typer.Option(0.5, "--agree-weight", help="Weight of the soft rank agreement with the teacher over each batch."),
    augment: int = typer.Option(0, "--augment", min=0, help="Degraded copies (gain, noise, codec-like low-pass) of each training and unlabelled clip, labelled by the teacher."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Maximum epochs (default 30)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Clips per step (default 16)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate (default 1e-3)."),
    patience: Optional[int] = typer.Option(None, "--patience", help="Early stopping patience in epochs (default 6)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (default 0)."),
    text_encoder: Optional[str] = typer.Option(None, "--text-encoder", help="The student's text encoder (default: minilm when the teacher reads captions, else none)."),
    max_seconds: Optional[float] = typer.Option(None, "--max-seconds", help="The student's training and scoring window in seconds (default 10)."),
    group_by: Optional[str] = typer.Option(None, "--group-by", help="Hold out whole groups (a ratings-table column), as for mos train."),
    val_data: Optional[Path] = typer.Option(None, "--val-data", help="Validation clips from this file (or tree) instead of a split of the data."),
    device: Optional[str] = typer.Option(None, "--device", help="Where the student trains: auto, cpu or cuda."),
    teacher_device: str = typer.Option("auto", "--teacher-device", help="Where the teacher scores (ONNX Runtime): auto, cpu or cuda."),
    teacher_batch_size: int = typer.Option(0, "--teacher-batch-size", min=0, help="Clips per teacher run (0: 16 on CPU, 64 on CUDA)."),
    threads: int = typer.Option(0, "--threads", min=0, help="CPU threads of the final speed comparison (0: every usable core)."),
    speed_repeats: int = typer.Option(3, "--speed-repeats", min=1, help="Timed runs of each bundle in the final comparison (median reported)."),
    resume: bool = typer.Option(False, "--resume", help="Continue <runs-dir>/<name>: labels already cached are kept, training resumes."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run folder of the same name."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Distil a big teacher into the fast edge model: the teacher labels every clip once (cached,
    resumable), the student trains on human ratings and teacher labels, is exported, and both are
    compared on the validation split (SRCC, LCC, MSE; clips/s end to end).

    Examples:\n
      mos distill runs/clap --data ./XACLE_dataset --name clap-student\n
      mos distill runs/aisfx/bundle --unlabeled ./more_audio --captions more.csv --augment 1 --name edge\n
      mos distill runs/clap --data ./XACLE_dataset --name clap-student --resume
    """
    from mos.distill.run import DistillSettings, run_distill, student_config as read_student_config
    from mos.distill.teacher import load_teacher
    from mos.trainer.config import TrainConfig

    console = Console(highlight=False, soft_wrap=True)
    try:
        from_file, model = read_student_config(student_config)
        overrides = dict(data=str(data) if data else None, name=name, runs_dir=runs_dir, columns=columns,
                         epochs=epochs, batch_size=batch_size, lr=lr, patience=patience, seed=seed,
                         text_encoder=text_encoder, max_seconds=max_seconds, group_by=group_by,
                         val_data=str(val_data) if val_data else None, device=device,
                         resume=resume or None, overwrite=overwrite or None)
        explicit = set(from_file) | {k for k, v in overrides.items() if v is not None}
        base = TrainConfig(**from_file)
        if name is None:
            overrides["name"] = f"{Path(teacher).resolve().name}-student"
        if text_encoder is None and "text_encoder" not in from_file:
            overrides["text_encoder"] = "minilm" if load_teacher(teacher).uses_text else "none"
        cfg = base.with_overrides(**overrides)
        settings = DistillSettings(
            teacher=str(teacher), unlabeled=str(unlabeled) if unlabeled else None, unlabeled_columns=unlabeled_columns,
            captions=str(captions) if captions else None, caption_columns=caption_columns,
            teacher_weight=teacher_weight, agree_weight=agree_weight, augment=augment, model=model,
            teacher_device=teacher_device, teacher_batch_size=teacher_batch_size, threads=threads,
            speed_repeats=speed_repeats, progress=not quiet)
        result = run_distill(cfg, settings, console, explicit)
    except MosError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        raise typer.Exit(2) from None
    console.print(f"run folder: {result.run_dir}", markup=False)

