"""The `mos` command line: the table of commands (COMMANDS), the app, and the train, export, eval
and demo commands (score, bench and distill live in their packages' command.py).

Heavy imports (torch for train/export) happen inside the commands, and a command's module loads
only when that command is used, so `mos score` and `mos eval` run in an environment without torch.

A new command: a function with typer parameters (options in `rich_help_panel`s when it has many)
and a docstring of a summary line, prose, an `Examples:` block and an `Exit codes:` block; one
line in COMMANDS; then `python -m mos.cli_docs --write` updates docs/cli.md.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.console import Console

from mos import __version__
from mos.cli_group import CommandGroup
from mos.errors import MosError

if TYPE_CHECKING:
    from mos.trainer.config import TrainConfig
    from mos.trainer.recipes import Recipe

# Every command: its name -> "module:function", in the order `mos --help` lists them. A command's
# module is imported only when that command runs or shows its help (mos.cli_group), so `mos score`
# never imports torch and starts fast; the functions are plain typer signatures, undecorated.
COMMANDS: dict[str, str] = {
    "train": "mos.cli:train",
    "export": "mos.cli:export_command",
    "score": "mos.runtime.command:score",
    "eval": "mos.cli:eval_command",
    "bench": "mos.bench.command:bench",
    "distill": "mos.distill.command:distill",
    "demo": "mos.cli:demo",
}


class MosCommands(CommandGroup):
    table = COMMANDS


app = typer.Typer(
    cls=MosCommands,
    add_completion=False,
    no_args_is_help=True,
    help="Learn to predict how people rate audio clips (MOS), export to ONNX, score without PyTorch.",
)
console = Console(highlight=False, soft_wrap=True)


def print_error(message: str) -> None:
    """One line on stderr, never wrapped, never a traceback."""
    print(f"error: {message}", file=sys.stderr, flush=True)


def fail(message: str, code: int = 2) -> None:
    print_error(message)
    raise typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        console.print(f"mos {__version__}")
        raise typer.Exit()


# The panels of `mos train --help`, in this order.
_DATA, _SETTINGS, _MODEL, _ENCODERS = "Data", "Recipe and settings", "Model", "Encoders"
_OPTIMISATION, _LOSS, _RUN, _OUTPUT = "Optimisation", "Loss", "Run control", "Output"


@app.callback()
def main_options(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """mos: train an audio(+text) MOS predictor, export it to ONNX, score folders anywhere."""


def parse_sizes(text: str | None, flag: str) -> list[int] | None:
    """'256,64' -> [256, 64] (None stays None); a one-line MosError otherwise."""
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise MosError(f"{flag} {text}: expected comma-separated layer sizes, e.g. 256,64") from None


def show_settings(preset: Recipe | None, cfg: TrainConfig, explicit: set[str]) -> None:
    """`mos train --show`: the recipe as shipped, then the settings the run would use, as TOML."""
    from mos.trainer.recipes import missing, to_toml

    if preset is not None:
        console.print(f"# recipe {preset.name} (mos/trainer/recipes/{preset.name}.toml):", markup=False)
        console.print(preset.text.rstrip("\n"), markup=False)
        console.print("", markup=False)
    console.print("# the resulting settings (defaults < recipe < --config < flags given):", markup=False)
    console.print(to_toml(cfg.to_dict()).rstrip("\n"), markup=False)
    needed = missing(preset, explicit) if preset is not None else None
    if needed:
        console.print(f"# still to give: {needed}", markup=False)


def train(
    data: Optional[Path] = typer.Argument(None, help="XACLE tree, MusicEval tree, CSV/JSONL ratings file. Default: the built-in demo set."),
    data_opt: Optional[Path] = typer.Option(None, "--data", help="Same as the DATA argument.", rich_help_panel=_DATA),
    columns: Optional[str] = typer.Option(None, "--columns", help="Column mapping for a generic CSV/JSONL, e.g. 'path=path,target:mushra=mean_score,system=system,range:mushra=0:100'.", rich_help_panel=_DATA),
    val_data: Optional[Path] = typer.Option(None, "--val-data", help="Validation clips from this file (or tree) instead of a split of DATA.", rich_help_panel=_DATA),
    val_fraction: Optional[float] = typer.Option(None, "--val-fraction", help="Held-out fraction when the data has no validation split (default 0.2).", rich_help_panel=_DATA),
    group_by: Optional[str] = typer.Option(None, "--group-by", help="Hold out (or fold) whole groups: a column of the ratings table, e.g. signal (default: by clip).", rich_help_panel=_DATA),
    folds: Optional[int] = typer.Option(None, "--folds", help="K-fold cross-validation: K models, out-of-fold metrics in cv.json.", rich_help_panel=_DATA),
    repeats: Optional[int] = typer.Option(None, "--repeats", help="With --folds: repeat the cross-validation R times with other fold assignments (repeat r seeded seed + (r-1)*1000, in <run>/repeats/r<r>/); cv.json gets each repeat's figures and their mean and SD (default 1).", rich_help_panel=_DATA),
    listener_norm: Optional[str] = typer.Option(None, "--listener-norm", help="Per-listener standardisation of the training ratings: 'off' (default), 'on' (needs listener ids) or 'auto' (on when the data has listener ids). Z-scores each listener, drops listeners who disagree with the others, trains on the cleaned means; validation is never cleaned. Report: listeners.json.", rich_help_panel=_DATA),
    listener_threshold: Optional[float] = typer.Option(None, "--listener-threshold", help="--listener-norm drops a listener whose ratings correlate below this with the other listeners' mean on the same clips (default 0.2).", rich_help_panel=_DATA),
    max_seconds: Optional[float] = typer.Option(None, "--max-seconds", help="Training window in seconds: random crop of longer clips; scoring cuts long files into windows of this length (default 10).", rich_help_panel=_DATA),
    gain_db: Optional[float] = typer.Option(None, "--gain-db", help="Augmentation: random gain of up to +-N dB on training clips (default 0 = off).", rich_help_panel=_DATA),
    recipe: Optional[str] = typer.Option(None, "--recipe", help="A shipped preset: musiceval-baseline, musiceval-baseline-exact, xacle-audiomos or xacle-clap; --config and flags given override it.", rich_help_panel=_SETTINGS),
    config: Optional[Path] = typer.Option(None, "--config", help="JSON or TOML file with TrainConfig fields; flags override it.", rich_help_panel=_SETTINGS),
    show: bool = typer.Option(False, "--show", help="Print the recipe and the resulting settings, then exit without training.", rich_help_panel=_SETTINGS),
    head: Optional[str] = typer.Option(None, "--head", help="'fusion' (frames attend to caption tokens), 'pooled' (audio and text embeddings into an MLP), 'per-target' (one such MLP per target), or 'svr' / 'ridge' (an RBF support vector or ridge regressor per target, fitted once on a frozen pretrained encoder's pooled embeddings, hyperparameters by a grouped search on the training clips); default: pooled with a pretrained --audio-encoder, fusion with conv.", rich_help_panel=_MODEL),
    head_layers: Optional[str] = typer.Option(None, "--head-layers", help="Hidden sizes of the pooled or per-target head, e.g. 256,64 (default).", rich_help_panel=_MODEL),
    head_activation: Optional[str] = typer.Option(None, "--head-activation", help="Between the pooled or per-target head's layers: 'gelu' (default, with dropout), 'relu' (with dropout, as the XACLE 2027 baseline) or 'none' (linear layers, as the MusicEval baseline).", rich_help_panel=_MODEL),
    dropout: Optional[float] = typer.Option(None, "--dropout", help="Dropout in the conv encoder, the fusion and the heads while training (default 0.1).", rich_help_panel=_MODEL),
    audio_only_targets: Optional[str] = typer.Option(None, "--audio-only-targets", help="With --head per-target: targets whose head sees the audio embedding alone, e.g. overall.", rich_help_panel=_MODEL),
    target_scale: Optional[str] = typer.Option(None, "--target-scale", help="What the heads learn: 'zscore' (each target standardised by its training mean and std; default) or 'raw' (the scores on the rating scale, as the MusicEval baseline). Scores come out on the rating scale either way.", rich_help_panel=_MODEL),
    distribution: Optional[int] = typer.Option(None, "--distribution", help="Predict each target's rating distribution over BINS values spanning its range, both ends included (e.g. 20): KL to smoothed listener ratings beside the other losses; scores then come with the listener spread (<target>_std). Default 0: none.", rich_help_panel=_MODEL),
    distribution_width: Optional[float] = typer.Option(None, "--distribution-width", help="Smoothing of the distribution targets: its standard deviation mid-scale, on the target's scale, narrowing to 0 at the ends (default and least: range / (2 sqrt(BINS - 1))).", rich_help_panel=_MODEL),
    audio_encoder: Optional[str] = typer.Option(None, "--audio-encoder", help="'conv' (default: the edge encoder, trained from scratch), 'aisfx' (pretrained sound-effects CNN), 'distillmos' (pretrained speech-quality model), a local transformers directory (CLAP, AST, wav2vec2, HuBERT, WavLM, data2vec-audio), a LAION-CLAP checkpoint (.pt), or an M2D / M2D-CLAP checkpoint (.pth, in its released folder); several joined with '+' (a frozen stack of encoders, pooled embeddings concatenated; lower-rate members resampled in the graph).", rich_help_panel=_ENCODERS),
    finetune_audio: Optional[bool] = typer.Option(None, "--finetune-audio/--freeze-audio", help="Train the pretrained audio encoder too, at --encoder-lr; --freeze-audio keeps it frozen, its features cached (the default).", rich_help_panel=_ENCODERS),
    encoder_lr: Optional[float] = typer.Option(None, "--encoder-lr", help="Learning rate of a fine-tuned audio encoder: its one-cycle peak, or its constant rate (default 1e-5).", rich_help_panel=_ENCODERS),
    encoder_mode: Optional[str] = typer.Option(None, "--encoder-mode", help="How a fine-tuned audio encoder runs while it trains: 'train' (its dropout on; default) or 'eval' (as at inference, as the MusicEval baseline's CLAP runs).", rich_help_panel=_ENCODERS),
    text_encoder: Optional[str] = typer.Option(None, "--text-encoder", help="'minilm' (built in, offline), a local transformers directory, a LAION-CLAP checkpoint (.pt, with RoBERTa's tokenizer beside it), or 'none' for audio-only.", rich_help_panel=_ENCODERS),
    max_text_tokens: Optional[int] = typer.Option(None, "--max-text-tokens", help="Captions are truncated to this many tokens, in training and in the bundle (default 64; LAION-CLAP's own tokenizer call: 77).", rich_help_panel=_ENCODERS),
    feature_cache: Optional[str] = typer.Option(None, "--feature-cache", help="Where a frozen encoder's features are cached (default $MOS_CACHE_DIR/features or ~/.cache/mos/features); 'none' runs the encoder on every batch.", rich_help_panel=_ENCODERS),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Maximum epochs (default 30).", rich_help_panel=_OPTIMISATION),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Clips per step (default 16).", rich_help_panel=_OPTIMISATION),
    accumulate: Optional[int] = typer.Option(None, "--accumulate", help="Gradient accumulation steps (default 1).", rich_help_panel=_OPTIMISATION),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate: the one-cycle peak, or the constant rate (default 1e-3).", rich_help_panel=_OPTIMISATION),
    optimizer: Optional[str] = typer.Option(None, "--optimizer", help="'adamw' (default) or 'sgd' (momentum 0.9).", rich_help_panel=_OPTIMISATION),
    schedule: Optional[str] = typer.Option(None, "--schedule", help="'one-cycle' (default) or 'constant' (--lr and --encoder-lr throughout).", rich_help_panel=_OPTIMISATION),
    grad_clip: Optional[float] = typer.Option(None, "--grad-clip", help="Clip the gradients' global norm to this before each step (default 5; 0 = never).", rich_help_panel=_OPTIMISATION),
    patience: Optional[int] = typer.Option(None, "--patience", help="Early stopping: epochs without a better --select-by value (default 6).", rich_help_panel=_OPTIMISATION),
    select_by: Optional[str] = typer.Option(None, "--select-by", help="What early stopping and the best checkpoint watch: 'srcc' (mean validation SRCC; default) or 'loss' (the training loss on the validation set).", rich_help_panel=_OPTIMISATION),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (default 0).", rich_help_panel=_OPTIMISATION),
    loss: Optional[str] = typer.Option(None, "--loss", help="The pointwise loss: 'mse' (default) or 'l1' (mean absolute error).", rich_help_panel=_LOSS),
    mse_weight: Optional[float] = typer.Option(None, "--mse-weight", help="Weight of the pointwise loss, (clipped) MSE or L1 (default 1.0).", rich_help_panel=_LOSS),
    clip_tau: Optional[float] = typer.Option(None, "--clip-tau", help="Clipped MSE: errors below tau (normalised units) cost nothing (default 0 = plain MSE; --loss mse only).", rich_help_panel=_LOSS),
    rank_weight: Optional[float] = typer.Option(None, "--rank-weight", help="Weight of the pairwise ranking loss (default 0.5).", rich_help_panel=_LOSS),
    corr_weight: Optional[float] = typer.Option(None, "--corr-weight", help="Weight of the 1-LCC loss (default 0.5).", rich_help_panel=_LOSS),
    listnet_weight: Optional[float] = typer.Option(None, "--listnet-weight", help="Weight of the ListNet top-1 loss over the batch (default 0).", rich_help_panel=_LOSS),
    distribution_weight: Optional[float] = typer.Option(None, "--distribution-weight", help="Weight of the KL term (default 1.0).", rich_help_panel=_LOSS),
    loss_reduction: Optional[str] = typer.Option(None, "--loss-reduction", help="How the targets' losses combine: 'mean' (default) or 'sum' (the MusicEval baseline's: one backward call per head adds them up).", rich_help_panel=_LOSS),
    val_loss_clamp: Optional[bool] = typer.Option(None, "--val-loss-clamp/--no-val-loss-clamp", help="The validation loss from clip scores clamped to each target's range, as mos score gives them (the default), or from the unclamped model outputs (--no-val-loss-clamp, the MusicEval baseline's).", rich_help_panel=_LOSS),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu or cuda (default auto).", rich_help_panel=_RUN),
    nproc: Optional[int] = typer.Option(None, "--nproc", help="Train on N processes (DDP: gloo on CPU, nccl on CUDA) by starting torchrun; --batch-size stays the global batch. Same as torchrun --nproc-per-node N -m mos train ...", rich_help_panel=_RUN),
    resume: bool = typer.Option(False, "--resume", help="Continue the run <runs-dir>/<name> with its own settings; given flags override them.", rich_help_panel=_RUN),
    name: Optional[str] = typer.Option(None, "--name", help="Run name: outputs go to <runs-dir>/<name>/ (default: demo, or the data folder's name).", rich_help_panel=_OUTPUT),
    runs_dir: Optional[str] = typer.Option(None, "--runs-dir", help="Where run folders are written (default: runs).", rich_help_panel=_OUTPUT),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run folder of the same name.", rich_help_panel=_OUTPUT),
) -> None:
    """Train a MOS model. With no data it trains on the built-in demo set (made on first use).

    Settings come from, each over the one before: the defaults, a --recipe, a --config file, the flags given. A run writes its folder <runs-dir>/<name>/: checkpoints, metrics, validation predictions, train.log.

    Examples:
        mos train                                     # the demo set -> runs/demo/
        mos train ./XACLE_dataset --name xacle --epochs 50
        mos train ./MusicEval-phase1 --name musiceval --accumulate 4
        mos train ratings.csv --columns 'path=path,target:mushra=mean_score,system=system' --group-by signal --text-encoder none
        mos train ratings.csv --columns '...' --group-by signal --folds 4 --text-encoder none   # cross-validation
        mos train ratings.csv --columns '...' --group-by signal --folds 4 --repeats 5 --text-encoder none   # 5 fold assignments: mean +- SD
        mos train --resume --name xacle --epochs 80   # continue a run, with more epochs
        mos train ./XACLE_dataset --audio-encoder ./clap-htsat-unfused --text-encoder ./clap-htsat-unfused --head pooled
        mos train ./XACLE_dataset --recipe xacle-audiomos   # a shipped preset; --recipe NAME --show prints it
        mos train ./XACLE_dataset --nproc 2           # two DDP processes, the same global batch

    Exit codes:
        0  trained, or --show printed the settings
        2  bad settings, data or run folder (one line on stderr says which and why)
        N  with --nproc: the exit code of the training process that failed
    """
    from mos.trainer.run import run_training
    from mos.trainer.config import TrainConfig

    data = data or data_opt
    try:
        from_file = TrainConfig.read_file(config) if config else {}
        preset = None
        if recipe is not None:
            from mos.trainer.recipes import load_recipe

            preset = load_recipe(recipe)
            if resume:
                raise MosError(f"--recipe {recipe} with --resume: a resumed run keeps its own settings; drop --recipe")
        base = TrainConfig(**{**(preset.settings if preset else {}), **from_file})
        overrides = dict(
            data=str(data) if data else None, name=name, runs_dir=runs_dir, columns=columns, epochs=epochs,
            batch_size=batch_size, accumulate=accumulate, lr=lr, optimizer=optimizer, schedule=schedule,
            patience=patience, select_by=select_by, val_loss_clamp=val_loss_clamp, seed=seed, loss=loss,
            mse_weight=mse_weight, loss_reduction=loss_reduction, target_scale=target_scale, grad_clip=grad_clip,
            rank_weight=rank_weight, corr_weight=corr_weight, listnet_weight=listnet_weight, clip_tau=clip_tau,
            text_encoder=text_encoder, max_text_tokens=max_text_tokens, audio_encoder=audio_encoder,
            finetune_audio=finetune_audio, encoder_lr=encoder_lr, encoder_mode=encoder_mode, head=head, head_layers=parse_sizes(head_layers, "--head-layers"),
            head_activation=head_activation, dropout=dropout, distribution_bins=distribution, distribution_width=distribution_width,
            distribution_weight=distribution_weight,
            audio_only_targets=[t.strip() for t in audio_only_targets.split(",") if t.strip()] if audio_only_targets is not None else None,
            feature_cache=feature_cache, device=device, gain_db=gain_db, max_seconds=max_seconds, val_fraction=val_fraction,
            group_by=group_by, val_data=str(val_data) if val_data else None, folds=folds, repeats=repeats,
            listener_norm=listener_norm, listener_threshold=listener_threshold,
            resume=resume or None, overwrite=overwrite or None,
        )
        if name is None and data is not None and base.name == "demo":
            overrides["name"] = Path(data).stem
        cfg = base.with_overrides(**overrides)
        # What the user asked for (flags given, keys of --config): on --resume only these may override the run's own.
        explicit = set(from_file) | {k for k, v in overrides.items() if v is not None}
        if show:
            show_settings(preset, cfg, explicit)
            return
        if preset is not None:
            from mos.trainer.recipes import missing

            needed = missing(preset, explicit)
            if needed:
                raise MosError(needed)
        if nproc is not None and nproc != 1:
            code = launch_processes(nproc, cfg, explicit)
            if code == 2:  # a MosError: the processes have said why, in one line
                raise typer.Exit(code)
            if code:
                fail(f"--nproc {nproc}: a training process failed (exit code {code})", code)
            return
        result = run_training(cfg, console, explicit)
    except MosError as exc:
        fail(str(exc) if env_rank_text() == "0" else f"rank {env_rank_text()}: {exc}")
    if env_rank_text() == "0":
        console.print(f"run folder: {result.run_dir}")


def env_rank_text() -> str:
    """This process's RANK under torchrun ("0" otherwise)."""
    import os

    return os.environ.get("RANK", "0")


def launch_processes(nproc: int, cfg: TrainConfig, explicit: set[str]) -> int:
    """`mos train --nproc N`: check what can be checked here (one line on bad input), then run the
    same command under torchrun; its exit code."""
    import io
    import os

    from mos.heads import KERNEL_HEADS
    from mos.trainer.distributed import launch
    from mos.trainer.run import checked_config

    if nproc < 1:
        raise MosError(f"--nproc {nproc}: expected a number of processes, 1 or more")
    if "WORLD_SIZE" in os.environ:
        raise MosError(f"--nproc {nproc}: this process already runs under torchrun (WORLD_SIZE is set); drop --nproc")
    checked = checked_config(cfg, Console(file=io.StringIO()), explicit)
    if checked.data:  # the data can be read (a demo set is made by the first process)
        from mos.trainer.run import run_splits

        run_splits({"train": checked.to_dict()}, Path(checked.data))
    if checked.folds:
        raise MosError(f"--folds {checked.folds}: cross-validation runs in one process (drop --nproc)")
    if checked.head in KERNEL_HEADS:
        raise MosError(f"--head {checked.head}: fitted once in one process (drop --nproc)")
    if checked.batch_size < nproc:
        raise MosError(f"--batch-size {checked.batch_size} is the global batch: it must give each of the {nproc} "
                       "processes at least one clip")
    return launch(nproc, sys.argv[1:])


def export_command(
    source: Path = typer.Argument(Path("runs/demo"), help="A run folder (uses checkpoints/best.pt) or a checkpoint file; with --check, a bundle."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset; the file's opset import equals it exactly, or the export fails."),
    out: Optional[Path] = typer.Option(None, "--out", help="Bundle directory (default: <run>/bundle)."),
    quantize: Optional[str] = typer.Option(None, "--quantize", help="'int8': add audio.int8.onnx (static QDQ on convolutions, calibrated on the run's training clips) and, for text models, text.int8.onnx (static QDQ on MatMuls, calibrated on its captions); each written only if it agrees with fp32 on the run's validation clips (docs/commands/export.md: the int8 rule)."),
    fp16: bool = typer.Option(False, "--fp16", help="Add audio.fp16.onnx for GPU use."),
    force: bool = typer.Option(False, "--force", help="Write the int8 variants even when they miss the int8 rule or no validation clips can judge them (what they missed is recorded in mos.json)."),
    check: bool = typer.Option(False, "--check", help="Re-run the verification on an existing bundle (SOURCE is the bundle); fails when the run's checkpoint changed since export."),
    no_verify: bool = typer.Option(False, "--no-verify", help="Skip PyTorch-vs-ONNX Runtime verification (not recommended)."),
    pretrained: Optional[str] = typer.Option(None, "--pretrained", help="'distillmos': export Distill-MOS as published (its own head, target 'mos' on 1-5; needs `pip install --no-deps distillmos==0.9.1`) instead of a run; needs --out."),
) -> None:
    """Export a trained model to a verified ONNX bundle (audio.onnx, text.onnx, tokenizer.json, mos.json).

    The bundle is verified before it replaces the output folder: ONNX Runtime, through the code mos score runs, against PyTorch on clips of several lengths, and a padded batch against each clip alone.

    Examples:
        mos export runs/demo --opset 17 --quantize int8
        mos export runs/demo/checkpoints/best.pt --out ./bundle --fp16
        mos export --check runs/demo/bundle
        mos export --pretrained distillmos --out ./distillmos

    Exit codes:
        0  exported and verified (with --check: the bundle passes)
        2  bad input, or the verification failed (one line on stderr says which check)
    """
    try:
        if check:
            from mos.export import verify_bundle

            report = verify_bundle(source, raise_on_failure=False)
            for line in report.format():
                console.print(line, markup=False)
            report.raise_if_failed()
            return
        if pretrained is not None:
            from mos.export.pretrained import export_pretrained

            if quantize is not None:
                raise MosError(f"--pretrained {pretrained}: --quantize needs a run's clips to calibrate and judge on; "
                               "export it fp32 (or with --fp16)")
            report = export_pretrained(pretrained, out, opset, fp16, verify=not no_verify,
                                       log=lambda m: console.print(m, markup=False))
            for line in report.format():
                console.print(line, markup=False)
            console.print(f"bundle: {report.bundle}")
            return
        from mos.export.run_data import export_run

        report = export_run(source, out, opset, quantize, fp16, verify=not no_verify,
                            log=lambda m: console.print(m, markup=False), force=force)
        for line in report.format():
            console.print(line, markup=False)
        console.print(f"bundle: {report.bundle}")
    except MosError as exc:
        fail(str(exc))


def eval_command(
    pred: Path = typer.Argument(..., help="Predictions: a mos score CSV/JSONL, a trainer's val_predictions.csv / oof_predictions.csv, an XACLE 'wav_file_name,pred_score' CSV, or an AudioMOS answer.txt."),
    truth: Path = typer.Argument(..., help="Ratings: an XACLE *_average.csv, a MusicEval *_mos_list.txt, or a CSV/JSONL table read with --columns."),
    columns: Optional[str] = typer.Option(None, "--columns", help="Column mapping of a generic ratings table, as for mos train, e.g. 'path=path,target:mushra=mean_score,system=system'."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the metrics as JSON."),
) -> None:
    """Utterance- and system-level MSE, LCC, SRCC and KTAU of predictions against ratings.

    Predictions join the ratings on the clip's path relative to the ratings file (or the id the trainer or mos score wrote); a shorter path or a bare file name only where it names one clip.

    Examples:
        mos eval answer.txt MusicEval-phase1/sets/dev_mos_list.txt
        mos eval runs/mushra/val_predictions.csv ratings.csv --columns 'path=path,target:mushra=mean_score,system=system'

    Exit codes:
        0  the metrics were printed
        2  a file cannot be read, or the predictions miss rated clips (one line on stderr says which)
    """
    from mos.evaluate import run_eval

    try:
        console.print(run_eval(pred, truth, json_out, columns), markup=False)
    except MosError as exc:
        fail(str(exc))


def demo(
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="Where the run folder runs/demo/ is written."),
    demo_dir: Path = typer.Option(Path("data/demo"), "--demo-dir", help="Where the demo data set is generated."),
    epochs: int = typer.Option(30, "--epochs", help="Maximum training epochs (early stopping usually ends sooner)."),
    bench: bool = typer.Option(True, "--bench/--no-bench", help="Finish with a quick mos bench."),
) -> None:
    """The whole product on the built-in demo set: train, export (int8), score, eval, bench.

    Examples:
        mos demo                  # a few minutes on a 2-core CPU; prints where its outputs are
        mos demo --no-bench --epochs 5

    Exit codes:
        0  every step finished
        2  a step failed on bad input (one line on stderr says which)
    """
    from mos.demo_job import run_demo

    try:
        run_demo(console, runs_dir, demo_dir, epochs, bench)
    except MosError as exc:
        fail(str(exc))


def main(args: list[str] | None = None) -> None:
    """The `mos` command (`args`: the command line after `mos`; default sys.argv)."""
    try:
        app(args=args, prog_name="mos")
    except MosError as exc:  # any user error that escaped a command
        print_error(str(exc))
        sys.exit(2)


if __name__ == "__main__":
    main()
