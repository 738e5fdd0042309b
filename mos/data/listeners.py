"""Per-listener score standardisation and listener screening (numpy only, torch-free).

For each target whose ratings carry listener ids, `standardise_listeners`:
1. z-scores each listener's ratings over that listener's clips (mean and population std); a
   listener with fewer than 2 ratings, or all ratings equal, is left unscaled (z from the pooled
   mean and std of all the target's ratings, so mapping back returns the rating as given);
2. maps every z back to the scale with the pooled mean and std (clipped to the target's range), so
   a listener who rates everything 2 points high, or uses half the scale, rates like the others;
3. screens listeners: the Pearson correlation between a listener's standardised ratings and the
   mean of the OTHER listeners' standardised ratings of the same clips (clips nobody else rated
   are left out), over at least MIN_SCREEN_CLIPS clips; below the threshold the listener is
   dropped. One pass: every correlation is against all other listeners, dropped ones included;
4. sets each clip's target to the mean of its kept standardised ratings; a clip whose listeners
   were all dropped keeps its mean and ratings as they were.

DEFAULT_THRESHOLD 0.2: a listener whose ordering of the clips follows the others' this little
(0 = unrelated, negative = reversed) adds noise rather than information; an honest listener
with ordinary rating noise correlates far above it (0.9 or more in the demo set).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from mos.data.manifest import Item, Manifest

DEFAULT_THRESHOLD = 0.2
MIN_SCREEN_CLIPS = 3
_CHANGED = 1e-9  # a clip whose mean moved more than this counts as changed


@dataclass(frozen=True)
class DroppedListener:
    """A listener screened out: its correlation with the other listeners over `clips` clips."""

    target: str
    id: str
    correlation: float
    clips: int


@dataclass
class TargetListeners:
    """What standardisation and screening did to one target."""

    target: str
    listeners: int  # distinct listener ids seen
    scaled: int  # z-scored with their own mean and std (the rest: too few ratings or no spread)
    screened: int  # with a defined correlation over >= MIN_SCREEN_CLIPS clips shared with others
    dropped: list[DroppedListener]
    clips: int  # clips with listener ids
    clips_changed: int
    clips_all_dropped: int  # every listener dropped: the clip keeps its original mean
    mean_abs_change: float  # mean |cleaned - original| over `clips`
    pooled_mean: float
    pooled_std: float


@dataclass
class ListenerReport:
    """The outcome of `standardise_listeners`, one entry per target with listener ids."""

    threshold: float
    targets: list[TargetListeners] = field(default_factory=list)

    @property
    def dropped(self) -> list[DroppedListener]:
        return [d for t in self.targets for d in t.dropped]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        """One line: per target, listeners z-scored, those dropped (id, correlation), clips changed."""
        parts = []
        for t in self.targets:
            gone = ", ".join(f"{d.id} (r={d.correlation:.2f}, {d.clips} clips)" for d in t.dropped)
            text = (f"{t.target}: {t.listeners} listeners z-scored ({t.scaled} on their own mean and spread), "
                    f"{len(t.dropped)} of {t.screened} screened dropped{': ' + gone if gone else ''}; "
                    f"{t.clips_changed} of {t.clips} clips changed (mean |change| {t.mean_abs_change:.3f})")
            if t.clips_all_dropped:
                text += f", {t.clips_all_dropped} kept their mean (all their listeners dropped)"
            parts.append(text)
        return f"listener norm (threshold {self.threshold:g}): " + "; ".join(parts)


def _correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson correlation, or None where either side has no spread."""
    da, db = a - a.mean(), b - b.mean()
    denom = float(np.sqrt((da * da).sum() * (db * db).sum()))
    if denom <= 0.0:
        return None
    return float((da * db).sum() / denom)


def _standardise_target(items: list[Item], name: str, low: float, high: float,
                        threshold: float) -> tuple[dict[int, Item], TargetListeners] | None:
    """Cleaned items (index -> item) for one target and what was done; None without listener ids."""
    clip_of: list[int] = []
    who: list[str] = []
    raw: list[float] = []
    for i, it in enumerate(items):
        if name in it.listeners and name in it.targets:
            for lid, rating in zip(it.listeners[name], it.ratings[name]):
                clip_of.append(i)
                who.append(lid)
                raw.append(rating)
    if not raw:
        return None
    values = np.array(raw, dtype=np.float64)
    mu, sd = float(values.mean()), float(values.std())
    rows_of: dict[str, list[int]] = {}
    for k, lid in enumerate(who):
        rows_of.setdefault(lid, []).append(k)
    z = np.zeros(len(values))
    scaled = 0
    for rows in rows_of.values():
        own = values[rows]
        spread = float(own.std())
        if len(rows) >= 2 and spread > 0.0:
            z[rows] = (own - own.mean()) / spread
            scaled += 1
        elif sd > 0.0:
            z[rows] = (own - mu) / sd
    standard = np.clip(mu + sd * z, low, high)

    rows_of_clip: dict[int, list[int]] = {}
    for k, i in enumerate(clip_of):
        rows_of_clip.setdefault(i, []).append(k)
    dropped: list[DroppedListener] = []
    screened = 0
    for lid, rows in rows_of.items():
        mine, others = [], []
        for k in rows:
            other = [j for j in rows_of_clip[clip_of[k]] if who[j] != lid]
            if other:
                mine.append(standard[k])
                others.append(standard[other].mean())
        if len(mine) < MIN_SCREEN_CLIPS:
            continue
        r = _correlation(np.array(mine), np.array(others))
        if r is None:
            continue
        screened += 1
        if r < threshold:
            dropped.append(DroppedListener(name, lid, round(r, 6), len(mine)))
    gone = {d.id for d in dropped}

    cleaned: dict[int, Item] = {}
    changes: list[float] = []
    all_dropped = 0
    for i, rows in rows_of_clip.items():
        it = items[i]
        kept = [k for k in rows if who[k] not in gone]
        if not kept:
            all_dropped += 1
            changes.append(0.0)
            continue
        mean = float(standard[kept].mean())
        changes.append(abs(mean - it.targets[name]))
        cleaned[i] = replace(it, targets={**it.targets, name: mean},
                             ratings={**it.ratings, name: tuple(float(standard[k]) for k in kept)},
                             listeners={**it.listeners, name: tuple(who[k] for k in kept)})
    report = TargetListeners(
        target=name, listeners=len(rows_of), scaled=scaled, screened=screened,
        dropped=sorted(dropped, key=lambda d: (d.correlation, d.id)), clips=len(rows_of_clip),
        clips_changed=sum(c > _CHANGED for c in changes), clips_all_dropped=all_dropped,
        mean_abs_change=round(float(np.mean(changes)), 6), pooled_mean=round(mu, 6), pooled_std=round(sd, 6))
    return cleaned, report


def standardise_listeners(manifest: Manifest, threshold: float = DEFAULT_THRESHOLD) -> tuple[Manifest, ListenerReport]:
    """`manifest` with each listener-identified target z-scored per listener, screened and
    re-averaged (see the module docstring), and the report; clips without listener ids and
    targets without them are left as they are."""
    items = list(manifest.items)
    report = ListenerReport(threshold=threshold)
    for target in manifest.targets:
        done = _standardise_target(items, target.name, target.low, target.high, threshold)
        if done is None:
            continue
        cleaned, summary = done
        for i, it in cleaned.items():
            items[i] = it
        report.targets.append(summary)
    return replace(manifest, items=items), report
