"""``ecgtransfer images``: a tiny store of real mitdb beats to uint8 .npy / PNG files, resumable."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from ecgtransfer.cli import main
from ecgtransfer.errors import ConfigError
from ecgtransfer.imaging import encode, materialise
from ecgtransfer.imaging import export as materialise_module
from ecgtransfer.store import SegmentStore, write_store

AAMI = {"N": "N", "L": "N", "R": "N", "e": "N", "j": "N", "A": "S", "a": "S", "J": "S", "S": "S",
        "V": "V", "E": "V", "F": "F", "/": "Q", "f": "Q", "Q": "Q"}
CLASSES = ["N", "S", "V", "F", "Q"]


@pytest.fixture(scope="module")
def tiny_store(physionet_root: Path, tmp_path_factory) -> SegmentStore:
    """11 real beats (256 samples around the R peak, 2 leads) of mitdb records 119 and 208, read with wfdb."""
    import wfdb

    segs, labels, recs, pos = [], [], [], []
    for record, count in [("119", 5), ("208", 6)]:
        base = str(physionet_root / "mitdb" / "1.0.0" / record)
        sig, _ = wfdb.rdsamp(base, sampto=120 * 360)
        ann = wfdb.rdann(base, "atr", sampto=120 * 360)
        picked = 0
        for s, sym in zip(ann.sample, ann.symbol):
            if sym in AAMI and 90 <= s < len(sig) - 166 and picked < count and (picked % 2 == 0) == (sym == "N"):
                segs.append(sig[s - 90:s + 166].T)
                labels.append(CLASSES.index(AAMI[sym]))
                recs.append(record)
                pos.append(s)
                picked += 1
    path = tmp_path_factory.mktemp("store") / "mitdb-beats"
    return write_store(path, np.asarray(segs, dtype=np.float32), labels, record_ids=recs, patient_ids=recs,
                       positions=pos, class_names=CLASSES, fs=360.0, lead_names=["MLII", "V1"],
                       database="mitdb", version="1.0.0", task="beats")


def test_cli_npy_matches_encode_and_index(tiny_store: SegmentStore, tmp_path: Path) -> None:
    out = tmp_path / "img"
    rc = main(["-q", "images", str(tiny_store.path), "--encoding", "recurrence", "--out", str(out), "--size", "40",
               "--batch-size", "4", "--param", "threshold=\"point\"", "--param", "percentage=20"])
    assert rc == 0
    arr = np.load(out / "images.npy", mmap_mode="r")
    assert arr.shape == (11, 3, 40, 40) and arr.dtype == np.uint8
    ref = encode(torch.from_numpy(tiny_store.batch(np.arange(11))), "recurrence", 40, fs=360.0, normalize=False,
                 threshold="point", percentage=20)
    np.testing.assert_array_equal(arr, (ref * 255).round().to(torch.uint8).numpy())
    rows = list(csv.DictReader((out / "index.csv").open()))
    assert [r["record"] for r in rows] == tiny_store.record_ids.tolist()
    assert [int(r["label"]) for r in rows] == tiny_store.labels.tolist()
    assert {r["class"] for r in rows} >= {"N", "V"} and rows[0]["file"] == "images.npy"
    assert {"index", "file", "label", "class", "record", "patient"} == set(rows[0])
    info = json.loads((out / "images.json").read_text())
    assert info["store_manifest_hash"] == tiny_store.manifest_hash and info["shape"] == [11, 3, 40, 40]
    assert not (out / ".progress.json").exists() and not (out / ".images.npy.partial").exists()


def test_interrupted_run_resumes(tiny_store: SegmentStore, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "img"
    real = materialise_module._encode_batch
    calls: list[int] = []
    crash = [True]

    def failing(x, **kw):
        calls.append(len(x))
        if crash[0] and len(calls) == 3:
            raise RuntimeError("simulated crash during the third chunk")
        return real(x, **kw)

    monkeypatch.setattr(materialise_module, "_encode_batch", failing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        materialise(tiny_store, out, encoding="gasf", size=32, batch_size=3, progress=False)
    assert not (out / "images.npy").exists() and not (out / "images.json").exists()
    assert json.loads((out / ".progress.json").read_text())["done"] == 6
    calls.clear()
    crash[0] = False
    materialise(tiny_store, out, encoding="gasf", size=32, batch_size=3, progress=False)
    assert calls == [3, 2]  # only segments 6..10 were rendered again
    fresh = materialise(tiny_store, tmp_path / "fresh", encoding="gasf", size=32, batch_size=5, progress=False)
    np.testing.assert_array_equal(np.load(out / "images.npy"), np.load(fresh / "images.npy"))
    calls.clear()
    materialise(tiny_store, out, encoding="gasf", size=32, batch_size=3, progress=False)
    assert calls == []  # complete and matching: nothing to do
    with pytest.raises(ConfigError, match="other parameters"):
        materialise(tiny_store, out, encoding="gadf", size=32, progress=False)


def test_png_output(tiny_store: SegmentStore, tmp_path: Path) -> None:
    from PIL import Image

    out = materialise(tiny_store, tmp_path / "png", encoding="stack", size=36, format="png", batch_size=8,
                      progress=False, recurrence={"dimension": 2})
    rows = list(csv.DictReader((out / "index.csv").open()))
    assert len(rows) == 11 and rows[4]["file"] == "png/0000004.png"
    img = np.asarray(Image.open(out / rows[4]["file"]))
    assert img.shape == (36, 36, 3) and img.dtype == np.uint8
    ref = encode(torch.from_numpy(tiny_store.batch([4])), "stack", 36, fs=360.0, normalize=False,
                 recurrence={"dimension": 2})
    np.testing.assert_array_equal(img, (ref[0] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy())
    assert not list(out.glob("png/.*.tmp"))


def test_cli_errors(tiny_store: SegmentStore, tmp_path: Path, capsys) -> None:
    rc = main(["-q", "images", str(tiny_store.path), "--out", str(tmp_path / "x"), "--lead", "stack",
               "--format", "png"])
    assert rc == 2 and "PNG needs 3 channels" in capsys.readouterr().err
    rc = main(["-q", "images", str(tmp_path / "missing"), "--out", str(tmp_path / "y")])
    assert rc == 2 and "does not exist" in capsys.readouterr().err
    rc = main(["-q", "images", str(tiny_store.path), "--out", str(tmp_path / "z"), "--param", "nperseg=\"x\""])
    assert rc == 2


def test_nan_segments_are_named_by_store_index_and_record(tiny_store: SegmentStore, tmp_path: Path) -> None:
    from ecgtransfer.errors import SignalError
    from ecgtransfer.imaging import materialise

    import shutil

    shutil.copytree(tiny_store.path, tmp_path / "nan")
    seg = np.load(tmp_path / "nan" / "segments.npy", mmap_mode="r+")  # stores refuse NaN when written
    seg[7, 1, 10] = np.nan  # lead V1 of store segment 7 (record 208): flat batch index would be 2 * 3 + 1
    seg.flush()
    del seg
    bad = SegmentStore(tmp_path / "nan")
    with pytest.raises(SignalError, match=r"segments \[7\] \(records \['208'\]\) hold NaN"):
        materialise(bad, tmp_path / "img", encoding="gasf", size=16, batch_size=4, lead="stack", progress=False)


def _full_disk_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("ecgtransfer:")]
    assert len(lines) == 1 and "needs" in lines[0] and "free some space" in lines[0], err
    return lines[0]


def test_images_larger_than_the_free_space_are_refused_before_the_array(tiny_store: SegmentStore, tmp_path: Path,
                                                                        monkeypatch, capsys) -> None:
    """Issue 20: ``images --size 2000`` made a 203 GB sparse file with 44 GB free (a later SIGBUS); the bytes are
    now compared with the free space first: one line, exit 2, no folder, no array, no lock left."""
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10 ** 9, 10 ** 9 - 50_000, 50_000))
    out = tmp_path / "img"
    rc = main(["-q", "images", str(tiny_store.path), "--out", str(out), "--size", "64"])
    line = _full_disk_line(capsys)
    assert rc == 2 and "images.npy" in line and "11 x 3 x 64 x 64" in line and "50.0 kB free" in line, line
    assert list(tmp_path.iterdir()) == []


def test_images_reserve_their_blocks_so_a_full_disk_is_an_error_not_sigbus(tiny_store: SegmentStore,
                                                                           tmp_path: Path, monkeypatch,
                                                                           capsys) -> None:
    """The array's blocks are reserved (posix_fallocate) before it is memory-mapped: a disk that fills between the
    check and the writes is one line and nothing half-written, where a sparse memmap died of SIGBUS (exit 135)."""
    import errno
    import os

    calls: list[int] = []

    def full(fd: int, offset: int, length: int) -> None:
        calls.append(length)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    out = tmp_path / "img"
    assert main(["-q", "images", str(tiny_store.path), "--out", str(out), "--size", "32"]) == 2
    _full_disk_line(capsys)
    assert calls == [11 * 3 * 32 * 32] and list(tmp_path.iterdir()) == []


def test_images_onto_a_small_tmpfs(tiny_store: SegmentStore, tmp_path: Path) -> None:
    """A real 1 MB tmpfs (as root; skipped elsewhere): 11 x 3 x 512 x 512 bytes do not fit. The old code died of
    SIGBUS (exit 135, no message) writing the sparse memmap; run in a subprocess so that would not kill pytest."""
    import subprocess
    import sys

    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs root to mount a small tmpfs")
    try:
        out = disk / "img"
        done = subprocess.run([sys.executable, "-m", "ecgtransfer", "-q", "images", str(tiny_store.path), "--out",
                               str(out), "--size", "512", "--encoding", "gasf"], capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 2, (done.returncode, done.stderr)
        assert "needs 8.7 MB but its disk has" in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert list(disk.iterdir()) == []
        # what fits is still made, on the same disk
        ok = subprocess.run([sys.executable, "-m", "ecgtransfer", "-q", "images", str(tiny_store.path), "--out",
                             str(out), "--size", "64", "--encoding", "gasf"], capture_output=True, text=True,
                            timeout=300)
        assert ok.returncode == 0, ok.stderr
        assert np.load(out / "images.npy", mmap_mode="r").shape == (11, 3, 64, 64)
    finally:
        subprocess.run(["umount", str(disk)], check=False)
