"""Issue 20 (second hostile pass), group 1: hangs.

* A FIFO (or any non-regular file) in place of a store array or the manifest blocked ``info`` / ``bench`` forever
  in ``open()``: the store reader now refuses it with one line naming the file, before opening anything.
* A server that announces a length and then trickles one byte at a time never trips the per-read socket timeout;
  ``download`` now abandons a transfer that stays below ``MIN_RATE`` bytes/s for ``STALL_TIMEOUTS`` x ``timeout``
  seconds, as a transient (retried, resumable) failure.

The tests arm a SIGALRM so that the old behaviour (a hang) fails the test instead of hanging the suite.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from ecgtransfer.cli import main
from ecgtransfer.errors import StoreError
from ecgtransfer.physionet import download as dl
from ecgtransfer.store import SegmentStore

sys.path.insert(0, str(Path(__file__).parent))
from test_safety_outdir import _bench_toml, one_error_line  # noqa: E402
from training_helpers import make_store  # noqa: E402

RECORDS = {"119": 6, "209": 6}


class Hang(BaseException):
    """Raised by :func:`deadline`; not an OSError/Exception, so no ``except OSError`` on the way swallows it."""


@contextmanager
def deadline(seconds: int):
    """Fail (instead of hanging the suite) when the body runs longer than ``seconds`` (the timer fires again
    every second after that, in case something swallowed the first one)."""
    def boom(signum, frame):
        raise Hang(f"still running after {seconds} s: a hang")
    old = signal.signal(signal.SIGALRM, boom)
    signal.setitimer(signal.ITIMER_REAL, seconds, 1.0)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="module")
def store_path(physionet_root, tmp_path_factory) -> Path:
    return make_store(physionet_root, tmp_path_factory.mktemp("stores") / "s", RECORDS).path


def _with_fifo(store_path: Path, tmp_path: Path, name: str) -> Path:
    copy = tmp_path / "s"
    copy.mkdir()
    for p in store_path.iterdir():
        if p.name != name:
            os.link(p, copy / p.name)
    os.mkfifo(copy / name)
    return copy


@pytest.mark.parametrize("name", ["labels.npy", "segments.npy", "record_ids.npy", "patient_ids.npy",
                                  "positions.npy", "manifest.json"])
def test_fifo_in_a_store_is_refused_not_opened(store_path, tmp_path, capsys, name) -> None:
    s = _with_fifo(store_path, tmp_path, name)
    with deadline(10):
        assert main(["-q", "info", str(s)]) == 2
    line = one_error_line(capsys)
    assert name in line and "FIFO" in line and "regular file" in line, line
    with deadline(10), pytest.raises(StoreError, match="FIFO"):
        SegmentStore(s)


def test_fifo_extra_is_refused(physionet_root, tmp_path) -> None:
    import numpy as np
    from ecgtransfer.store import write_store
    segs = np.zeros((3, 1, 8), np.float32)
    write_store(tmp_path / "x", segs, [0, 1, 0], record_ids=["a"] * 3, patient_ids=["a"] * 3, positions=[1, 2, 3],
                class_names=["N", "S"], fs=360.0, lead_names=["MLII"], database="mitdb", version="1.0.0",
                task="beats", extras={"rr": np.zeros((3, 4), np.float32)})
    (tmp_path / "x" / "extra_rr.npy").unlink()
    os.mkfifo(tmp_path / "x" / "extra_rr.npy")
    with deadline(10), pytest.raises(StoreError, match="extra_rr.npy is a FIFO"):
        SegmentStore(tmp_path / "x")


def test_bench_on_a_store_with_a_fifo(store_path, tmp_path, capsys) -> None:
    s = _with_fifo(store_path, tmp_path, "labels.npy")
    cfg = tmp_path / "b.toml"
    cfg.write_text(_bench_toml(s))
    with deadline(20):
        assert main(["-q", "bench", str(cfg), "--out", str(tmp_path / "out")]) == 2
    line = one_error_line(capsys)
    assert "labels.npy" in line and "FIFO" in line, line


# -- download from a trickling server -----------------------------------------------------------------------------
def _trickler(full: bytes, stop: threading.Event, every: float = 0.2, most: float = 8.0):
    """A fault answering with the right Content-Length (and Content-Range for a resume), then one byte per
    ``every`` seconds, for at most ``most`` seconds."""
    def fault(handler) -> bool:
        rng = handler.headers.get("Range")
        start = int(rng[len("bytes="):].partition("-")[0]) if rng else 0
        body = full[start:]
        handler.send_response(206 if start else 200)
        if start:
            handler.send_header("Content-Range", f"bytes {start}-{len(full) - 1}/{len(full)}")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        t0 = time.monotonic()
        try:
            for b in body:
                if stop.is_set() or time.monotonic() - t0 > most:
                    break
                handler.wfile.write(bytes([b]))
                handler.wfile.flush()
                time.sleep(every)
        except OSError:
            pass  # the client gave up
        handler.close_connection = True
        return True
    return fault


def test_trickling_server_is_abandoned_and_resumable(http_mirror, physionet_root, tmp_path, capsys,
                                                      monkeypatch) -> None:
    monkeypatch.setattr(dl, "STALL_TIMEOUTS", 1.0)  # window = 1 x --timeout = 1 s
    path = "/mitdb/1.0.0/101.hea"
    full = (physionet_root / "mitdb" / "1.0.0" / "101.hea").read_bytes()
    stop = threading.Event()
    http_mirror.faults[path] = _trickler(full, stop)
    argv = ["-q", "download", "mitdb", "--records", "101", "--out", str(tmp_path), "--mirror", http_mirror.url,
            "--timeout", "1", "--retries", "1", "--jobs", "1"]
    t0 = time.monotonic()
    try:
        with deadline(30):
            rc = main(argv)
    finally:
        stop.set()
    took = time.monotonic() - t0
    assert rc == 2
    line = one_error_line(capsys)
    assert "101.hea" in line and "too slow" in line and f"{dl.MIN_RATE} bytes/s" in line, line
    assert took < 7, f"took {took:.1f} s: the stall was not detected"
    part = tmp_path / "mitdb" / "1.0.0" / "101.hea.part"
    assert part.is_file() and 0 < part.stat().st_size < len(full)
    assert full.startswith(part.read_bytes())
    # the server recovers: the next run resumes from what was kept and verifies the file
    kept = part.stat().st_size
    del http_mirror.faults[path]
    n_before = len(http_mirror.log)
    assert main(argv) == 0
    assert (tmp_path / "mitdb" / "1.0.0" / "101.hea").read_bytes() == full
    assert [r for _, p, r in http_mirror.log[n_before:] if p == path] == [f"bytes={kept}-"]


def test_output_folder_check_never_opens_a_fifo(physionet_root, tmp_path, capsys) -> None:
    """The output-folder rule (``_outdir``) read ``manifest.json`` of a store-like folder without checking it is a
    regular file: ``convert --out S`` with a FIFO there blocked; a deeply nested one was a RecursionError."""
    from ecgtransfer import _outdir

    s = tmp_path / "s"
    s.mkdir()
    os.mkfifo(s / "manifest.json")
    (s / "labels.npy").write_bytes(b"")
    with deadline(20):
        assert _outdir.peek_json(s / "manifest.json") is None
        assert main(["-q", "convert", "mitdb", "--data", str(physionet_root), "--out", str(s), "--records", "119",
                     "--jobs", "1"]) == 2
    assert str(s) in one_error_line(capsys)
    (s / "manifest.json").unlink()
    (s / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    assert _outdir.peek_json(s / "manifest.json") is None
