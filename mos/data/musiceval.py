"""MusicEval (AudioMOS 2025 track 1) reader: sets/*_mos_list.txt + prompt_info.txt -> Manifest."""

from __future__ import annotations

from pathlib import Path

from mos.audio import audio_stem, is_audio_name
from mos.data.captions import Captions, load_prompt_file
from mos.data.manifest import Item, Manifest, Target
from mos.data.table import check_range, parse_number, read_text
from mos.errors import ManifestError
from mos.data.tree_search import find_trees

MUSICEVAL_TARGETS = (Target("overall", 1.0, 5.0), Target("textual", 1.0, 5.0))
_ALIASES = {"validation": "dev", "val": "dev", "valid": "dev"}


def list_candidates(root: Path, split: str) -> list[Path]:
    """The list files that may hold `split`: sets/{split}_mos_list.txt, then sets/{split}_list.txt."""
    sets = Path(root) / "sets"
    return [sets / f"{split}_mos_list.txt", sets / f"{split}_list.txt"]


def is_musiceval_tree(path: Path) -> bool:
    """True when `path` holds `sets/` with at least one `*_list.txt`."""
    sets = Path(path) / "sets"
    return sets.is_dir() and any(sets.glob("*_list.txt"))


def find_musiceval_roots(root: Path) -> list[Path]:
    """MusicEval trees at `root` or up to two levels below it (root first, then sorted)."""
    return find_trees(root, is_musiceval_tree, ("wav", "sets"))


def split_clip_name(name: str) -> tuple[str | None, str | None]:
    """(system, prompt) of `audiomos2025-track1-S002_P044.wav` -> ("S002", "P044")."""
    stem = audio_stem(name)
    if "_" not in stem:
        return None, None
    head, prompt = stem.rsplit("_", 1)
    system = head.rsplit("-", 1)[-1] if head else None
    return (system or None), (prompt or None)



def _clip_id(name: str) -> str:
    """The wav name as the challenge writes it: `.wav` is added when the list omits it."""
    return name if is_audio_name(name) else name + ".wav"


def prompt_captions(tree: Path) -> tuple[Captions | None, Captions | None]:
    """(prompt_info.txt, demo_prompt_info.txt) of a tree, each None when absent."""
    out: list[Captions | None] = []
    for name in ("prompt_info.txt", "demo_prompt_info.txt"):
        file = tree / name
        if not file.is_file():
            out.append(None)
            continue
        captions = load_prompt_file(file)
        if captions.duplicates:
            key = sorted(captions.duplicates)[0]
            raise ManifestError(
                f"{file}:{captions.lines[key]}: id '{key}' appears again with a different text"
            )
        out.append(captions)
    return out[0], out[1]


def canonical_split(split: str) -> str:
    """`validation`/`val`/`valid` -> `dev`; other names unchanged."""
    return _ALIASES.get(split, split)


def has_split(trees: list[Path], split: str) -> bool:
    """True when one of the trees holds a list file for `split`."""
    return any(c.is_file() for t in trees for c in list_candidates(t, canonical_split(split)))


def load_musiceval(root: Path, split: str, check_audio: bool = True, captions: bool = True) -> Manifest:
    """Load one MusicEval split ("train", "dev", "test") from the tree at or below `root`
    (`captions=False`: the prompt files are not read)."""
    root = Path(root)
    split = canonical_split(split)
    trees = find_musiceval_roots(root)
    if not trees:
        raise ManifestError(f"{root}: no MusicEval dataset here (expected sets/{split}_mos_list.txt)")
    for tree in trees:
        for candidate in list_candidates(tree, split):
            if candidate.is_file():
                prompts, demo = prompt_captions(tree) if captions else (None, None)
                return load_musiceval_list(candidate, tree / "wav", prompts, demo, check_audio=check_audio)
    raise ManifestError(f"{list_candidates(trees[0], split)[0]}: file not found")


def list_tree(list_file: Path) -> Path:
    """The tree a list file belongs to: `<tree>/sets/dev_mos_list.txt` -> `<tree>`."""
    return Path(list_file).parent.parent


def find_system_mos(tree: Path) -> Path | None:
    """The tree's system-level ratings: `system_mos/system_mos_phase<N>.csv`, the highest phase
    present (the AudioMOS 2025 track-1 baseline's predict.py reads `system_mos_phase1.csv`)."""
    found: list[tuple[int, Path]] = []
    folder = Path(tree) / "system_mos"
    if folder.is_dir():
        for file in folder.glob("system_mos_phase*.csv"):
            phase = file.stem[len("system_mos_phase"):]
            if phase.isdigit() and file.is_file():
                found.append((int(phase), file))
    return max(found)[1] if found else None


def load_system_mos(path: Path) -> dict[str, dict[str, float]]:
    """System -> {"overall", "textual"} from `<system>,<overall>,<textual>` lines (`S002,3.4,3.1`),
    as the baseline's predict.py reads them; a first line that is not numbers is a header."""
    path = Path(path)
    out: dict[str, dict[str, float]] = {}
    first_line: dict[str, int] = {}
    for number, raw in enumerate(read_text(path).splitlines(), start=1):
        if not raw.strip():
            continue
        where = f"{path}:{number}"
        fields = [f.strip() for f in raw.split(",")]
        if len(fields) != 3:
            raise ManifestError(f"{where}: expected '<system>,<overall>,<textual>', found {len(fields)} fields")
        if not first_line and not out and not _numbers(fields[1:]):
            first_line[""] = number  # a header line
            continue
        system = fields[0]
        if not system:
            raise ManifestError(f"{where}: empty system id")
        if system in out:
            raise ManifestError(f"{where}: duplicate system '{system}' (first on line {first_line[system]})")
        first_line[system] = number
        values: dict[str, float] = {}
        for target, text in zip(MUSICEVAL_TARGETS, fields[1:]):
            value = parse_number(text, where, target.name)
            check_range(value, target.low, target.high, where, target.name)
            values[target.name] = value
        out[system] = values
    if not out:
        raise ManifestError(f"{path}: no system ratings in this file")
    return out


def _numbers(fields: list[str]) -> bool:
    try:
        [float(f) for f in fields]
    except ValueError:
        return False
    return True


def load_musiceval_list(
    list_file: Path,
    wav_dir: Path | None = None,
    prompts: Captions | None = None,
    demo_prompts: Captions | None = None,
    check_audio: bool = True,
) -> Manifest:
    """Read a list of `<wav>,<overall>,<textual>` lines (or `<wav>` alone for unrated clips).

    `wav_dir` defaults to `../wav` next to `sets/`. Captions come from `demo_prompts` (keyed by
    wav name) first, then `prompts` (keyed by prompt id); a clip with neither has caption None.
    """
    list_file = Path(list_file)
    if wav_dir is None:
        wav_dir = list_file.parent.parent / "wav"
    items: list[Item] = []
    first_line: dict[str, int] = {}
    width: tuple[int, int] | None = None  # (fields, line) of the first data line
    for number, raw in enumerate(read_text(list_file).splitlines(), start=1):
        if not raw.strip():
            continue
        where = f"{list_file}:{number}"
        fields = [f.strip() for f in raw.split(",")]
        if len(fields) not in (1, 3):
            raise ManifestError(
                f"{where}: expected '<wav>,<overall>,<textual>' or '<wav>', found {len(fields)} fields"
            )
        if width is None:
            width = (len(fields), number)
        elif len(fields) != width[0]:
            raise ManifestError(f"{where}: {len(fields)} field(s) but line {width[1]} has {width[0]}")
        name = fields[0]
        if not name:
            raise ManifestError(f"{where}: empty wav name")
        item_id = _clip_id(name)
        if item_id in first_line:
            raise ManifestError(f"{where}: duplicate wav '{item_id}' (first on line {first_line[item_id]})")
        first_line[item_id] = number
        targets: dict[str, float] = {}
        if len(fields) == 3:
            for target, text in zip(MUSICEVAL_TARGETS, fields[1:]):
                value = parse_number(text, where, target.name)
                check_range(value, target.low, target.high, where, target.name)
                targets[target.name] = value
        path = Path(wav_dir) / item_id
        if check_audio and not path.is_file():
            raise ManifestError(f"{where}: audio file {path} not found")
        caption = None
        if demo_prompts is not None:
            caption = demo_prompts.lookup(item_id)
        if caption is None and prompts is not None:
            caption = prompts.lookup(item_id)
        system, _ = split_clip_name(item_id)
        items.append(Item(id=item_id, path=path, caption=caption, targets=targets, system=system))
    if not items:
        raise ManifestError(f"{list_file}: empty list file")
    sources = [str(list_file)] + [c.source for c in (prompts, demo_prompts) if c is not None]
    targets_list = list(MUSICEVAL_TARGETS) if width and width[0] == 3 else []
    return Manifest(items=items, targets=targets_list, source=", ".join(sources))
