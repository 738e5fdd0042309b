"""Untrusted checkpoints through mos.model.encoders.pickle_compat: protocol-4 pickles built by hand
(pickletools opcodes) that would run `os.system` or `builtins.eval` are still refused after the
protocol-2 rewrite, as one line naming the file, and nothing runs (the marker file their payload
would create never appears; the same payload does create it under plain `pickle.loads`, so it is
live). The rewrite keeps the memo's meaning, refuses a global whose name spans lines, and stops
a memoised string fetched again and again instead of expanding without bound."""

from __future__ import annotations

import pickle
import shlex
import struct
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from mos.errors import MosError  # noqa: E402
from mos.model.encoders.pickle_compat import (  # noqa: E402
    MAX_GROWTH,
    MIN_CAP,
    load_weights_only,
    numpy_scalar_globals,
    to_protocol2,
)


def uni(text: str) -> bytes:
    data = text.encode("utf-8")
    return pickle.BINUNICODE + struct.pack("<I", len(data)) + data


def protocol4(body: bytes) -> bytes:
    """PROTO 4, one FRAME holding `body`, STOP."""
    body += pickle.STOP
    return pickle.PROTO + b"\x04" + pickle.FRAME + struct.pack("<Q", len(body)) + body


def as_checkpoint(stream: bytes, path: Path) -> Path:
    """A real torch zip checkpoint (torch.save, protocol 4) whose data.pkl is `stream`."""
    torch.save({"w": torch.zeros(2)}, path, pickle_protocol=4)
    with zipfile.ZipFile(path) as archive:
        entries = [(info, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as out:
        for info, data in entries:
            out.writestr(info, stream if info.filename.endswith("/data.pkl") else data)
    return path


def payloads(marker: Path) -> dict[str, tuple[bytes, str]]:
    """Pickle streams that create `marker` when unpickled, and the global each calls."""
    shell = pickle.TUPLE1 + pickle.REDUCE
    touch = uni(f"touch {shlex.quote(str(marker))}") + pickle.MEMOIZE + shell
    code = uni(f"open({str(marker)!r}, 'w').close()") + shell
    return {
        "os.system by STACK_GLOBAL": (protocol4(uni("os") + pickle.MEMOIZE + uni("system") + pickle.MEMOIZE
                                                + pickle.STACK_GLOBAL + pickle.MEMOIZE + touch), "os.system"),
        "builtins.eval by GLOBAL": (protocol4(pickle.GLOBAL + b"builtins\neval\n" + code), "builtins.eval"),
        # The global's name fetched from the memo: the rewrite writes the memoised strings out again.
        "builtins.eval, its names from the memo": (protocol4(
            pickle.EMPTY_LIST + uni("builtins") + pickle.BINPUT + b"\x00" + pickle.APPEND + uni("eval") + pickle.BINPUT
            + b"\x01" + pickle.APPEND + pickle.BINGET + b"\x00" + pickle.BINGET + b"\x01" + pickle.STACK_GLOBAL + code
            + pickle.TUPLE2), "builtins.eval"),
        "os.system inside a checkpoint dict": (protocol4(
            pickle.EMPTY_DICT + pickle.MEMOIZE + uni("state_dict") + pickle.EMPTY_DICT + pickle.SETITEM + uni("epoch")
            + uni("os") + uni("system") + pickle.STACK_GLOBAL + touch + pickle.SETITEM), "os.system"),
        # Protocol 2 goes to torch's reader as it is, without a rewrite.
        "os.system at protocol 2": (pickle.PROTO + b"\x02" + pickle.GLOBAL + b"os\nsystem\n" + touch + pickle.STOP,
                                    "os.system"),
    }


def unpickled_in_a_child(stream: bytes, where: Path) -> None:
    """Plain `pickle.loads` (which runs anything) in a child process."""
    file = where / "stream.pkl"
    file.write_bytes(stream)
    code = "import pickle, sys; pickle.loads(open(sys.argv[1], 'rb').read())"
    subprocess.run([sys.executable, "-c", code, str(file)], check=True, cwd=where, capture_output=True)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol 4")  # torch's, before it refuses protocol 4
@pytest.mark.parametrize("name", list(payloads(Path("m"))))
def test_a_checkpoint_that_would_run_code_is_refused_after_the_rewrite_and_nothing_runs(tmp_path: Path,
                                                                                       name: str) -> None:
    marker = tmp_path / "ran"
    stream, called = payloads(marker)[name]
    # The payload is live, and the rewrite keeps it so: plain pickle runs it from the rewritten stream.
    unpickled_in_a_child(to_protocol2(stream, "x"), tmp_path)
    assert marker.is_file()
    marker.unlink()

    path = as_checkpoint(stream, tmp_path / "evil.pt")
    if stream[1] == 4:  # torch alone reads no protocol 4: this checkpoint goes through the rewrite
        with pytest.raises(pickle.UnpicklingError, match="Unsupported operand"):
            torch.load(path, weights_only=True)
    with pytest.raises(MosError) as err:
        load_weights_only(path, numpy_scalar_globals(), scratch=tmp_path / "scratch")
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path}: refused: ") and called in message, message
    assert not marker.exists()


def test_a_global_whose_name_spans_lines_is_refused(tmp_path: Path) -> None:
    """GLOBAL reads a module line and a name line: a name holding a newline would make the
    rewritten stream say more than the stream that was parsed."""
    stream = protocol4(uni("collections") + uni("OrderedDict\nbuiltins") + pickle.STACK_GLOBAL
                       + pickle.EMPTY_TUPLE + pickle.REDUCE)
    with pytest.raises(MosError, match=r"^x: a pickle global named 'collections' 'OrderedDict\\nbuiltins' "):
        to_protocol2(stream, "x")
    path = as_checkpoint(stream, tmp_path / "lines.pt")
    with pytest.raises(MosError, match="not one printable line"):
        load_weights_only(path)


def test_a_string_fetched_from_the_memo_over_and_over_is_refused_not_expanded(tmp_path: Path) -> None:
    """1 MiB memoised once, then fetched 200 times by a 2-byte GET: written out in full each time
    the rewrite would be 200 MiB from about 1 MiB. It stops at the cap (64 MiB here), before
    holding much more than that."""
    body = uni("z" * (1 << 20)) + pickle.MEMOIZE + pickle.POP + (pickle.BINGET + b"\x00" + pickle.POP) * 200
    stream = protocol4(body + pickle.NONE)
    cap = max(MAX_GROWTH * len(stream), MIN_CAP)
    assert cap == MIN_CAP
    tracemalloc.start()
    try:
        with pytest.raises(MosError) as err:
            to_protocol2(stream, "bomb.pt")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < cap + (8 << 20), peak  # the cap, not the 200 MiB
    message = str(err.value)
    assert message.startswith("bomb.pt: its pickle would grow past 67,108,864 bytes rewritten to protocol 2")
    assert "\n" not in message
    path = as_checkpoint(stream, tmp_path / "bomb.pt")
    with pytest.raises(MosError, match=rf"^{path}: its pickle would grow past"):
        load_weights_only(path, scratch=tmp_path / "scratch")
    # A stream well under the cap, its string fetched a few times, is rewritten as before.
    few = protocol4(uni("z" * 1000) + pickle.MEMOIZE + pickle.MARK + (pickle.BINGET + b"\x00") * 5 + pickle.LIST)
    assert pickle.loads(to_protocol2(few, "x")) == ["z" * 1000] * 5


@pytest.mark.parametrize("body", [
    # MEMOIZE stores at len(memo), not past the highest index: here index 1, after a PUT at 5.
    pickle.EMPTY_LIST + pickle.BINPUT + b"\x05" + uni("x") + pickle.MEMOIZE + pickle.APPEND
    + pickle.BINGET + b"\x05" + pickle.BINGET + b"\x01" + pickle.APPEND + pickle.POP,
    # A memo entry that held a string and is then overwritten by a list is the list.
    uni("a") + pickle.BINPUT + b"\x00" + pickle.POP + pickle.EMPTY_LIST + pickle.BINPUT + b"\x00"
    + pickle.POP + pickle.BINGET + b"\x00",
], ids=["MEMOIZE after PUT", "string entry overwritten"])
def test_the_rewrite_keeps_the_memo_as_the_unpickler_keeps_it(body: bytes) -> None:
    stream = protocol4(body)
    assert pickle.loads(to_protocol2(stream, "x")) == pickle.loads(stream)
