"""Issue 20 (second hostile pass), group 4: progress bars only on a terminal. ``download`` used to write
thousands of tqdm updates (``\\r``-separated bar redraws) into a non-interactive log; now every verb shows bars
only when stderr is a terminal (:func:`ecgtransfer.cli.show_progress`), ``--progress`` / ``--no-progress``
deciding otherwise.
"""
from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _download(physionet_root: Path, out: Path, *options: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "ecgtransfer", *options, "download", "mitdb", "--records", "119",
                           "--mirror", str(physionet_root), "--out", str(out), "--jobs", "1"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300, env=env, cwd=REPO)


def test_no_bar_updates_when_stderr_is_a_pipe(physionet_root, tmp_path) -> None:
    res = _download(physionet_root, tmp_path / "a")
    assert res.returncode == 0, res.stderr
    assert b"\r" not in res.stderr and b"0.00B" not in res.stderr, res.stderr[:500]  # bytes: no newline translation
    assert (tmp_path / "a" / "mitdb" / "1.0.0" / "119.dat").is_file()
    forced = _download(physionet_root, tmp_path / "b", "--progress")  # the bars exist; they are only held back
    assert forced.returncode == 0, forced.stderr
    assert b"\r" in forced.stderr


def test_show_progress_follows_the_terminal_and_the_flags() -> None:
    from ecgtransfer.cli import show_progress

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert show_progress(None, False, Tty()) is True
    assert show_progress(None, True, Tty()) is False  # --quiet
    assert show_progress(None, False, io.StringIO()) is False  # a pipe or a file
    assert show_progress(True, True, io.StringIO()) is True  # --progress wins
    assert show_progress(False, False, Tty()) is False  # --no-progress wins
