"""Caption tables (XACLE CSV, generic CSV, MusicEval prompt_info.txt) looked up by clip id."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mos.audio import audio_stem
from mos.data.keys import KeyIndex, match_ids
from mos.data.table import read_csv_rows, read_text
from mos.errors import ManifestError

_ID_COLUMNS = ("wav_file_name", "id", "path", "file", "filename")
_TEXT_COLUMNS = ("text", "caption", "prompt", "description")
_TXT_HEADER_IDS = {"id", "prompt_id", "wav", "wav_file_name", "name", "file"}
_TXT_HEADER_TEXTS = {"text", "prompt", "caption", "description"}


@dataclass(frozen=True)
class CaptionLookup:
    """The caption found for one clip id: `text` and the `key` it came from, or `error` (ambiguous)."""

    text: str | None = None
    key: str | None = None
    error: str | None = None


@dataclass
class Captions:
    """Caption text by id; ids seen twice with different text are in `duplicates` (no text).

    `by_prompt` marks MusicEval prompt files, where `..._S002_P044.wav` also finds key `P044`.
    `lines` holds the line each id was read from (for duplicates: the conflicting line).
    """

    texts: dict[str, str]
    duplicates: set[str]
    source: str
    by_prompt: bool = False
    lines: dict[str, int] = field(default_factory=dict)
    _index: tuple[list[str], KeyIndex] | None = field(default=None, repr=False, compare=False)

    def _keys(self) -> tuple[list[str], KeyIndex]:
        if self._index is None or len(self._index[0]) != len(self.texts) + len(self.duplicates):
            keys = list(self.texts) + sorted(self.duplicates)
            self._index = (keys, KeyIndex(keys))
        return self._index

    def _found(self, key: str) -> CaptionLookup:
        if key in self.duplicates:
            return CaptionLookup(key=key, error=(
                f"ambiguous caption: '{key}' has two different texts in {self.source} (line {self.lines.get(key, 0)})"
            ))
        return CaptionLookup(text=self.texts[key], key=key)

    def _prompt(self, item_id: str) -> CaptionLookup:
        """MusicEval: `..._S002_P044.wav` -> the caption of prompt id `P044`, shared by design."""
        stem = audio_stem(item_id)
        if self.by_prompt and "_" in stem:
            prompt = stem.rsplit("_", 1)[1]
            if prompt in self.texts or prompt in self.duplicates:
                return self._found(prompt)
        return CaptionLookup()

    def match(self, ids: Sequence[str]) -> list[CaptionLookup]:
        """The caption of each of `ids` (clip ids, e.g. paths relative to the folder scored).

        A key with the same relative path wins (`.wav` or not); else a key that is a path suffix
        of the id, or the id of the key (`001.wav` ~ `a/001.wav`), when it is the only such key
        and no other of `ids` shares it; MusicEval prompt files also by prompt id (`P044`).
        Clips found nowhere get an empty lookup; clips whose key is ambiguous get an `error`.
        """
        keys, index = self._keys()
        matches = match_ids(ids, index)
        sharing: dict[int, list[str]] = {}
        for item_id, m in zip(ids, matches):
            if len(m.candidates) == 1:
                sharing.setdefault(m.candidates[0], []).append(item_id)
        out: list[CaptionLookup] = []
        for item_id, m in zip(ids, matches):
            if m.index is not None:
                out.append(self._found(keys[m.index]))
            elif m.how == "none":
                out.append(self._prompt(item_id))
            elif m.how == "shared":
                key = keys[m.candidates[0]]
                others = sharing.get(m.candidates[0], [item_id])
                names = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
                out.append(CaptionLookup(key=key, error=(
                    f"ambiguous caption: key '{key}' in {self.source} fits {len(others)} inputs ({names}); "
                    "key the captions by the path relative to the folder scored"
                )))
            else:
                shown = ", ".join(f"'{keys[i]}'" for i in m.candidates[:3])
                out.append(CaptionLookup(error=(
                    f"ambiguous caption: '{item_id}' fits {len(m.candidates)} keys in {self.source} ({shown})"
                )))
        return out

    def resolve(self, item_id: str) -> str | None:
        """The key `item_id` matches (same path, a unique path suffix, or the prompt id), or None."""
        return self.match([item_id])[0].key

    def lookup(self, item_id: str) -> str | None:
        """Caption text for a clip, or None when absent or ambiguous (see `is_duplicate`)."""
        return self.match([item_id])[0].text

    def is_duplicate(self, item_id: str) -> bool:
        """True when the clip's caption key appears more than once with different texts."""
        key = self.resolve(item_id)
        return key is not None and key in self.duplicates

    def __len__(self) -> int:
        return len(self.texts)


def _add(captions: Captions, key: str, text: str, line: int) -> None:
    if key in captions.duplicates:
        return
    if key in captions.texts:
        if captions.texts[key] != text:
            del captions.texts[key]
            captions.duplicates.add(key)
            captions.lines[key] = line
        return
    captions.texts[key] = text
    captions.lines[key] = line


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        text = text[1:-1].replace('""', '"')
    return text


def load_prompt_file(path: Path) -> Captions:
    """A MusicEval-style tab-separated `<id><TAB><text>` file; an `id<TAB>text` header is skipped."""
    path = Path(path)
    captions = Captions(texts={}, duplicates=set(), source=str(path), by_prompt=True)
    first = True
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        key, tab, text = line.partition("\t")
        if not tab:
            raise ManifestError(f"{path}:{number}: expected '<id><TAB><text>', found no tab")
        key, text = key.strip(), _unquote(text)
        if first:
            first = False
            if key.lower() in _TXT_HEADER_IDS and text.lower() in _TXT_HEADER_TEXTS:
                continue
        if not key:
            raise ManifestError(f"{path}:{number}: empty id before the tab")
        if text:
            _add(captions, key, text, number)
    return captions


def _pick(header: list[str], given: str | None, defaults: tuple[str, ...], path: Path, what: str) -> str:
    if given is not None:
        if given not in header:
            raise ManifestError(f"{path}:1: missing column '{given}' (header: {', '.join(header)})")
        return given
    for name in defaults:
        if name in header:
            return name
    raise ManifestError(
        f"{path}:1: missing column '{defaults[0]}' for the {what} (header: {', '.join(header)}); "
        f"name the column explicitly"
    )


def load_captions(path: Path, id_column: str | None = None, text_column: str | None = None) -> Captions:
    """Read captions from a CSV (`wav_file_name,text` by default) or a tab-separated .txt/.tsv."""
    path = Path(path)
    if path.suffix.lower() in (".txt", ".tsv"):
        return load_prompt_file(path)
    table = read_csv_rows(path)
    id_col = _pick(table.header, id_column, _ID_COLUMNS, path, "clip id")
    text_col = _pick(table.header, text_column, _TEXT_COLUMNS, path, "caption text")
    captions = Captions(texts={}, duplicates=set(), source=str(path))
    for line, row in table.rows:
        key = row[id_col].strip()
        if not key:
            raise ManifestError(f"{path}:{line}: empty {id_col}")
        text = row[text_col].strip()
        if text:
            _add(captions, key, text, line)
    return captions
