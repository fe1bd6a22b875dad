"""Issue 13, case 2 (the locks): one writer per run directory, store and image folder.

A second writer, in another process, stops with one line naming the holder (pid, host, start time); a lock
left by a process killed hard is taken over with a warning.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ecgtransfer.cli import main
from ecgtransfer.errors import BusyError

sys.path.insert(0, str(Path(__file__).parent))
from test_safety_outdir import one_error_line  # noqa: E402
from training_helpers import make_store  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
HOLD = """
import sys, time
from ecgtransfer._lock import FolderLock
lock = FolderLock(sys.argv[1], what="test").acquire()
print("held", flush=True)
time.sleep(120)
"""


class Holder:
    """Another process holding the writer lock of ``folder`` until :meth:`stop`."""

    def __init__(self, folder: Path) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        self.proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True,
                                     env=env)
        assert self.proc.stdout.readline().strip() == "held"

    def stop(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)
        self.proc.wait(timeout=30)


@pytest.fixture
def holder():
    started: list[Holder] = []

    def start(folder: Path) -> Holder:
        h = Holder(folder)
        started.append(h)
        return h

    yield start
    for h in started:
        if h.proc.poll() is None:
            h.stop(signal.SIGKILL)


@pytest.fixture(scope="module")
def store(physionet_root, tmp_path_factory):
    return make_store(physionet_root, tmp_path_factory.mktemp("stores") / "s",
                      {r: 8 for r in ("119", "209", "106", "118")})


def _names_holder(line: str, h: Holder) -> None:
    assert f"pid {h.proc.pid}" in line and socket.gethostname() in line and "started 20" in line, line


def test_second_writer_is_refused_naming_the_holder(tmp_path, holder) -> None:
    from ecgtransfer._lock import FolderLock, lock_path

    folder = tmp_path / "out"
    h = holder(folder)
    info = json.loads(lock_path(folder).read_text())
    assert info["pid"] == h.proc.pid and info["host"] == socket.gethostname() and info["started"]
    with pytest.raises(BusyError) as exc:
        FolderLock(folder, what="run directory").acquire()
    _names_holder(str(exc.value), h)
    assert "\n" not in str(exc.value)
    h.stop()
    with FolderLock(folder) as lock:  # after the holder is gone the lock is free again
        assert lock.held
    assert not lock_path(folder).exists()  # removed on release


def test_stale_lock_of_a_killed_writer_is_taken_over_with_a_warning(tmp_path, holder, caplog) -> None:
    from ecgtransfer._lock import FolderLock, lock_path

    folder = tmp_path / "out"
    h = holder(folder)
    dead = h.proc.pid
    h.stop(signal.SIGKILL)  # killed hard: the lock file stays, naming a process that is gone
    assert json.loads(lock_path(folder).read_text())["pid"] == dead
    with caplog.at_level("WARNING", logger="ecgtransfer._lock"):
        lock = FolderLock(folder, what="store").acquire()
    try:
        assert any(f"pid {dead}" in r.getMessage() and "taking over" in r.getMessage() for r in caplog.records)
        assert json.loads(lock_path(folder).read_text())["pid"] == os.getpid()
    finally:
        lock.release()


def test_a_symlinked_lock_file_is_not_followed(tmp_path) -> None:
    from ecgtransfer._lock import FolderLock, lock_path

    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    lock_path(tmp_path / "out").symlink_to(victim)
    with pytest.raises(BusyError, match="symbolic link"):
        FolderLock(tmp_path / "out").acquire()
    assert victim.read_text() == "keep"


def test_train_into_a_run_directory_being_written_stops(store, tmp_path, holder, capsys) -> None:
    run = tmp_path / "run"
    h = holder(run)
    assert main(["-q", "train", str(store.path), "--out", str(run), "--init", "scratch", "--image-size", "32",
                 "--epochs", "1", "--max-steps", "1", "--threads", "1"]) == 2
    line = one_error_line(capsys)
    assert "run directory" in line and str(run) in line
    _names_holder(line, h)
    assert not run.exists()  # nothing of the second run was written


def test_convert_into_a_store_being_written_stops(physionet_root, tmp_path, holder, capsys) -> None:
    out = tmp_path / "s"
    h = holder(out)
    assert main(["-q", "convert", "mitdb", "--data", str(physionet_root), "--out", str(out), "--records", "119",
                 "--jobs", "1"]) == 2
    line = one_error_line(capsys)
    assert "segment store" in line
    _names_holder(line, h)
    assert not out.exists() and not any(".partial-" in p.name for p in tmp_path.iterdir())


def test_images_into_a_folder_being_written_stops(store, tmp_path, holder, capsys) -> None:
    out = tmp_path / "img"
    h = holder(out)
    assert main(["-q", "images", str(store.path), "--out", str(out), "--size", "8"]) == 2
    line = one_error_line(capsys)
    assert "image folder" in line
    _names_holder(line, h)
    assert not out.exists()


def test_bench_into_a_folder_being_written_stops(store, tmp_path, holder, capsys) -> None:
    from test_safety_outdir import _bench_toml

    cfg = tmp_path / "b.toml"
    cfg.write_text(_bench_toml(store.path))
    out = tmp_path / "b"
    h = holder(out)
    assert main(["-q", "bench", str(cfg), "--out", str(out)]) == 2
    line = one_error_line(capsys)
    assert "bench folder" in line
    _names_holder(line, h)
    assert not out.exists()
