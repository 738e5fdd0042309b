"""Checkpoints torch's weights-only reader refuses for their pickle protocol, made readable by it.

`torch.load(weights_only=True)` reads pickle protocol 2 only: a checkpoint saved with protocol 4
(the FRAME, MEMOIZE, STACK_GLOBAL, SHORT_BINUNICODE and SHORT_BINBYTES opcodes), as LAION-CLAP's
released checkpoints are, fails with "Unsupported operand 149". `load_weights_only` rewrites such
a checkpoint's `data.pkl` into the protocol-2 opcodes that mean the same (a global named in the
stream instead of from the stack, strings and bytes as protocol 2 writes them, memo entries by
index) into a temporary copy of the archive, and reads that with `torch.load(weights_only=True)`:
the globals it may build are still only the ones torch allows plus `allowed`. Nothing is unpickled
here; the rewrite only moves bytes.

Checkpoints are untrusted input. A pickle that names any other global (`os.system`,
`builtins.eval`, ...) is refused by torch's reader before anything is called, rewritten or not,
and comes back as a one-line MosError naming the file and the global. The rewrite refuses a
global whose module or name is not one printable line (a newline would let the rewritten stream
say something the parsed one did not), and caps its output: protocol 4 memoises a string once
and fetches it by a 2-byte GET, which protocol 2 (as written here) repeats in full, so a string
fetched again and again would expand without bound. The output may be at most MAX_GROWTH times
the input or MIN_CAP bytes, whichever is larger, far above what a real checkpoint grows
(docs/onnx-notes.md).
"""

from __future__ import annotations

import pickle
import pickletools
import re
import shutil
import struct
import tempfile
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from mos.errors import MosError, one_line

_STRINGS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"}
_BYTES = {"SHORT_BINBYTES", "BINBYTES", "BINBYTES8"}
_GETS = {"BINGET", "LONG_BINGET", "GET"}
_PUTS = {"BINPUT", "LONG_BINPUT", "PUT"}
# The rewritten stream may be at most MAX_GROWTH x the original, or MIN_CAP bytes if that is more:
# real checkpoints grow a little (each tensor's memoised 'storage' and device strings written out
# again; docs/onnx-notes.md); far more means one string fetched from the memo over and over (a
# pickle bomb).
MAX_GROWTH = 16
MIN_CAP = 64 << 20


def _unicode(text: str) -> bytes:
    data = text.encode("utf-8", "surrogatepass")
    return pickle.BINUNICODE + struct.pack("<I", len(data)) + data


def _put(index: int) -> bytes:
    return pickle.BINPUT + bytes([index]) if index < 256 else pickle.LONG_BINPUT + struct.pack("<I", index)


def _get(index: int) -> bytes:
    return pickle.BINGET + bytes([index]) if index < 256 else pickle.LONG_BINGET + struct.pack("<I", index)


def to_protocol2(data: bytes, where: str) -> bytes:
    """A protocol-4 pickle stream as the protocol-2 stream with the same meaning (a protocol-2
    stream comes back unchanged); a one-line MosError for opcodes that have no such rewrite, for
    a global not named by one printable line, and for output past the cap (see MAX_GROWTH)."""
    try:
        ops = list(pickletools.genops(data))
    except Exception as exc:  # noqa: BLE001 - a truncated or malformed stream
        raise MosError(f"{where}: not a readable pickle stream ({one_line(exc, limit=120)})") from None
    if not ops or ops[0][0].name != "PROTO" or ops[0][1] <= 2:
        return data
    cap = max(MAX_GROWTH * len(data), MIN_CAP)
    size = 0
    out: list[tuple[bytes, str | None]] = []  # (bytes, the string it pushes, if it is a string push)
    strings: dict[int, str] = {}  # memo index -> string; strings are pushed as literals, never memoised
    memo: set[int] = set()  # the memo's indexes: MEMOIZE stores at len(memo), as the unpickler does
    ends = [pos for _, _, pos in ops[1:]] + [len(data)]
    for (op, arg, pos), end in zip(ops, ends):
        name = op.name
        if name == "PROTO":
            out.append((pickle.PROTO + bytes([2]), None))
        elif name == "FRAME":
            continue
        elif name in _STRINGS:
            out.append((_unicode(arg), arg))
        elif name in _BYTES:
            # Protocol 2 writes bytes as _codecs.encode(latin-1 text, "latin1").
            out.append((pickle.GLOBAL + b"_codecs\nencode\n" + _unicode(arg.decode("latin1")) + _unicode("latin1")
                        + pickle.TUPLE2 + pickle.REDUCE, None))
        elif name == "MEMOIZE" or name in _PUTS:
            index = len(memo) if name == "MEMOIZE" else int(arg)
            memo.add(index)
            strings.pop(index, None)
            if out and out[-1][1] is not None:
                strings[index] = out[-1][1]
                continue  # nothing written: a GET of it writes the string again
            out.append((_put(index), None))
        elif name in _GETS:
            index = int(arg)
            out.append((_unicode(strings[index]), strings[index]) if index in strings else (_get(index), None))
        elif name == "STACK_GLOBAL":
            if len(out) < 2 or out[-1][1] is None or out[-2][1] is None:
                raise MosError(f"{where}: a pickle global whose module and name are not plain strings")
            module, qualname = out[-2][1], out[-1][1]
            if not all(part and part.isprintable() for part in (module, qualname)):
                raise MosError(f"{where}: a pickle global named {module!r} {qualname!r} (not one printable line each): "
                               "refused")
            size -= len(out[-2][0]) + len(out[-1][0])
            del out[-2:]
            out.append((pickle.GLOBAL + f"{module}\n{qualname}\n".encode("utf-8"), None))
        elif name in ("NEWOBJ_EX", "BYTEARRAY8", "NEXT_BUFFER", "READONLY_BUFFER", "ADDITEMS", "EMPTY_SET",
                      "FROZENSET"):
            raise MosError(f"{where}: pickle opcode {name} (protocol {ops[0][1]}) has no protocol-2 form")
        else:
            out.append((data[pos:end], None))
        size += len(out[-1][0])
        if size > cap:
            raise MosError(f"{where}: its pickle would grow past {cap:,} bytes rewritten to protocol 2 ({len(data):,} "
                           f"bytes in; the cap is {MAX_GROWTH}x that, at least {MIN_CAP >> 20} MiB): refused (a string "
                           "fetched from the pickle's memo again and again?)")
    return b"".join(chunk for chunk, _ in out)


_REFUSED_GLOBAL = re.compile(r"GLOBAL (\S+?)\.? (?:was not an allowed global|whose module)")


def _torch_refusal(path: Path, exc: BaseException) -> MosError:
    """torch's weights-only refusal (a long text with advice to load unsafely) as one line."""
    message = str(exc)
    found = _REFUSED_GLOBAL.search(message)
    if found:
        name = found.group(1) if "." in found.group(1) else f"builtins.{found.group(1)}"  # torch drops `builtins.`
        return MosError(f"{path}: refused: its pickle names {name}, a global a weights-only load does not allow "
                        "(nothing was run; load only checkpoints of tensors from sources you trust)")
    # The cause follows torch's advice: after "WeightsUnpickler error:", else after a blank line.
    head, _, cause = message.rpartition("WeightsUnpickler error:")
    text = cause if head else message.split("\n\n", 1)[-1]
    return MosError(f"{path}: not a checkpoint torch can read safely (weights_only): "
                    f"{one_line(RuntimeError(text), limit=160)}")


def numpy_scalar_globals() -> list[Any]:
    """What a checkpoint holding numpy scalars (a score, an integer count) needs beyond torch's
    own allow-list: the scalar rebuilder, under numpy 1's name too, and the dtypes of the numbers."""
    import numpy as np

    try:
        from numpy._core.multiarray import scalar  # numpy >= 2
    except ImportError:
        from numpy.core.multiarray import scalar
    dtypes = [type(np.dtype(t)) for t in (np.float64, np.float32, np.int64, np.int32, np.bool_)]
    return [np.dtype, *dtypes, scalar, (scalar, "numpy.core.multiarray.scalar")]


def _pickle_name(archive: zipfile.ZipFile) -> str | None:
    return next((n for n in archive.namelist() if n == "data.pkl" or n.endswith("/data.pkl")), None)


def load_weights_only(path: Path, allowed: Sequence[Any] = (), scratch: Path | None = None) -> Any:
    """`torch.load(path, weights_only=True)` with the globals in `allowed` too; a zip checkpoint
    pickled with protocol 4 is rewritten to protocol 2 first, into a temporary copy in `scratch`
    (default: the system's temporary folder; it needs the checkpoint's size for a moment)."""
    with torch.serialization.safe_globals(list(allowed)):
        try:
            with warnings.catch_warnings():  # torch warns of the protocol before it fails on it
                warnings.filterwarnings("ignore", message="Detected pickle protocol")
                return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            if "Unsupported operand" not in str(exc) or not zipfile.is_zipfile(path):
                raise _torch_refusal(path, exc) from None
        with zipfile.ZipFile(path) as archive:
            name = _pickle_name(archive)
            if name is None:
                raise MosError(f"{path}: a zip file without data.pkl is not a torch checkpoint")
            stream = to_protocol2(archive.read(name), str(path))
            if scratch is not None:
                scratch.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix="mos-pickle-", dir=scratch) as tmp:
                copy = Path(tmp) / "checkpoint.pt"
                with zipfile.ZipFile(copy, "w", zipfile.ZIP_STORED) as out:
                    for info in archive.infolist():
                        if info.filename == name:
                            out.writestr(info.filename, stream)
                        else:
                            with archive.open(info) as src, out.open(info.filename, "w", force_zip64=True) as dst:
                                shutil.copyfileobj(src, dst, 1 << 20)
                try:
                    return torch.load(copy, map_location="cpu", weights_only=True)
                except pickle.UnpicklingError as exc:
                    raise _torch_refusal(path, exc) from None
