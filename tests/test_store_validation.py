"""Issue 13, case 5 (stores): damaged labels and manifests are one line, exit 2, never a traceback or a wrong count."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from ecgtransfer.cli import main
from ecgtransfer.errors import StoreError
from ecgtransfer.store import SegmentStore

sys.path.insert(0, str(Path(__file__).parent))
from test_safety_outdir import one_error_line  # noqa: E402
from training_helpers import make_store  # noqa: E402


@pytest.fixture(scope="module")
def store(physionet_root, tmp_path_factory) -> SegmentStore:
    return make_store(physionet_root, tmp_path_factory.mktemp("stores") / "s", {"119": 6, "209": 6})


def _copy(store: SegmentStore, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(store.path, dst)
    return dst


def _info_fails(path: Path, capsys, *needles: str) -> str:
    assert main(["info", str(path), "--json"]) == 2
    line = one_error_line(capsys)
    for needle in needles:
        assert needle in line, line
    return line


@pytest.mark.parametrize("bad", [-1, 5, 99])
def test_labels_out_of_range_are_refused(store, tmp_path, capsys, bad) -> None:
    """A label of -1 used to be counted as the last class (Q) by `info`; 5 is past the five classes."""
    path = _copy(store, tmp_path)
    labels = np.load(path / "labels.npy")
    labels[0] = bad
    np.save(path / "labels.npy", labels)
    _info_fails(path, capsys, "labels.npy", "[0, 5)", str(bad))
    with pytest.raises(StoreError, match="labels must be class indices"):
        SegmentStore(path)


def test_float_labels_are_refused(store, tmp_path, capsys) -> None:
    path = _copy(store, tmp_path)
    np.save(path / "labels.npy", np.load(path / "labels.npy").astype(np.float64) + 0.5)
    _info_fails(path, capsys, "labels.npy", "float64", "integers")


@pytest.mark.parametrize("text, needle", [
    ("[1, 2, 3]", "expected a JSON object, found a list"),
    ('"ecgtransfer-store"', "expected a JSON object, found a str"),
    ("null", "found a NoneType"),
])
def test_manifest_that_is_not_an_object(store, tmp_path, capsys, text, needle) -> None:
    path = _copy(store, tmp_path)
    (path / "manifest.json").write_text(text)
    _info_fails(path, capsys, "manifest.json", needle)


@pytest.mark.parametrize("key", ["shape", "class_names", "fs", "lead_names"])
def test_manifest_without_a_required_key(store, tmp_path, capsys, key) -> None:
    path = _copy(store, tmp_path)
    m = json.loads((path / "manifest.json").read_text())
    del m[key]
    (path / "manifest.json").write_text(json.dumps(m))
    _info_fails(path, capsys, "manifest.json", repr(key), "missing")


@pytest.mark.parametrize("key, value, needle", [
    ("shape", [12, 1], "shape must be [N, C, L]"),
    ("shape", "12x1x128", "shape must be"),
    ("class_names", [], "class_names must be"),
    ("class_names", ["N", "N", "V", "F", "Q"], "distinct"),
    ("fs", -360, "fs must be a positive"),
    ("fs", "fast", "fs must be"),
    ("format_version", "one", "format_version"),
    ("dtype", "float16", "segments.npy holds float32"),
    ("extras", ["../../etc/passwd"], "extras must be a list of names"),
    ("extras", ["rr"], "extra_rr.npy is missing"),
    ("parameters", [1], "parameters must be a JSON object"),
])
def test_manifest_values_of_the_wrong_kind(store, tmp_path, capsys, key, value, needle) -> None:
    path = _copy(store, tmp_path)
    m = json.loads((path / "manifest.json").read_text())
    m[key] = value
    (path / "manifest.json").write_text(json.dumps(m))
    _info_fails(path, capsys, needle)


def test_a_valid_store_still_reports_its_counts(store, capsys) -> None:
    assert main(["info", str(store.path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    labels = np.load(store.path / "labels.npy")
    assert info["classes"] == {c: int((labels == i).sum()) for i, c in enumerate(store.class_names)}


def test_writer_refuses_fractional_labels(tmp_path) -> None:
    from ecgtransfer.store import write_store

    kw = dict(record_ids=["r", "r"], patient_ids=["p", "p"], positions=[0, 1], class_names=["a", "b"], fs=1.0,
              lead_names=["I"])
    with pytest.raises(StoreError, match="integer class indices"):
        write_store(tmp_path / "s", np.zeros((2, 1, 4)), [0.5, 1.0], **kw)  # used to be truncated to 0
    assert list(tmp_path.iterdir()) == []
    assert write_store(tmp_path / "t", np.zeros((2, 1, 4)), np.array([0.0, 1.0]), **kw).labels.tolist() == [0, 1]
