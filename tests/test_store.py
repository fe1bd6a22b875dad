"""The segment store: round trip, atomicity, clear errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ecgtransfer.errors import StoreError
from ecgtransfer.store import SegmentStore, StoreWriter, write_store


def _write(path, n=10, c=2, length=32, dtype="float32", **kw):
    rng = np.random.default_rng(0)
    seg = rng.standard_normal((n, c, length)).astype(np.float32)
    labels = rng.integers(0, 3, n)
    store = write_store(path, seg, labels, record_ids=[f"r{i % 3}" for i in range(n)],
                        patient_ids=[f"p{i % 3}" for i in range(n)], positions=np.arange(n) * 100,
                        class_names=["N", "S", "V"], fs=360, lead_names=["MLII", "V1"][:c], dtype=dtype, **kw)
    return store, seg, labels


def test_round_trip_is_memory_mapped_and_exact(tmp_path):
    store, seg, labels = _write(tmp_path / "s")
    again = SegmentStore(tmp_path / "s")
    assert isinstance(again.segments, np.memmap)
    np.testing.assert_array_equal(again.segments, seg)
    np.testing.assert_array_equal(again.labels, labels)
    np.testing.assert_array_equal(np.load(tmp_path / "s" / "segments.npy"), seg)  # plain numpy reads it
    assert again.record_ids.tolist()[:4] == ["r0", "r1", "r2", "r0"]
    np.testing.assert_array_equal(again.batch([5, 1, 3]), seg[[5, 1, 3]])
    info = again.info()
    assert info.n_segments == 10 and sum(info.classes.values()) == 10
    assert sum(sum(d.values()) for d in info.records.values()) == 10
    assert again.manifest_hash == store.manifest_hash


def test_float16_store(tmp_path):
    store, seg, _ = _write(tmp_path / "s", dtype="float16")
    assert store.segments.dtype == np.float16
    np.testing.assert_allclose(store.batch(range(10)), seg, atol=1e-2)


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with StoreWriter(tmp_path / "s", channels=1, length=4) as w:
            w.append(np.zeros((2, 1, 4)), [0, 0], record_id="a", patient_id="a", positions=[0, 1])
            raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []


def test_incomplete_store_and_bad_input_are_named(tmp_path):
    (tmp_path / "half").mkdir()
    with pytest.raises(StoreError, match="not a complete segment store"):
        SegmentStore(tmp_path / "half")
    with pytest.raises(StoreError, match="does not exist"):
        SegmentStore(tmp_path / "nope")
    (tmp_path / "plain.txt").write_text("not a store")
    with pytest.raises(StoreError, match=r"plain\.txt is a file, not a segment store directory"):
        SegmentStore(tmp_path / "plain.txt")
    with StoreWriter(tmp_path / "s", channels=1, length=4) as w:
        with pytest.raises(StoreError, match=r"shape \[n, 1, 4\]"):
            w.append(np.zeros((2, 2, 4)), [0, 0], record_id="a", patient_id="a", positions=[0, 1])
        with pytest.raises(StoreError, match="NaN"):
            w.append(np.full((1, 1, 4), np.nan), [0], record_id="bad", patient_id="a", positions=[0])


def test_overwrite_replaces_only_on_success(tmp_path):
    _write(tmp_path / "s")
    with pytest.raises(StoreError, match="already exists"):
        _write(tmp_path / "s")
    store, _, _ = _write(tmp_path / "s", n=4, overwrite=True)
    assert len(SegmentStore(tmp_path / "s")) == 4
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["shape"] == [4, 2, 32] and manifest["provenance"]["package_version"]


def test_manifest_hash_is_canonical_content_only(tmp_path):
    """The hash is SHA256 of the sorted, compact JSON of the content keys: provenance is not part of it."""
    import hashlib

    store, _, _ = _write(tmp_path / "s")
    m = json.loads((tmp_path / "s" / "manifest.json").read_text())
    keys = ["format", "format_version", "database", "version", "task", "fs", "lead_names", "shape", "dtype",
            "class_names", "source_files", "parameters", "extras"]
    content = {k: m[k] for k in keys}
    expected = hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert store.manifest_hash == expected
    m["provenance"] = {"package_version": "9.9", "created": "1999-01-01T00:00:00+00:00", "source_root": "/x"}
    m["parameters"] = {**m["parameters"], "jobs": 7}
    (tmp_path / "s" / "manifest.json").write_text(json.dumps(m, indent=4))  # other key order and layout too
    assert SegmentStore(tmp_path / "s").manifest_hash == expected
    m["class_names"] = ["N", "S", "X"]
    (tmp_path / "s" / "manifest.json").write_text(json.dumps(m))
    assert SegmentStore(tmp_path / "s").manifest_hash != expected


def test_os_errors_become_store_errors_naming_the_path(tmp_path, monkeypatch):
    import errno

    import ecgtransfer.store as store_mod

    (tmp_path / "afile").write_text("x")
    with pytest.raises(StoreError, match=r"cannot create the segment store .*afile/s"):
        StoreWriter(tmp_path / "afile" / "s", channels=1, length=4)
    old, _, _ = _write(tmp_path / "s", n=5)

    def full(path, array):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(store_mod, "atomic_save_npy", full)
    with pytest.raises(StoreError, match=r"cannot write the segment store .*/s: no space left on the device .*\.npy"):
        _write(tmp_path / "s", n=4, overwrite=True)
    assert len(SegmentStore(tmp_path / "s")) == 5  # the previous store is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "s"]  # no partial folder left


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_folders_of_dead_writers_are_cleaned_and_old_store_restored(tmp_path):
    import os
    import socket

    host = socket.gethostname()
    dead = _dead_pid()
    stale = tmp_path / ".s.partial-dead"
    stale.mkdir()
    (stale / ".owner").write_text(f"{dead} {host}\n")
    (stale / "segments.npy").write_bytes(b"junk")
    live = tmp_path / ".s.partial-live"  # another writer of this process: kept
    live.mkdir()
    (live / ".owner").write_text(f"{os.getpid()} {host}\n")
    fresh = tmp_path / ".s.partial-noowner"  # no owner file yet and recent: kept
    fresh.mkdir()
    elsewhere = tmp_path / ".s.partial-otherhost"  # another machine's: kept
    elsewhere.mkdir()
    (elsewhere / ".owner").write_text(f"{dead} not-{host}\n")
    other = tmp_path / ".t.partial-dead"  # another store's folder: not ours to clean
    other.mkdir()
    (other / ".owner").write_text(f"{dead} {host}\n")
    # an overwrite killed between its two renames: the old store sits in .s.old-*/store, nothing at s
    _write(tmp_path / "orig", n=7)
    trash = tmp_path / ".s.old-dead"
    trash.mkdir()
    (trash / ".owner").write_text(f"{dead} {host}\n")
    os.replace(tmp_path / "orig", trash / "store")

    with pytest.raises(StoreError, match="already exists"):  # the restored store is there again
        StoreWriter(tmp_path / "s", channels=1, length=4)
    assert len(SegmentStore(tmp_path / "s")) == 7
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [".s.partial-live", ".s.partial-noowner", ".s.partial-otherhost", ".t.partial-dead", "s"]
    with StoreWriter(tmp_path / "s", channels=1, length=4, overwrite=True) as w:
        assert (w._tmp / ".owner").read_text().split() == [str(os.getpid()), host]
        w.append(np.zeros((2, 1, 4)), [0, 1], record_id="a", patient_id="a", positions=[0, 1])
        store = w.close(database="x", version="0", task="t", fs=1.0, lead_names=["I"], class_names=["a", "b"])
    assert len(store) == 2 and not (tmp_path / "s" / ".owner").exists()
    assert not any(".old-" in p.name for p in tmp_path.iterdir())
