"""Regression tests of the rest of issue 20 (the hostile pass): stale detector stores, the weak answers, relative
paths in reports, and the shared helpers they led to."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from ecgtransfer._validate import file_kind


def test_file_kind_names_what_a_path_is_instead_of_a_regular_file(tmp_path):
    """The one test of what a path is before it is opened (store arrays, run files, _outdir's look at a folder)."""
    (tmp_path / "f").write_bytes(b"x")
    os.mkfifo(tmp_path / "p")
    os.symlink(tmp_path / "f", tmp_path / "link")
    assert file_kind(tmp_path / "f")[1] is None and file_kind(tmp_path / "link")[1] is None
    assert file_kind(tmp_path / "f")[0].st_size == 1
    assert file_kind(tmp_path / "p")[1] == "a FIFO" and file_kind(tmp_path)[1] == "a folder"
    assert file_kind("/dev/null")[1] == "a device"
    with pytest.raises(FileNotFoundError):
        file_kind(tmp_path / "missing")


def test_a_store_of_detected_beats_is_stale_when_the_detector_changes(physionet_root, tmp_path, monkeypatch, caplog):
    """Issue 20: the T-wave rule changed the detector's beats, yet a ``rhythm-beats`` store converted before it
    still counted as up to date. Its manifest now records the detector's version; converting again with another
    version replaces it (one warning line, no --overwrite needed), and the same version is still up to date. Stores
    whose beats come from annotations (``beats``) record no version and are untouched by it."""
    import logging

    import ecgtransfer as et
    from ecgtransfer.signals import rpeaks

    kw = dict(data=physionet_root, out=tmp_path / "rb", task="rhythm-beats", records=["A00009"], jobs=1,
              progress=False)
    first = et.convert("challenge-2017", **kw)
    assert first.manifest["parameters"]["detector"] == rpeaks.DETECTOR_VERSION
    hash_before = first.manifest_hash
    monkeypatch.setattr(rpeaks, "DETECTOR_VERSION", rpeaks.DETECTOR_VERSION + 1, raising=False)
    with caplog.at_level(logging.INFO, logger="ecgtransfer"):
        again = et.convert("challenge-2017", **kw)
    assert again.manifest["parameters"]["detector"] == rpeaks.DETECTOR_VERSION
    assert again.manifest_hash != hash_before and "up to date" not in caplog.text
    line = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "R-peak detector" in r.getMessage()]
    assert len(line) == 1 and str(tmp_path / "rb") in line[0] and "converting it again" in line[0]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ecgtransfer"):
        et.convert("challenge-2017", **kw)
    assert "up to date" in caplog.text and "R-peak detector" not in caplog.text
    beats = et.convert("mitdb", data=physionet_root, out=tmp_path / "b", records=["101"], jobs=1, progress=False)
    assert "detector" not in beats.manifest["parameters"]


def test_a_store_converted_before_detector_versions_is_converted_again(physionet_root, tmp_path, caplog):
    """A ``rhythm-beats`` store that records no detector version (made before versions existed, with the detector
    before the T-wave rule) is this conversion made by detector 1: converting again replaces it."""
    import json
    import logging

    import ecgtransfer as et
    from ecgtransfer.store import MANIFEST, manifest_content_hash

    out = tmp_path / "rb"
    kw = dict(data=physionet_root, out=out, task="rhythm-beats", records=["A00009"], jobs=1, progress=False)
    et.convert("challenge-2017", **kw)
    man = json.loads((out / MANIFEST).read_text())
    del man["parameters"]["detector"]  # what a store of the earlier code holds
    man["manifest_hash"] = manifest_content_hash(man)
    (out / MANIFEST).write_text(json.dumps(man))
    assert "detector" not in et.SegmentStore(out).manifest["parameters"]
    with caplog.at_level(logging.INFO, logger="ecgtransfer"):
        store = et.convert("challenge-2017", **kw)
    assert "detector" in store.manifest["parameters"] and "version 1 (stores made before" in caplog.text


def _small_store(path):
    import numpy as np

    from ecgtransfer.store import write_store

    return write_store(path, np.zeros((4, 1, 10), np.float32), [0, 1, 0, 1], class_names=["a", "b"],
                       record_ids=["r"] * 4, patient_ids=["p"] * 4, positions=np.arange(4), fs=100.0,
                       lead_names=["I"], extras={"rr": np.zeros((4, 2), np.float32)})


@pytest.mark.parametrize("name", ["labels.npy", "segments.npy", "record_ids.npy", "extra_rr.npy"])
@pytest.mark.parametrize("garbage", [b"garbage" * 50, b"\x93NUMPY\x01\x00garbage", b""])
def test_garbage_in_a_store_array_names_the_file_and_never_advises_unpickling(tmp_path, name, garbage):
    """Issue 20: garbage in a store array was 'store S is damaged: This file contains pickled (object) data. If
    you trust the file you can load it unsafely using the `allow_pickle=` keyword': advice to run untrusted code,
    without the file's name. Now one line naming the array and what it is."""
    from ecgtransfer.errors import StoreError
    from ecgtransfer.store import SegmentStore

    store = tmp_path / "s"
    _small_store(store)
    (store / name).write_bytes(garbage)
    with pytest.raises(StoreError) as err:
        SegmentStore(store).extra("rr")
    msg = str(err.value)
    assert "pickle" not in msg.lower() and f"store {store}: {name} is damaged" in msg and "\n" not in msg
    assert ("not a NumPy .npy file" in msg or "empty" in msg) if not garbage.startswith(b"\x93NUMPY") else True


def test_garbage_npy_recording_and_split_archive_are_named_without_unpickling_advice(tmp_path):
    """The same for predict's .npy input and a run's split.npz: what the file is, never 'load it unsafely'."""
    from ecgtransfer.errors import RecordError, TrainingError
    from ecgtransfer.signals.readers import open_recording
    from ecgtransfer.training.run_files import read_split

    bad = tmp_path / "x.npy"
    bad.write_bytes(b"1,2,3\n4,5,6\n" * 20)
    with pytest.raises(RecordError, match=r"x.npy: not a NumPy .npy array \(not a NumPy .npy file: it starts with") as err:
        open_recording(bad, fs=360.0)
    assert "pickle" not in str(err.value).lower()
    split = tmp_path / "split.npz"
    split.write_bytes(b"garbage" * 30)
    with pytest.raises(TrainingError, match="not a readable split archive") as err:
        read_split(split, 10)
    assert "pickle" not in str(err.value).lower() and "not a NumPy .npz archive" in str(err.value)


@pytest.mark.parametrize("line, field", [('aug_noise = "x"', "aug_noise"), ('grad_clip = "x"', "grad_clip"),
                                         ("warmup_steps = [1]", "warmup_steps"), ('num_workers = "2"', "num_workers"),
                                         ('select_min_support = "x"', "select_min_support"),
                                         ('lr_spread = [1, "a"]', "spread"),
                                         ("freeze = true", "freeze"), ("test_records = 1.5", "test_records"),
                                         ("model = {a = 1}", "model"),
                                         ("seed = -1", "seed"),
                                         ("seed = 99999999999999999", "seed")])
def test_a_config_value_of_the_wrong_type_names_the_field_and_the_file(tmp_path, line, field):
    """Issue 20: ``aug_noise = "x"`` was "c.toml: train config: '<=' not supported between instances of 'float' and
    'str'" (neither field nor expectation); a negative seed passed. Now one line naming the file and the field."""
    from ecgtransfer.errors import ConfigError
    from ecgtransfer.training.config import TrainConfig

    path = tmp_path / "c.toml"
    path.write_text(line + "\n")
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_toml(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: train config: ") and field in msg and " must be " in msg and "\n" not in msg


@pytest.mark.parametrize("seeds", ["[-1]", "[0, 4294967296]"])
def test_bench_seeds_out_of_range_are_refused_before_any_cell(tmp_path, seeds):
    """Issue 20: negative or huge bench seeds passed validation and every cell then failed (exit 1)."""
    from ecgtransfer.bench.config_toml import load_config
    from ecgtransfer.errors import ConfigError

    text = (Path(__file__).parent.parent / "benchmarks" / "smoke.toml").read_text()
    path = tmp_path / "b.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"seeds must be an integer from 0 to 4294967295") as err:
        load_config(path, overrides={"bench.seeds": __import__("tomllib").loads(f"x = {seeds}")["x"]})
    assert "seed" in str(err.value) and "\n" not in str(err.value)
