"""Fuzz (issue 13): random byte flips and truncations of a real store's manifest.json.

A small store is made from the shared mitdb records; its manifest is damaged in seeded ways (a byte flipped to
any value, a letter or digit replaced by another of its kind, which keeps the JSON readable more often, or the
file cut short). Every case must end in ``ecgtransfer info --json`` exit 0 with counts that agree with the
(damaged) manifest and the unchanged arrays, or exit 2 with one ``ecgtransfer: error:`` line: never a traceback,
never a changed array file, never a new file. A sample of the cases runs ``python -m ecgtransfer info`` in a
subprocess, the rest call the CLI and the loader in this process. The work is bounded by the case count.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import string
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ecgtransfer.cli import main
from ecgtransfer.errors import EcgTransferError
from ecgtransfer.store import SegmentStore

sys.path.insert(0, str(Path(__file__).parent))
from training_helpers import make_store  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SEED = 13
N_CASES = 300
EVERY_SUBPROCESS = 75  # cases 0, 75, 150, 225: 4 subprocess runs (each imports torch: ~7 s here)


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())
            if p.name != "manifest.json"}


def _mutate(raw: bytes, rng: np.random.Generator) -> bytes:
    kind = rng.integers(0, 4)
    data = bytearray(raw)
    if kind == 0:  # flip one byte to any other value
        i = int(rng.integers(0, len(data)))
        data[i] ^= int(rng.integers(1, 256))
    elif kind == 1:  # a letter or digit replaced by another of its kind (often still valid JSON)
        spots = [i for i, b in enumerate(data) if chr(b).isalnum()]
        i = spots[int(rng.integers(0, len(spots)))]
        pool = string.digits if chr(data[i]).isdigit() else string.ascii_letters
        data[i] = ord(pool[int(rng.integers(0, len(pool)))])
    elif kind == 2:  # truncation
        data = data[:int(rng.integers(0, len(data)))]
    else:  # two flips
        for _ in range(2):
            i = int(rng.integers(0, len(data)))
            data[i] ^= int(rng.integers(1, 256))
    return bytes(data)


def _check_ok(info: dict, manifest_bytes: bytes, labels: np.ndarray, n: int) -> None:
    """Exit 0: the printed counts agree with the damaged manifest and the untouched arrays."""
    m = json.loads(manifest_bytes)
    assert info["n_segments"] == n and info["shape"] == m["shape"]
    assert info["class_names"] == m["class_names"] and info["fs"] == float(m["fs"])
    counts = Counter(labels.tolist())
    assert info["classes"] == {c: counts.get(i, 0) for i, c in enumerate(m["class_names"])}
    assert sum(info["classes"].values()) == n


def _check_error(err: str) -> None:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("ecgtransfer: error: "), err
    assert "manifest.json" in lines[0] or "store" in lines[0], lines[0]


@pytest.fixture(scope="module")
def store(physionet_root, tmp_path_factory) -> SegmentStore:
    return make_store(physionet_root, tmp_path_factory.mktemp("stores") / "s", {"119": 8, "209": 8, "106": 4})


def test_fuzzed_manifests_end_in_a_result_or_one_line(store, tmp_path, capsys) -> None:
    path = tmp_path / "fuzz"
    shutil.copytree(store.path, path)
    original = (path / "manifest.json").read_bytes()
    arrays = _digest(path)
    labels = np.load(path / "labels.npy")
    n = len(labels)
    source_before = _digest(store.path)
    rng = np.random.default_rng(SEED)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "TQDM_DISABLE": "1"}
    outcomes: Counter[str] = Counter()
    for case in range(N_CASES):
        raw = _mutate(original, rng)
        (path / "manifest.json").write_bytes(raw)
        if case % EVERY_SUBPROCESS == 0:
            proc = subprocess.run([sys.executable, "-m", "ecgtransfer", "info", str(path), "--json"], env=env,
                                  capture_output=True, text=True, timeout=120)
            rc, out, err = proc.returncode, proc.stdout, proc.stderr
            outcomes["subprocess"] += 1
        else:
            rc = main(["info", str(path), "--json"])
            captured = capsys.readouterr()
            out, err = captured.out, captured.err
            try:  # the library path too: a StoreError or a store, nothing else
                SegmentStore(path).info()
            except EcgTransferError:
                assert rc == 2, (case, raw)
        if rc == 0:
            _check_ok(json.loads(out), raw, labels, n)
            outcomes["ok"] += 1
        else:
            assert rc == 2, (case, rc, err, raw)
            _check_error(err)
            outcomes["error"] += 1
        assert _digest(path) == arrays, case  # no array changed, no file appeared
    assert source_before == _digest(store.path)
    assert outcomes["subprocess"] == len(range(0, N_CASES, EVERY_SUBPROCESS))
    assert outcomes["ok"] + outcomes["error"] == N_CASES
    # the cases reach both ends: some damaged manifests still load, most are refused
    assert outcomes["ok"] >= 5 and outcomes["error"] >= 100, outcomes
