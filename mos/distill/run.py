"""`mos distill` end to end: the teacher bundle scores and embeds every clip (the rated training
clips, an unlabelled pool, degraded copies, the validation clips) once, cached by content
(mos.distill.teacher_cache); the student (the conv edge model by default) trains with `mos
train`'s Trainer on the human ratings, the teacher's scores and, by default, the teacher's pooled
audio embedding; it is exported like any run; both bundles are then compared on the validation
split (metrics and end-to-end clips/s), printed and written to distill.json."""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from mos.bench.machine import usable_cores
from mos.data.manifest import Item, Manifest
from mos.distill.augment import AUGMENT_DIR, degraded_copies
from mos.distill.compare import DISTILL_FILE, compare, format_table, write_distill_json
from mos.distill.teacher import Teacher, ScoreRun, clip_key, load_teacher
from mos.files import read_json, sha256_file
from mos.errors import MosError
from mos.trainer.config import TrainConfig, parse_toml
from mos.trainer.splits import Splits, resolve_splits

# ModelConfig fields a student config may set: the conv edge model's size.
MODEL_SIZE_FIELDS = ("channels", "kernel_size", "strides", "hidden", "attention_heads", "n_mels", "dropout")
# Built-in student sizes (--student-config NAME); "edge" is the default model of `mos train`.
STUDENT_SIZES: dict[str, dict[str, Any]] = {
    "edge": {},
    "small": {"channels": [64, 96, 128, 128], "hidden": 128},
    "tiny": {"channels": [32, 48, 64, 64], "hidden": 64},
    "large": {"channels": [192, 256, 384, 384], "hidden": 384},
}


@dataclass
class DistillSettings:
    """What `mos distill` adds to a TrainConfig (the student's training settings)."""

    teacher: str
    unlabeled: str | None = None  # a folder, list file or table (with unlabeled_columns) of unrated audio
    demo_pool: int = 0  # > 0: that many unrated clips from the demo set's generator (the pool, without --unlabeled)
    unlabeled_columns: str | None = None
    captions: str | None = None  # captions of the unlabelled clips
    caption_columns: str | None = None
    teacher_weight: float = 0.5  # weight of the teacher's labels; 1 - it weighs the human ratings
    agree_weight: float = 0.5  # weight of the soft rank agreement with the teacher
    augment: int = 0  # degraded copies of each training and unlabelled clip, labelled by the teacher
    # Weight of the embedding loss (the student's projected pooled audio embedding against the
    # teacher's); 0: score-only distillation (also what a teacher without the embedding output gets).
    embedding_weight: float = 1.0
    teacher_cache: str | None = None  # root of the teacher's cached scores+embeddings (None: $MOS_CACHE_DIR/teacher)
    model: dict[str, Any] = field(default_factory=dict)  # student ModelConfig size fields
    # The student's sample rate (Hz; None: 16 kHz): its log-mel front end keeps 25 ms windows and a
    # 10 ms hop at that rate. A teacher that hears above 8 kHz needs a student that does too.
    student_rate: int | None = None
    teacher_device: str = "auto"
    teacher_batch_size: int = 0  # 0: the runtime's default
    threads: int = 0  # CPU threads of the speed comparison (0: every usable core)
    speed_batch_size: int = 16
    speed_repeats: int = 3
    progress: bool = True

    def check(self) -> None:
        if not 0 <= self.teacher_weight <= 1:
            raise MosError(f"--teacher-weight {self.teacher_weight:g}: must lie between 0 and 1")
        if self.agree_weight < 0:
            raise MosError(f"--agree-weight {self.agree_weight:g}: must not be negative")
        if self.embedding_weight < 0:
            raise MosError(f"--embedding-weight {self.embedding_weight:g}: must not be negative")
        if self.augment < 0:
            raise MosError(f"--augment {self.augment}: must not be negative")
        if self.speed_repeats < 1 or self.speed_batch_size < 1:
            raise MosError("--speed-repeats and the speed batch size must be at least 1")
        if self.demo_pool < 0:
            raise MosError(f"--demo-pool {self.demo_pool}: must not be negative")
        if self.demo_pool and self.unlabeled:
            raise MosError("--demo-pool makes the unlabelled pool; give it or --unlabeled, not both")
        if self.captions and not self.unlabeled:
            raise MosError("--captions names the captions of --unlabeled clips; give --unlabeled too")
        if self.student_rate is not None and not 8000 <= self.student_rate <= 48000:
            raise MosError(f"--student-rate {self.student_rate}: expected a rate from 8000 to 48000 Hz")
        unknown = sorted(set(self.model) - set(MODEL_SIZE_FIELDS))
        if unknown:
            raise MosError(f"student model: unknown size field(s) {', '.join(unknown)} "
                           f"(allowed: {', '.join(MODEL_SIZE_FIELDS)})")


def student_config(spec: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """--student-config: a size name (edge, small, tiny) or a JSON/TOML file of TrainConfig fields
    with an optional `model` table of size fields. Returns (TrainConfig fields, model fields)."""
    if spec is None:
        return {}, {}
    if spec in STUDENT_SIZES:
        return {}, dict(STUDENT_SIZES[spec])
    path = Path(spec)
    if not path.is_file():
        raise MosError(f"--student-config {spec}: not a size ({', '.join(STUDENT_SIZES)}) nor a JSON/TOML file")
    try:
        text = path.read_text(encoding="utf-8")
        raw = parse_toml(text) if path.suffix == ".toml" else json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MosError(f"{path}: not a valid student config: {' '.join(str(exc).split())}") from None
    if not isinstance(raw, dict):
        raise MosError(f"{path}: not a table of settings")
    model = raw.pop("model", {}) or {}
    size = model.pop("size", None)
    if size is not None:
        if size not in STUDENT_SIZES:
            raise MosError(f"{path}: model.size {size}: expected {', '.join(STUDENT_SIZES)}")
        model = {**STUDENT_SIZES[size], **model}
    TrainConfig.check_keys(raw, str(path))
    unknown = sorted(set(model) - set(MODEL_SIZE_FIELDS))
    if unknown:
        raise MosError(f"{path}: unknown model field(s) {', '.join(unknown)} (allowed: {', '.join(MODEL_SIZE_FIELDS)})")
    return raw, model


@dataclass
class DistillResult:
    run_dir: Path
    comparison: dict[str, Any]
    best_epoch: int


def unlabeled_pool(settings: DistillSettings, names: list[str], needs_text: bool, exclude: set[Path],
                   console: Console) -> list[Item]:
    """The --unlabeled clips (unrated: NaN targets) with their captions when a model needs them;
    clips that are rated training or validation clips, or lack a needed caption, are left out."""
    if not settings.unlabeled:
        return []
    from mos.data.detect import open_inputs
    from mos.data.table import parse_column_spec
    from mos.runtime.inputs import make_jobs, read_caption_file

    columns = parse_column_spec(settings.unlabeled_columns) if settings.unlabeled_columns else None
    inputs = open_inputs(Path(settings.unlabeled), columns, captions=needs_text)
    captions = read_caption_file(Path(settings.captions), settings.caption_columns) if settings.captions else None
    jobs = make_jobs(inputs.manifest, captions if needs_text else None, needs_text).jobs
    nan = {n: float("nan") for n in names}
    pool, no_caption, shared = [], [], 0
    for job in jobs:
        if job.error is not None:
            no_caption.append(job.error)
        elif job.path.resolve() in exclude:
            shared += 1
        else:
            pool.append(Item(id=f"unlabeled/{job.id}", path=job.path, caption=job.caption, targets=dict(nan)))
    console.print(f"unlabelled: {len(pool)} clips from {inputs.description}"
                  + (f"; {shared} left out (rated training or validation clips)" if shared else "")
                  + (f"; {len(no_caption)} left out without a caption (first: {no_caption[0]})" if no_caption else ""),
                  markup=False)
    if not pool:
        raise MosError(f"{settings.unlabeled}: no usable unlabelled clip"
                       + (" (the models need a caption per clip: --captions FILE)" if no_caption else ""))
    return pool


def _labelled(items: list[Item], labels: dict[str, np.ndarray], with_caption: bool) -> tuple[list[Item], list[Item]]:
    """(items the teacher labelled, items it could not)."""
    ok = [it for it in items if clip_key(it, with_caption) in labels]
    return ok, [it for it in items if clip_key(it, with_caption) not in labels]


def _teach(teacher: Teacher, items: list[Item], settings: DistillSettings, console: Console
           ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The teacher's scores and pooled audio embeddings of `items` (one teacher run per clip, cached
    by content: mos.distill.teacher_cache), keyed by `clip_key`."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from mos.distill.teacher_cache import TeacherCache, default_root, teach

    root = Path(settings.teacher_cache) if settings.teacher_cache else default_root()
    cache = TeacherCache(root, teacher)
    if settings.embedding_weight > 0 and not cache.dim:
        raise MosError(f"{teacher.bundle.root}: this teacher bundle has no pooled-embedding output (exported by an "
                       "older mos); export it again (mos export RUN) to distil its embedding, or use "
                       "--embedding-weight 0 for score-only distillation")
    with Progress(TextColumn("teacher"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True, disable=not settings.progress) as progress:
        task = progress.add_task("teacher", total=len(items))
        result = teach(teacher, items, cache, settings.teacher_device, 0, settings.teacher_batch_size,
                       note=lambda done: progress.update(task, completed=done))
    speed = f" at {result.clips_per_s:.1f} clips/s" if result.taught else ""
    what = f"scores and {cache.dim}-d embeddings" if cache.dim else "scores"
    console.print(f"teacher {teacher.name}: {what} of {result.taught} clips{speed}"
                  + (f"; {result.cached} from its cache" if result.cached else "")
                  + (f"; {len(result.failed)} unreadable and left out (first: {result.failed[0]})" if result.failed else ""),
                  markup=False)
    console.print(f"teacher cache: {cache.dir}", markup=False)
    labels: dict[str, np.ndarray] = {}
    embeddings: dict[str, np.ndarray] = {}
    for it, key in zip(items, result.keys):
        if key is not None:
            labels[clip_key(it, teacher.uses_text)] = cache.scores[key]
            embeddings[clip_key(it, teacher.uses_text)] = cache.embeddings[key]
    return labels, embeddings


def _resume_state(cfg: TrainConfig, run_dir: Path, teacher: Teacher, explicit: Collection[str],
                  console: Console) -> TrainConfig:
    """On --resume: the run's own training settings (when training had begun), and the same teacher."""
    from mos.trainer.run import resumed_config

    saved = run_dir / DISTILL_FILE
    if not saved.is_file():
        raise MosError(f"{saved}: nothing to resume (no such distill run)")
    was = (read_json(saved).get("teacher") or {}).get("bundle_sha256")
    if was != teacher.sha256:
        raise MosError(f"{saved}: this run distills another teacher (bundle sha256 {str(was)[:12]}..., "
                       f"this one {teacher.sha256[:12]}...); --overwrite starts again")
    if (run_dir / "config.json").is_file():
        return resumed_config(cfg, explicit, console)
    console.print("resume: training had not begun; labelling continues where it stopped", markup=False)
    return cfg


def run_distill(cfg: TrainConfig, settings: DistillSettings, console: Console,
                explicit: Collection[str] = ()) -> DistillResult:
    """Label, train, export, compare. `cfg` is the student's training config; on --resume only the
    settings named in `explicit` may override the run's own (as for `mos train --resume`)."""
    from mos.distill.trainer import DistillTrainer, TeacherStats
    from mos.export.run_data import export_run
    from mos.trainer.run import data_sources, demo_data
    from mos.trainer.run_folder import check_run_folder, clear_run_folder
    from mos.trainer.validation import target_metrics

    settings.check()
    if cfg.folds:
        raise MosError("--folds: mos distill trains one student; cross-validate the teacher with mos train")
    run_dir = Path(cfg.runs_dir) / cfg.name
    teacher = load_teacher(Path(settings.teacher))
    if cfg.resume:
        cfg = _resume_state(cfg, run_dir, teacher, explicit, console)
    cfg.check()
    check_run_folder(run_dir, cfg)
    data = Path(cfg.data) if cfg.data else demo_data(cfg, console)
    val_data = Path(cfg.val_data) if cfg.val_data else None
    columns = None
    if cfg.columns:
        from mos.data.table import parse_column_spec

        columns = parse_column_spec(cfg.columns)
    splits = resolve_splits(data, columns, cfg.val_fraction, cfg.seed, cfg.group_by, val_data)
    names = splits.train.target_names
    if sorted(teacher.targets) != sorted(names):
        raise MosError(f"{settings.teacher}: the teacher predicts {', '.join(teacher.targets)}, the data rates "
                       f"{', '.join(names)}: a teacher must predict the data's targets")
    order = [teacher.targets.index(n) for n in names]
    needs_text = teacher.uses_text or cfg.text_encoder != "none"
    clear_run_folder(run_dir, cfg, console)
    run_dir.mkdir(parents=True, exist_ok=True)
    record = {"teacher": teacher.record(), "settings": {**asdict(settings), "student": cfg.to_dict()}}
    write_distill_json(run_dir, record)

    rated_paths = {it.path.resolve() for it in splits.train.items + splits.validation.items}
    if settings.demo_pool:
        from mos.data.demo import build_demo_pool

        settings.unlabeled = str(build_demo_pool(Path(cfg.demo_dir), settings.demo_pool))
        settings.captions = str(Path(settings.unlabeled).parents[1] / "meta_data" / "train_average.csv")
    pool = unlabeled_pool(settings, names, needs_text, rated_paths, console)
    copies = degraded_copies(splits.train.items + pool, settings.augment, run_dir / AUGMENT_DIR, cfg.seed,
                             lambda m: console.print(m, markup=False))
    if copies:
        console.print(f"augment: {len(copies)} degraded copies (gain, noise, low-pass) for the teacher to label",
                      markup=False)
    copies = [Item(it.id, it.path, it.caption, {n: float("nan") for n in names}, it.system) for it in copies]
    train_items = splits.train.items + pool + copies
    labels, embeddings = _teach(teacher, train_items + splits.validation.items, settings, console)
    kept, lost = _labelled(train_items, labels, teacher.uses_text)
    if lost:
        console.print(f"left out of training: {len(lost)} clip(s) the teacher could not score (e.g. {lost[0].path})",
                      markup=False)
    if len(kept) < 2:
        raise MosError(f"{settings.teacher}: the teacher could score fewer than 2 training clips")
    val_ok, _ = _labelled(splits.validation.items, labels, teacher.uses_text)
    teacher_val = target_metrics(
        np.stack([labels[clip_key(it, teacher.uses_text)][order] for it in val_ok]),
        np.array([[it.targets[n] for n in names] for it in val_ok]), names) if len(val_ok) >= 2 else {}
    train = Manifest(kept, splits.train.targets, splits.train.source)
    rated = sum(1 for it in kept if np.isfinite(list(it.targets.values())).all())
    desc = (f"{splits.description}; distilled: {rated} rated + {len(kept) - rated} unrated training clips "
            f"labelled by teacher {teacher.name}")
    distillation = {"teacher": {**teacher.record(), "validation_metrics": teacher_val},
                    "teacher_weight": settings.teacher_weight, "agree_weight": settings.agree_weight,
                    "embedding_weight": settings.embedding_weight,
                    "rated_clips": rated, "unrated_clips": len(kept) - rated, "augment": settings.augment}
    model = dict(settings.model)
    if settings.student_rate:
        window, hop = round(0.025 * settings.student_rate), round(0.010 * settings.student_rate)
        model.update(sample_rate=settings.student_rate, n_fft=window, win_length=window, hop_length=hop)
    teacher_embeddings = None
    if settings.embedding_weight > 0:
        kept_emb = np.stack([embeddings[clip_key(it, teacher.uses_text)] for it in kept])
        teacher_embeddings = TeacherStats.of(kept_emb).standardise(kept_emb)
        model["distill_embedding_dim"] = int(kept_emb.shape[1])
    trainer = DistillTrainer(cfg, Splits(train, splits.validation, desc, splits.groups), console, run_dir,
                             data_sources(data, val_data), model_overrides=model,
                             checkpoint_extra={"distillation": distillation},
                             teacher=np.stack([labels[clip_key(it, teacher.uses_text)][order] for it in kept]),
                             teacher_weight=settings.teacher_weight, agree_weight=settings.agree_weight,
                             teacher_embeddings=teacher_embeddings, embedding_weight=settings.embedding_weight)
    result = trainer.fit()

    report = export_run(run_dir, log=lambda m: console.print(m, markup=False))
    for line in report.format():
        console.print(line, markup=False)
    student_dir = run_dir / "bundle"
    threads = settings.threads or usable_cores()
    speed = ScoreRun(settings.teacher_device, threads, settings.speed_batch_size, False)
    console.print(f"comparing teacher and student on {len(splits.validation)} validation clips "
                  f"({settings.speed_repeats} timed runs each, {threads} threads, batch {settings.speed_batch_size})",
                  markup=False)
    comparison = compare(teacher.bundle.root, teacher.uses_text, student_dir, trainer.model.cfg.uses_text,
                         splits.validation.items, names, run_dir / "compare", speed, settings.speed_repeats)
    from mos.model.mos_model import exported_parameters

    comparison["teacher"].update(teacher.record())
    comparison["student"].update({"bundle_sha256": sha256_file(student_dir / "mos.json"), "best_epoch": result.best_epoch,
                                  "parameters": exported_parameters(trainer.model)})
    comparison["settings"] = record["settings"]
    comparison["training_clips"] = {"rated": rated, "unrated": len(kept) - rated, "augmented": len(copies),
                                    "unlabeled": len(pool)}
    write_distill_json(run_dir, comparison)
    for line in format_table(comparison, names):
        console.print(line, markup=False)
    console.print(f"distill.json: {run_dir / DISTILL_FILE}", markup=False)
    return DistillResult(run_dir, comparison, result.best_epoch)
