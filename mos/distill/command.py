"""The `mos distill` command (typer); mos.cli registers it. torch is imported only when it runs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from mos.errors import MosError


# The panels of `mos distill --help`, in this order.
_DATA, _STUDENT, _DISTIL, _OPTIMISATION = "Data", "Student", "Distillation", "Optimisation"
_TEACHER, _RUN, _OUTPUT = "Teacher and comparison", "Run control", "Output"


def distill(
    teacher: Path = typer.Argument(..., help="The teacher: an exported bundle, or a run folder holding one in bundle/ (mos export RUN)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Rated data, as for mos train (XACLE/MusicEval tree, CSV/JSONL with --columns). Default: the built-in demo set.", rich_help_panel=_DATA),
    columns: Optional[str] = typer.Option(None, "--columns", help="Column mapping of a generic ratings table, as for mos train.", rich_help_panel=_DATA),
    group_by: Optional[str] = typer.Option(None, "--group-by", help="Hold out whole groups (a ratings-table column), as for mos train.", rich_help_panel=_DATA),
    val_data: Optional[Path] = typer.Option(None, "--val-data", help="Validation clips from this file (or tree) instead of a split of the data.", rich_help_panel=_DATA),
    unlabeled: Optional[Path] = typer.Option(None, "--unlabeled", help="Unrated audio the teacher labels for the student: a folder, a list file, or a CSV/JSONL table (--unlabeled-columns).", rich_help_panel=_DATA),
    unlabeled_columns: Optional[str] = typer.Option(None, "--unlabeled-columns", help="Column mapping of an --unlabeled table, e.g. 'path=file,caption=text'.", rich_help_panel=_DATA),
    demo_pool: int = typer.Option(0, "--demo-pool", min=0, help="Make N unrated clips with the demo set's generator (another seed) and use them as the unlabelled pool (instead of --unlabeled).", rich_help_panel=_DATA),
    demo_dir: Optional[Path] = typer.Option(None, "--demo-dir", help="Where the demo set (and a --demo-pool) is generated (default: data/demo).", rich_help_panel=_DATA),
    captions: Optional[Path] = typer.Option(None, "--captions", help="Captions of the --unlabeled clips (CSV wav_file_name,text, or a MusicEval prompt file), when a model reads text.", rich_help_panel=_DATA),
    caption_columns: Optional[str] = typer.Option(None, "--caption-columns", help="Columns of a --captions CSV as id_col,text_col.", rich_help_panel=_DATA),
    student_config: Optional[str] = typer.Option(None, "--student-config", help="The student's size: edge (default, mos train's model), small, tiny, large, or a JSON/TOML file of mos train settings with a model table (channels, hidden, ...).", rich_help_panel=_STUDENT),
    student_rate: Optional[int] = typer.Option(None, "--student-rate", help="The student's sample rate in Hz (default 16000); its front end keeps 25 ms windows and a 10 ms hop. E.g. 24000 or 32000 when quality differs above 8 kHz (codecs, band limits).", rich_help_panel=_STUDENT),
    text_encoder: Optional[str] = typer.Option(None, "--text-encoder", help="The student's text encoder (default: minilm when the teacher reads captions, else none).", rich_help_panel=_STUDENT),
    max_seconds: Optional[float] = typer.Option(None, "--max-seconds", help="The student's training and scoring window in seconds (default 10).", rich_help_panel=_STUDENT),
    teacher_weight: float = typer.Option(0.5, "--teacher-weight", help="Weight of the teacher's labels (every clip); 1 minus it weighs the human ratings (rated clips only). 1: teacher only.", rich_help_panel=_DISTIL),
    agree_weight: float = typer.Option(0.5, "--agree-weight", help="Weight of the soft rank agreement with the teacher over each batch.", rich_help_panel=_DISTIL),
    embedding_weight: float = typer.Option(1.0, "--embedding-weight", help="Weight of embedding distillation: the student's pooled audio embedding (through a linear projection) learns the teacher's on every clip. 0: distil the teacher's scores only.", rich_help_panel=_DISTIL),
    teacher_cache: Optional[Path] = typer.Option(None, "--teacher-cache", help="Where the teacher's scores and embeddings are cached, by clip content and teacher (default $MOS_CACHE_DIR/teacher or ~/.cache/mos/teacher).", rich_help_panel=_TEACHER),
    augment: int = typer.Option(0, "--augment", min=0, help="Degraded copies (gain, noise, codec-like low-pass) of each training and unlabelled clip, labelled by the teacher.", rich_help_panel=_DISTIL),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Maximum epochs (default 30).", rich_help_panel=_OPTIMISATION),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Clips per step (default 16).", rich_help_panel=_OPTIMISATION),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate (default 1e-3).", rich_help_panel=_OPTIMISATION),
    patience: Optional[int] = typer.Option(None, "--patience", help="Early stopping patience in epochs (default 6).", rich_help_panel=_OPTIMISATION),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (default 0).", rich_help_panel=_OPTIMISATION),
    teacher_device: str = typer.Option("auto", "--teacher-device", help="Where the teacher scores (ONNX Runtime): auto, cpu or cuda.", rich_help_panel=_TEACHER),
    teacher_batch_size: int = typer.Option(0, "--teacher-batch-size", min=0, help="Clips per teacher run (0: 16 on CPU, 64 on CUDA).", rich_help_panel=_TEACHER),
    threads: int = typer.Option(0, "--threads", min=0, help="CPU threads of the final speed comparison (0: every usable core).", rich_help_panel=_TEACHER),
    speed_repeats: int = typer.Option(3, "--speed-repeats", min=1, help="Timed runs of each bundle in the final comparison (median reported).", rich_help_panel=_TEACHER),
    device: Optional[str] = typer.Option(None, "--device", help="Where the student trains: auto, cpu or cuda.", rich_help_panel=_RUN),
    resume: bool = typer.Option(False, "--resume", help="Continue <runs-dir>/<name>: labels already cached are kept, training resumes.", rich_help_panel=_RUN),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars.", rich_help_panel=_RUN),
    name: Optional[str] = typer.Option(None, "--name", help="The student's run name: outputs go to <runs-dir>/<name>/ (default: <teacher>-student).", rich_help_panel=_OUTPUT),
    runs_dir: Optional[str] = typer.Option(None, "--runs-dir", help="Where run folders are written (default: runs).", rich_help_panel=_OUTPUT),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run folder of the same name.", rich_help_panel=_OUTPUT),
) -> None:
    """Distil a big teacher into the fast edge model, and compare the two on the validation split.

    The teacher scores and embeds every clip once (cached by content, resumable); the student learns the teacher's pooled audio embedding on every clip, and the human ratings and teacher's scores, and is exported; the comparison reports SRCC, LCC and MSE of both, and their clips/s end to end.

    Examples:
        mos distill runs/clap --data ./XACLE_dataset --name clap-student
        mos distill runs/aisfx/bundle --unlabeled ./more_audio --captions more.csv --augment 1 --name edge
        mos distill runs/aisfx --name demo-student --demo-pool 1000
        mos distill runs/speech --data ratings.csv --columns "$COLS" --student-rate 24000 --augment 3 --name edge
        mos distill runs/clap --data ./XACLE_dataset --name clap-student --resume

    Exit codes:
        0  the student was trained, exported and compared
        2  bad settings, teacher or data (one line on stderr says which and why)
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
                         demo_dir=str(demo_dir) if demo_dir else None,
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
            demo_pool=demo_pool, student_rate=student_rate,
            captions=str(captions) if captions else None, caption_columns=caption_columns,
            teacher_weight=teacher_weight, agree_weight=agree_weight, augment=augment, model=model,
            embedding_weight=embedding_weight, teacher_cache=str(teacher_cache) if teacher_cache else None,
            teacher_device=teacher_device, teacher_batch_size=teacher_batch_size, threads=threads,
            speed_repeats=speed_repeats, progress=not quiet)
        result = run_distill(cfg, settings, console, explicit)
    except MosError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        raise typer.Exit(2) from None
    console.print(f"run folder: {result.run_dir}", markup=False)

