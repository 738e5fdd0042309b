"""`mos train` end to end: the run's config (a resumed run's own, plus explicit overrides), its
folder (never silently replaced), the data (the demo set when none is given), split, the
training clips' listener standardisation (--listener-norm), train;
or, with `folds`, a cross-validation (mos.trainer.cv).

Under torchrun (WORLD_SIZE > 1) every process runs this: the process group is joined once the
config is known, rank 0 alone prints, builds the demo set and writes the run folder
(mos.trainer.distributed)."""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import fields
from pathlib import Path

from rich.console import Console

from mos.errors import MosError
from mos.trainer.config import TrainConfig
from mos.trainer.distributed import Dist, env_rank, env_world, setup, teardown
from mos.trainer.listener_norm import clean_training, listener_norm_active, write_report
from mos.trainer.loop import RunResult, Trainer
from mos.trainer.run_folder import check_run_folder, clear_run_folder
from mos.trainer.splits import Splits, resolve_splits

# What a resumed run may change: how long, how patiently and where it trains. Everything else
# (data, split, model, optimiser, batch) is the run's own, or the run would not be the same run.
RESUME_OVERRIDABLE = ("epochs", "patience", "device", "num_workers", "amp", "cache_audio", "cache_limit_mb",
                      "feature_cache")
_NOT_SETTINGS = ("resume", "overwrite", "name", "runs_dir", "demo_dir")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def demo_data(cfg: TrainConfig, console: Console) -> Path:
    from mos.data.demo import build_demo

    root = build_demo(Path(cfg.demo_dir))
    console.print(f"demo data: {root}", markup=False)
    return root


def _same_path(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a == b
    return Path(a).resolve() == Path(b).resolve()


def resumed_config(cfg: TrainConfig, explicit: Collection[str], console: Console) -> TrainConfig:
    """The run's saved config; of the settings named in `explicit` (given on the command line or
    in --config), those that differ from it override it when RESUME_OVERRIDABLE allows, and are
    printed; any other change is an error."""
    saved_path = Path(cfg.runs_dir) / cfg.name / "config.json"
    if not saved_path.is_file():
        raise MosError(f"{saved_path}: nothing to resume (no such run)")
    try:
        raw = json.loads(saved_path.read_text(encoding="utf-8"))
        known = {f.name for f in fields(TrainConfig)}
        saved = TrainConfig(**{k: v for k, v in raw["train"].items() if k in known})
    except (ValueError, KeyError, TypeError) as exc:
        raise MosError(f"{saved_path}: not a readable run config ({type(exc).__name__})") from None
    # Where the data is: the absolute paths recorded at training time, whatever the current directory.
    saved.data = raw.get("data_dir", saved.data)
    saved.val_data = raw.get("val_data_dir", saved.val_data)
    changes = []
    for name in sorted(set(explicit) - set(_NOT_SETTINGS)):
        new, old = getattr(cfg, name), getattr(saved, name)
        if name in ("data", "val_data"):
            if _same_path(new, old):
                continue
        elif new == old:
            continue
        if name not in RESUME_OVERRIDABLE:
            allowed = ", ".join(_flag(n) for n in RESUME_OVERRIDABLE[:3])
            raise MosError(f"{saved_path}: --resume continues the run as it was made: {_flag(name)} is {old}, not {new} "
                           f"(a resume may change only {allowed}; start a new run with --name for the rest)")
        changes.append(f"{_flag(name)} {old} -> {new}")
        setattr(saved, name, new)
    saved.resume, saved.overwrite, saved.runs_dir, saved.name = True, False, cfg.runs_dir, cfg.name
    console.print(f"resume: the run's own config ({saved_path})"
                  + (f"; overrides: {', '.join(changes)}" if changes else "; no overrides"), markup=False)
    return saved


def data_sources(data: Path, val_data: Path | None) -> dict[str, str]:
    """What config.json records about where the data is (absolute paths, contract 6)."""
    out = {"data_dir": str(data.resolve())}
    if val_data is not None:
        out["val_data_dir"] = str(val_data.resolve())
    return out


def run_splits(config: dict, data: Path | None = None) -> Splits:
    """The split a single run's config.json records, made again from its data (e.g. for export);
    `data` overrides where the training data is (when the caller located it otherwise)."""
    from mos.data.table import parse_column_spec

    train = config["train"]
    if data is None:
        data = Path(config.get("data_dir") or train.get("data") or Path(train["demo_dir"]) / "XACLE_dataset")
    val_data = config.get("val_data_dir") or train.get("val_data")
    columns = parse_column_spec(train["columns"]) if train.get("columns") else None
    return resolve_splits(data, columns, train.get("val_fraction", 0.2), train.get("seed", 0),
                          train.get("group_by"), Path(val_data) if val_data else None)


def run_training(cfg: TrainConfig, console: Console, explicit: Collection[str] = ()):  # -> RunResult | CvResult
    """Train one run (or cross-validate with cfg.folds). On --resume, `explicit` names the
    settings the user gave (flags or a --config file): only those may override the run's own.
    Under torchrun, one of several DDP processes (rank 0 prints and writes)."""
    if env_world() > 1 and env_rank() > 0:
        console = Console(quiet=True)
    cfg = checked_config(cfg, console, explicit)
    if cfg.folds and env_world() > 1:
        raise MosError(f"--folds {cfg.folds}: cross-validation runs in one process (drop --nproc / torchrun)")
    dist = setup(cfg.device)
    try:
        return _train(cfg, console, dist)
    finally:
        teardown(dist)


def checked_config(cfg: TrainConfig, console: Console, explicit: Collection[str] = ()) -> TrainConfig:
    """The config a run trains with (a resumed run's own plus overrides), checked, its folder checked."""
    if cfg.resume:
        cfg = resumed_config(cfg, explicit, console)
    cfg.check()
    check_run_folder(Path(cfg.runs_dir) / cfg.name, cfg)
    return cfg


def _train(cfg: TrainConfig, console: Console, dist: Dist | None):  # -> RunResult | CvResult
    run_dir = Path(cfg.runs_dir) / cfg.name
    if dist is not None:
        dist.barrier()  # every rank has checked the run folder before rank 0 writes to it
        with dist.main_first():  # rank 0 builds the demo set on first use
            data = Path(cfg.data) if cfg.data else demo_data(cfg, console)
    else:
        data = Path(cfg.data) if cfg.data else demo_data(cfg, console)
    val_data = Path(cfg.val_data) if cfg.val_data else None
    columns = None
    if cfg.columns:
        from mos.data.table import parse_column_spec

        columns = parse_column_spec(cfg.columns)
    sources = data_sources(data, val_data)
    if cfg.folds:
        from mos.trainer.cv import run_cross_validation

        return run_cross_validation(cfg, console, data, columns, run_dir, sources)
    splits = resolve_splits(data, columns, cfg.val_fraction, cfg.seed, cfg.group_by, val_data)
    report = None
    if listener_norm_active(cfg, splits.train, console):
        splits, report = clean_training(cfg, splits)
        console.print(report.line(), markup=False)
    trainer = Trainer(cfg, splits, console, run_dir, sources, dist=dist)
    if dist is None or dist.is_main:
        clear_run_folder(run_dir, cfg, console)
        if report is not None:
            write_report(run_dir, report, splits.train.source)
    result: RunResult = trainer.fit()
    return result
