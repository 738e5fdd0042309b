"""Resume after kill -9: a real `mos score` subprocess killed mid-run, then re-run with --resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fixtures_runtime import make_folder, read_csv_dicts, text_bundle  # noqa: F401

N_FILES = 60


def _command(folder: Path, captions: Path, bundle: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "mos.runtime.command", "score", str(folder), "--captions", str(captions),
        "--bundle", str(bundle), "--out", str(out), "--batch-size", "1", "--threads", "1", "--quiet", *extra,
    ]


def _data_lines(path: Path) -> int:
    if not path.exists():
        return 0
    return max(0, path.read_bytes().count(b"\n") - 1)


@pytest.mark.slow
def test_kill_9_then_resume_scores_every_file_exactly_once(tmp_path: Path, text_bundle) -> None:  # noqa: F811
    folder, captions = make_folder(tmp_path, N_FILES, seconds=2.0)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    clean = tmp_path / "clean.csv"
    done = subprocess.run(_command(folder, captions, text_bundle.path, clean), env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr

    out = tmp_path / "killed.csv"
    proc = subprocess.Popen(_command(folder, captions, text_bundle.path, out), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    try:
        while _data_lines(out) < 5:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no rows appeared"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    written = _data_lines(out)
    assert 5 <= written < N_FILES, written

    again = subprocess.run(_command(folder, captions, text_bundle.path, out, "--resume"), env=env,
                           capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "skipped" in again.stderr
    rows = read_csv_dicts(out)
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)) == N_FILES  # every file exactly once
    clean_rows = {r["id"]: r for r in read_csv_dicts(clean)}
    assert {r["id"]: r for r in rows} == clean_rows  # identical scores, durations, captions


@pytest.mark.slow
def test_ctrl_c_keeps_finished_rows_and_says_how_to_resume(tmp_path: Path, text_bundle) -> None:  # noqa: F811
    folder, captions = make_folder(tmp_path, 40, seconds=2.0)
    out = tmp_path / "interrupted.csv"
    # Ctrl-C as in a terminal: a test run started in the background (`cmd &` in a script) inherits
    # SIGINT ignored, and Python then installs no KeyboardInterrupt handler; restore the default.
    proc = subprocess.Popen(_command(folder, captions, text_bundle.path, out), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while _data_lines(out) < 3:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "--resume" in stderr and "Traceback" not in stderr
    assert out.read_bytes().endswith(b"\n")  # rows are whole lines
    again = subprocess.run(_command(folder, captions, text_bundle.path, out, "--resume"), capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert sorted(r["id"] for r in read_csv_dicts(out)) == [f"clip_{i:03d}.wav" for i in range(40)]
