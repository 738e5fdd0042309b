"""Caption tables (XACLE CSV, generic CSV, MusicEval prompt_info.txt) looked up by clip id."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mos.audio import audio_stem
from mos.data.table import read_csv_rows, read_text
from mos.errors import ManifestError

_ID_COLUMNS = ("wav_file_name", "id", "path", "file", "filename")
_TEXT_COLUMNS = ("text", "caption", "prompt", "description")
_TXT_HEADER_IDS = {"id", "prompt_id", "wav", "wav_file_name", "name", "file"}
_TXT_HEADER_TEXTS = {"text", "prompt", "caption", "description"}


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

    def _candidates(self, item_id: str) -> list[str]:
        base = item_id.replace("\\", "/").rsplit("/", 1)[-1]
        stem = audio_stem(base)
        keys = [item_id, base, stem, stem + ".wav"]
        if self.by_prompt and "_" in stem:
            keys.append(stem.rsplit("_", 1)[1])
        return keys

    def resolve(self, item_id: str) -> str | None:
        """The key `item_id` matches (id, basename, basename with/without .wav, prompt id)."""
        for key in self._candidates(item_id):
            if key in self.texts or key in self.duplicates:
                return key
        return None

    def lookup(self, item_id: str) -> str | None:
        """Caption text for a clip, or None when absent or ambiguous (see `is_duplicate`)."""
        key = self.resolve(item_id)
        if key is None or key in self.duplicates:
            return None
        return self.texts[key]

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
