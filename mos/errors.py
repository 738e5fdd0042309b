"""Error types whose message is shown to the user as one line (no traceback), and `one_line`,
the one way any exception becomes such a line."""

from __future__ import annotations

from pathlib import Path


class MosError(Exception):
    """A user-facing error: the CLI prints `error: <message>` and exits non-zero."""


class ManifestError(MosError):
    """A dataset or metadata file is malformed: the message names the file, line and problem."""


class AudioError(MosError):
    """An audio file cannot be decoded or holds unusable samples: the message names the file."""


class BundleError(MosError):
    """An exported bundle is missing a file, corrupted, or of an unknown schema."""


def one_line(exc: BaseException, path: Path | str | None = None, limit: int | None = None) -> str:
    """A one-line message for any exception, never a traceback.

    MosError text is kept as it is (it already names its file). Other exceptions give their
    first meaningful text (libsndfile's `error_string` when present) prefixed with the type name
    when there is no text, then `path: ` when given; `limit` cuts the text to that many characters.
    """
    text = getattr(exc, "error_string", None) or str(exc)
    text = " ".join(str(text).split()).rstrip(".")
    if isinstance(exc, MosError):
        return text
    if not text:
        text = type(exc).__name__
    if limit is not None and len(text) > limit:
        text = text[:limit] + "..."
    return f"{path}: {text}" if path is not None else text
