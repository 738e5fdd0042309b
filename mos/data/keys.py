"""How clip ids are compared: one normal form, and a join on the whole relative path first, on a path suffix (the file name) only where that is unambiguous."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mos.audio import audio_stem


def normalize_id(text: str) -> str:
    """`./a\\b//c.wav ` -> `a/b/c.wav`: forward slashes, no empty or `.` parts, no outer spaces."""
    return "/".join(p for p in text.strip().replace("\\", "/").split("/") if p not in ("", "."))


def clip_key(text: str) -> str:
    """The form ids are compared in: normalized, without the file's audio extension
    (`dir\\x.WAV` -> `dir/x`, `00012.wav` -> `00012`, `x.json` stays `x.json`)."""
    head, _, base = normalize_id(text).rpartition("/")
    stem = audio_stem(base)
    return f"{head}/{stem}" if head else stem


def key_parts(text: str) -> tuple[str, ...]:
    """The path components of `clip_key(text)`."""
    key = clip_key(text)
    return tuple(key.split("/")) if key else ()


@dataclass(frozen=True)
class Match:
    """What one id matched on the other side.

    `how`: "exact" (same key), "suffix" (one is a path suffix of the other, unambiguously),
    "none" (nothing), "ambiguous" (several ids on the other side fit), or "shared" (its one
    candidate also fits other ids on this side). `candidates`: the ids on the other side that fit.
    """

    index: int | None
    how: str
    candidates: tuple[int, ...] = ()

    @property
    def found(self) -> bool:
        return self.index is not None


class _PathIndex:
    """Ids split into path components by `split`, indexed whole and by every proper suffix."""

    def __init__(self, ids: Sequence[str], split: Callable[[str], tuple[str, ...]]) -> None:
        self.split = split
        self.whole: dict[tuple[str, ...], list[int]] = {}
        self.suffixes: dict[tuple[str, ...], list[int]] = {}
        for i, text in enumerate(ids):
            parts = split(text)
            self.whole.setdefault(parts, []).append(i)
            for start in range(1, len(parts)):
                self.suffixes.setdefault(parts[start:], []).append(i)

    def same(self, text: str) -> list[int]:
        return list(self.whole.get(self.split(text), ()))

    def suffix(self, text: str) -> list[int]:
        """Ids that end with `text`'s path, or whose path `text` ends with, on whole components."""
        parts = self.split(text)
        found = set(self.suffixes.get(parts, ()))
        for start in range(1, len(parts)):
            found.update(self.whole.get(parts[start:], ()))
        return sorted(found)


def _name_parts(text: str) -> tuple[str, ...]:
    norm = normalize_id(text)
    return tuple(norm.split("/")) if norm else ()


class KeyIndex:
    """The ids of one side, indexed for matching the other side's ids against them: by path with
    its extension, then by `clip_key` (without the audio extension)."""

    def __init__(self, ids: Sequence[str]) -> None:
        self.ids = list(ids)
        self._levels = (_PathIndex(self.ids, _name_parts), _PathIndex(self.ids, key_parts))

    def candidates(self, text: str) -> tuple[str, list[int]]:
        """("exact", ids naming the same file) or ("suffix", ids that end with `text`'s path or
        whose path `text` ends with): the most specific comparison that finds anything."""
        for level in self._levels:
            same = level.same(text)
            if same:
                return "exact", same
        for level in self._levels:
            found = level.suffix(text)
            if found:
                return "suffix", found
        return "suffix", []


def match_ids(ids: Sequence[str], index: KeyIndex) -> list[Match]:
    """For each of `ids`, the id of `index` it names.

    The same key wins (`00012.wav` ~ `00012`). Otherwise one path may end with the other
    (`stim_01/ref.wav` ~ `audio/stim_01/ref.wav`, `x.wav` ~ `wav/x.wav`), accepted only when
    exactly one id of `index` fits and no other of `ids` claims that same id: two inputs
    `a/001.wav` and `b/001.wav` never both take a key `001.wav`.
    """
    found = [index.candidates(text) for text in ids]
    claims: Counter[int] = Counter(c[0] for _, c in found if len(c) == 1)
    out: list[Match] = []
    for how, cands in found:
        if not cands:
            out.append(Match(None, "none"))
        elif len(cands) > 1:
            out.append(Match(None, "ambiguous", tuple(cands)))
        elif how == "exact" or claims[cands[0]] == 1:
            out.append(Match(cands[0], how, (cands[0],)))
        else:
            out.append(Match(None, "shared", (cands[0],)))
    return out
