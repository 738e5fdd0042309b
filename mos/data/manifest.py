"""The one manifest type every loader produces: clips with captions, targets and systems."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Item:
    """One rated (or unrated) clip.

    `id` is the name the challenges join on (XACLE: `wav_file_name`, e.g. `00012.wav`;
    MusicEval: the wav name, e.g. `audiomos2025-track1-S002_P044.wav`; generic: the path column).
    `targets` maps target name -> mean rating (empty for unrated clips).
    `ratings` maps target name -> per-listener ratings, when the source has them.
    `listeners` maps target name -> the listener id of each of those ratings (same order and
    length), when the source names its listeners.
    """

    id: str
    path: Path
    caption: str | None = None
    targets: dict[str, float] = field(default_factory=dict)
    system: str | None = None
    ratings: dict[str, tuple[float, ...]] = field(default_factory=dict)
    listeners: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    """A named prediction target and the range of its scale (e.g. score 0-10, overall 1-5)."""

    name: str
    low: float
    high: float


@dataclass
class Manifest:
    """A list of items plus what their targets mean; `source` names the file(s) read.

    `system_targets` maps system -> target -> rating when the source rates whole systems apart
    from the clips (MusicEval's `system_mos/system_mos_phase1.csv`), read from `system_source`.
    """

    items: list[Item]
    targets: list[Target]
    source: str
    system_targets: dict[str, dict[str, float]] = field(default_factory=dict)
    system_source: str | None = None

    def __len__(self) -> int:
        return len(self.items)

    @property
    def target_names(self) -> list[str]:
        return [t.name for t in self.targets]

    def has_captions(self) -> bool:
        return any(it.caption for it in self.items)

    def has_listeners(self) -> bool:
        """True when some clip's ratings carry listener ids."""
        return any(it.listeners for it in self.items)
