"""Error types whose message is shown to the user as one line (no traceback)."""


class MosError(Exception):
    """A user-facing error: the CLI prints `error: <message>` and exits non-zero."""


class ManifestError(MosError):
    """A dataset or metadata file is malformed: the message names the file, line and problem."""


class AudioError(MosError):
    """An audio file cannot be decoded or holds unusable samples: the message names the file."""


class BundleError(MosError):
    """An exported bundle is missing a file, corrupted, or of an unknown schema."""
