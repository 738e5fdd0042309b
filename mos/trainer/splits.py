"""Choose the training and validation manifests of a run, and the folds of a cross-validation.

Where the data has its own validation split (XACLE, MusicEval) it is used; `--val-data FILE`
names one explicitly; otherwise a split is made here: a seeded random fraction of clips, or with
`--group-by COLUMN` a seeded fraction of the column's values (every clip of a value on one side,
so e.g. an utterance heard in training never reappears in validation). Every split says in its
`description` how it was made; that line is printed and recorded in the run folder.
Cross-validation folds are dealt here too: once, or once per repeat (`--repeats`), every repeat
dealing the groups differently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mos.data.detect import open_dataset
from mos.data.manifest import Manifest
from mos.data.table import ColumnMap, load_table_groups
from mos.errors import MosError

TRAIN_SPLITS = ("train", "all")
VALIDATION_SPLITS = ("validation", "dev", "valid", "val")
ITEM_GROUPS = ("system", "caption")  # --group-by values read from the clips themselves


@dataclass
class Splits:
    train: Manifest
    validation: Manifest
    description: str  # where the data came from and how the split was made
    groups: dict[str, str] | None = field(default=None)  # item id -> --group-by value (both sides)


def _require_targets(m: Manifest, split: str) -> None:
    if not m.targets:
        raise MosError(f"{m.source}: the {split} split has no scores to train on")
    for it in m.items:
        missing = [t for t in m.target_names if t not in it.targets]
        if missing:
            raise MosError(f"{m.source}: clip {it.id} has no value for target(s) {', '.join(missing)}")


def _subset(m: Manifest, keep: list[bool]) -> Manifest:
    return Manifest([it for it, k in zip(m.items, keep) if k], m.targets, m.source)


def random_split(m: Manifest, fraction: float, seed: int) -> tuple[Manifest, Manifest]:
    """Hold out a seeded random `fraction` of the items as validation."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(m.items))
    n_val = max(1, int(round(fraction * len(m.items))))
    val_idx = set(order[:n_val].tolist())
    return _subset(m, [i not in val_idx for i in range(len(m))]), _subset(m, [i in val_idx for i in range(len(m))])


def shuffled_groups(groups: list[str], seed: int) -> list[str]:
    """The distinct values of `groups`, sorted then shuffled by `seed` (the same order anywhere)."""
    names = sorted(set(groups))
    return [names[i] for i in np.random.default_rng(seed).permutation(len(names))]


def grouped_split(m: Manifest, groups: dict[str, str], fraction: float, seed: int) -> tuple[Manifest, Manifest, int, int]:
    """Hold out a seeded `fraction` of the group values (all clips of a value together).

    Returns (train, validation, held-out values, all values)."""
    order = shuffled_groups([groups[it.id] for it in m.items], seed)
    if len(order) < 2:
        raise MosError(f"{m.source}: a grouped split needs at least 2 groups; found {len(order)}")
    n_val = min(len(order) - 1, max(1, int(round(fraction * len(order)))))
    held = set(order[:n_val])
    in_val = [groups[it.id] in held for it in m.items]
    return _subset(m, [not v for v in in_val]), _subset(m, in_val), n_val, len(order)


def item_groups(data: Path, m: Manifest, columns: ColumnMap | None, group_by: str) -> dict[str, str]:
    """Item id -> the --group-by value of every clip of `m`.

    For a table read with a column mapping the value comes from that column; for other sources
    `system` or `caption` (the clip's own fields) can be used."""
    if columns is not None and data.is_file():
        groups = load_table_groups(data, group_by, columns)
    elif group_by in ITEM_GROUPS:
        groups = {it.id: str(getattr(it, group_by)) for it in m.items if getattr(it, group_by)}
    else:
        raise MosError(f"{data}: --group-by {group_by}: named columns exist only in a ratings table read with --columns; "
                       f"for this data use --group-by {' or '.join(ITEM_GROUPS)}")
    missing = next((it for it in m.items if it.id not in groups), None)
    if missing is not None:
        raise MosError(f"{data}: clip {missing.id} has no {group_by} value (--group-by needs one for every clip)")
    return {it.id: groups[it.id] for it in m.items}


def _open_validation(val_data: Path, columns: ColumnMap | None, train: Manifest) -> Manifest:
    sources = open_dataset(val_data, columns)
    name = next((s for s in (*VALIDATION_SPLITS, "all") if s in sources), None)
    if name is None:
        raise MosError(f"{val_data}: --val-data holds no validation split or single list of rated clips")
    validation = sources[name]
    _require_targets(validation, name)
    if validation.target_names != train.target_names:
        raise MosError(f"{val_data}: targets {', '.join(validation.target_names)} differ from the training data's "
                       f"({', '.join(train.target_names)})")
    train_paths = {it.path.resolve() for it in train.items}
    shared = [it for it in validation.items if it.path.resolve() in train_paths]
    if shared:
        raise MosError(f"{val_data}: {len(shared)} validation clip(s) are also in the training data (e.g. {shared[0].id})")
    return validation


def resolve_splits(data: Path, columns: ColumnMap | None, val_fraction: float, seed: int,
                   group_by: str | None = None, val_data: Path | None = None) -> Splits:
    """The run's training and validation manifests and a line saying how they were chosen."""
    sources = open_dataset(data, columns)
    train_name = next((s for s in TRAIN_SPLITS if s in sources), None)
    if train_name is None:
        raise MosError(f"{data}: no training split found (looked for {', '.join(TRAIN_SPLITS)})")
    train = sources[train_name]
    _require_targets(train, train_name)
    val_name = next((s for s in VALIDATION_SPLITS if s in sources), None)
    groups = None
    if val_data is not None:
        if group_by:
            raise MosError(f"{val_data}: --val-data gives the validation clips; --group-by has nothing to split (drop one)")
        validation = _open_validation(val_data, columns, train)
        desc = f"{data} ({train_name}: {len(train)} clips); validation: {val_data} ({len(validation)} clips, --val-data)"
    elif val_name is not None:
        if group_by:
            raise MosError(f"{data}: has its own {val_name} split; --group-by applies where the split is made here "
                           f"(a single ratings file, or --folds)")
        validation = sources[val_name]
        _require_targets(validation, val_name)
        desc = f"{data} ({train_name}: {len(train)} clips, {val_name}: {len(validation)} clips, the data's own split)"
    elif group_by:
        groups = item_groups(data, train, columns, group_by)
        train, validation, held, total = grouped_split(train, groups, val_fraction, seed)
        desc = (f"{data}: {len(train)} train / {len(validation)} held-out clips, split by {group_by}: "
                f"{held} of {total} {group_by} values held out (seed {seed}); no {group_by} value on both sides")
    else:
        train, validation = random_split(train, val_fraction, seed)
        desc = (f"{data}: {len(train)} train / {len(validation)} held-out clips, a random clip-level "
                f"{val_fraction:.0%} (seed {seed}); clips that share a source (utterance, speaker, prompt) can sit on "
                f"both sides: --group-by COLUMN splits by it")
    if len(train) < 2 or len(validation) < 2:
        raise MosError(f"{data}: need at least 2 training and 2 validation clips")
    return Splits(train, validation, desc, groups)


# ---------------------------------------------------------------------------------------------
# Cross-validation
# ---------------------------------------------------------------------------------------------


@dataclass
class Folds:
    """All rated clips, the fold (0..k-1) of each, and the group each clip was folded by."""

    manifest: Manifest
    fold: list[int]
    groups: dict[str, str]  # item id -> group (the clip's own id when not grouped)
    group_by: str | None
    description: str
    seed: int  # the seed that dealt the folds

    @property
    def k(self) -> int:
        return max(self.fold) + 1

    def held_out(self, k: int) -> Manifest:
        return _subset(self.manifest, [f == k for f in self.fold])

    def training(self, k: int) -> Manifest:
        return _subset(self.manifest, [f != k for f in self.fold])


def cv_pool(data: Path, columns: ColumnMap | None) -> tuple[Manifest, str]:
    """Every rated clip of the data: a single table or list as it is; a tree's train and
    validation splits pooled."""
    sources = open_dataset(data, columns)
    names = [s for s in (*TRAIN_SPLITS, *VALIDATION_SPLITS) if s in sources]
    if not names:
        raise MosError(f"{data}: no rated split to cross-validate (looked for {', '.join(TRAIN_SPLITS + VALIDATION_SPLITS)})")
    for name in names:
        _require_targets(sources[name], name)
    first = sources[names[0]]
    items = [it for name in names for it in sources[name].items]
    if any(sources[n].target_names != first.target_names for n in names):
        raise MosError(f"{data}: the splits {', '.join(names)} have different targets; cannot pool them")
    seen: set[str] = set()
    for it in items:
        if it.id in seen:
            raise MosError(f"{data}: clip id {it.id} appears in more than one split; cannot pool them")
        seen.add(it.id)
    pooled = Manifest(items, first.targets, first.source)
    what = " + ".join(f"{n} ({len(sources[n])})" for n in names) if len(names) > 1 else f"{len(items)} clips"
    return pooled, f"{data}: {what}"


def make_folds(data: Path, columns: ColumnMap | None, k: int, seed: int, group_by: str | None) -> Folds:
    """K folds of the pooled clips; with `group_by` every value's clips share a fold. Values
    are shuffled by `seed` and dealt to the folds in turn."""
    return make_repeated_folds(data, columns, k, [seed], group_by)[0]


def _partition(folds: Folds) -> frozenset[frozenset[str]]:
    """Which groups share a fold (whatever the folds' numbers)."""
    members: dict[int, set[str]] = {}
    for it, f in zip(folds.manifest.items, folds.fold):
        members.setdefault(f, set()).add(folds.groups[it.id])
    return frozenset(frozenset(m) for m in members.values())


def make_repeated_folds(data: Path, columns: ColumnMap | None, k: int, seeds: list[int], group_by: str | None,
                        tries: int = 100) -> list[Folds]:
    """One set of K folds per seed (a repeat of the cross-validation each), all different: where
    a seed deals the same groups together as an earlier one, the next seed up is used (the one
    used is in each Folds). A one-line MosError when the data has too few ways to deal them."""
    pooled, what = cv_pool(data, columns)
    if group_by:
        groups = item_groups(data, pooled, columns, group_by)
        unit = f"{group_by} value"
    else:
        groups = {it.id: it.id for it in pooled.items}
        unit = "clip"
    n_groups = len(set(groups.values()))
    if n_groups < k:
        raise MosError(f"{data}: --folds {k} needs at least {k} {unit}s; found {n_groups}")
    how = (f"grouped by {group_by}: {n_groups} values dealt to {k} folds, no value in two folds" if group_by
           else "by clip (no --group-by: clips that share a source can sit in different folds)")
    out: list[Folds] = []
    seen: set[frozenset[frozenset[str]]] = set()
    for first in seeds:
        for seed in range(first, first + tries):
            order = shuffled_groups([groups[it.id] for it in pooled.items], seed)
            fold_of_group = {g: i % k for i, g in enumerate(order)}
            fold = [fold_of_group[groups[it.id]] for it in pooled.items]
            folds = Folds(pooled, fold, groups, group_by, f"{what}; {k} folds {how} (seed {seed})", seed)
            if _partition(folds) not in seen:
                break
        else:
            raise MosError(f"{data}: --repeats {len(seeds)}: found only {len(seen)} different ways to deal the "
                           f"{n_groups} {unit}s to {k} folds; use fewer repeats")
        seen.add(_partition(folds))
        out.append(folds)
    return out


def fold_splits(folds: Folds, k: int, val_fraction: float, seed: int) -> tuple[Splits, Manifest]:
    """For fold `k`: the training folds split again (by the same groups) into training and an
    inner validation set that early stopping and the best checkpoint are chosen on, and the
    held-out fold, which training never sees."""
    train_folds = folds.training(k)
    train, inner, held, total = grouped_split(train_folds, folds.groups, val_fraction, seed + k)
    unit = f"{folds.group_by} values" if folds.group_by else "clips"
    desc = (f"fold {k + 1}/{folds.k}: {len(train)} train / {len(inner)} inner-validation clips "
            f"({held} of {total} {unit} of the training folds), {len(folds.held_out(k))} held-out clips")
    if len(train) < 2 or len(inner) < 2:
        raise MosError(f"{folds.manifest.source}: fold {k + 1} leaves fewer than 2 training or inner-validation clips")
    return Splits(train, inner, desc, folds.groups), folds.held_out(k)
