"""Issue 20 (second hostile pass), group 2: damaged run and bench files are one error line, never a traceback.

The named cases used to end in tracebacks (ValueError, KeyError, IndexError, RecursionError, TypeError): bad
``class_weights`` in ``run.json``; ``split.npz`` missing a key, with out-of-range indices or garbage bytes; a bad
value in the run's ``store_manifest.json``; a ``config.json`` nested 100,000 levels; ``format_version "abc"`` or
``excluded_classes: 5`` in a checkpoint; ``bench --report-only`` on a damaged ``results.json``. They are read by
one reader (:mod:`ecgtransfer.training.run_files`), which turns every damage into one ``TrainingError`` /
``BenchError`` line naming the file.

The fuzz loop then damages the files of a real tiny run in seeded ways (truncation, garbage, a byte flipped, a
value of the wrong type, deep nesting) and asserts each ends in success or an ``EcgTransferError``, never another
exception. Bounded by the case count.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ecgtransfer.cli import main
from ecgtransfer.errors import BenchError, EcgTransferError, TrainingError
from ecgtransfer.training.evaluation import _indices, load_run

sys.path.insert(0, str(Path(__file__).parent))
from test_safety_outdir import one_error_line  # noqa: E402
from training_helpers import make_store  # noqa: E402

RECORDS = {r: 8 for r in ("119", "209", "106", "118")}
TRAIN = ["--init", "scratch", "--model", "cnn1d", "--batch-size", "8", "--epochs", "1", "--max-steps", "2",
         "--threads", "1", "--split", "random", "--seed", "1"]
SEED = 20
N_CASES = 120
DEEP = 100_000


@pytest.fixture(scope="module")
def store(physionet_root, tmp_path_factory):
    return make_store(physionet_root, tmp_path_factory.mktemp("stores") / "s", RECORDS)


@pytest.fixture(scope="module")
def run(store, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "r"
    assert main(["-q", "train", str(store.path), "--out", str(out), *TRAIN]) == 0
    return out


def _copy(run: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(run, dst)
    return dst


def _evaluate_fails(capsys, run: Path, store, *words: str) -> str:
    assert main(["-q", "evaluate", str(run), str(store.path), "--split", "test", "--out",
                 str(run.parent / "eval")]) == 2
    line = one_error_line(capsys)
    for w in words:
        assert w in line, line
    return line


def _edit_json(path: Path, **changes) -> None:
    obj = json.loads(path.read_text())
    obj.update(changes)
    path.write_text(json.dumps(obj))


# -- the named cases ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("weights", ["abc", [1.0], [None, 1.0, 1.0, 1.0, 1.0], 5, {"N": 1}])
def test_bad_class_weights(run, store, tmp_path, capsys, weights) -> None:
    r = _copy(run, tmp_path)
    n = len(json.loads((r / "run.json").read_text())["class_weights"])
    if isinstance(weights, list) and len(weights) > 1:
        weights = [None] + [1.0] * (n - 1)
    _edit_json(r / "run.json", class_weights=weights)
    _evaluate_fails(capsys, r, store, "run.json", "class_weights")


def _split(r: Path) -> dict[str, np.ndarray]:
    with np.load(r / "split.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.mark.parametrize("damage, words", [
    ("missing_key", ("split.npz", "'test'", "missing")),
    ("out_of_range", ("split.npz", "index")),
    ("negative", ("split.npz", "index -1")),
    ("floats", ("split.npz", "float")),
    ("garbage", ("split.npz", "not a readable split")),
    ("truncated", ("split.npz", "not a readable split")),
    ("fifo", ("split.npz", "not a regular file")),
])
def test_damaged_split(run, store, tmp_path, capsys, damage, words) -> None:
    r = _copy(run, tmp_path)
    parts = _split(r)
    f = r / "split.npz"
    if damage == "missing_key":
        np.savez(f, train=parts["train"], val=parts["val"])
    elif damage == "out_of_range":
        np.savez(f, **{**parts, "test": np.append(parts["test"], len(store) + 5)})
    elif damage == "negative":
        np.savez(f, **{**parts, "test": np.append(parts["test"], -1)})
    elif damage == "floats":
        np.savez(f, **{**parts, "test": parts["test"].astype(np.float64) + 0.5})
    elif damage == "garbage":
        f.write_bytes(os.urandom(300))
    elif damage == "truncated":
        f.write_bytes(f.read_bytes()[:len(f.read_bytes()) // 2])
    else:
        f.unlink()
        os.mkfifo(f)
    if damage == "fifo":  # is_file() is False: the split is computed afresh, nothing hangs; the reader refuses it
        with pytest.raises(TrainingError, match="not a regular file"):
            from ecgtransfer.training.run_files import read_split
            read_split(f, len(store))
        return
    _evaluate_fails(capsys, r, store, *words)


@pytest.mark.parametrize("key, value", [("fs", "abc"), ("shape", [1, "x", 3]), ("class_names", 5),
                                         ("parameters", [1]), ("lead_names", None)])
def test_bad_value_in_the_runs_store_manifest(run, store, tmp_path, capsys, key, value) -> None:
    r = _copy(run, tmp_path)
    _edit_json(r / "store_manifest.json", **{key: value})
    _evaluate_fails(capsys, r, store, "store_manifest.json", key)


def test_config_nested_100000_levels(run, store, tmp_path, capsys) -> None:
    r = _copy(run, tmp_path)
    (r / "config.json").write_text('{"a": ' + "[" * DEEP + "]" * DEEP + "}")
    _evaluate_fails(capsys, r, store, "config.json", "nested too deeply")
    # train --resume into it reads the same file through the same reader
    assert main(["-q", "train", str(store.path), "--out", str(r), "--resume", *TRAIN]) == 2
    assert "config.json" in one_error_line(capsys)


@pytest.mark.parametrize("key, value", [("format_version", "abc"), ("excluded_classes", 5),
                                         ("excluded_classes", [1, 2]), ("format_version", None),
                                         ("class_names", "NSVFQ"), ("world_size", "2")])
def test_bad_checkpoint_fields(run, store, tmp_path, capsys, key, value) -> None:
    r = _copy(run, tmp_path)
    ckpt = torch.load(r / "best.pt", weights_only=True)
    ckpt[key] = value
    torch.save(ckpt, r / "best.pt")
    _evaluate_fails(capsys, r, store, "best.pt", key)


# -- bench --report-only on a damaged results.json -----------------------------------------------------------------
def _results() -> dict:
    return {"format": "ecgtransfer-bench-results", "config": {"name": "t", "encodings": ["spectrogram"],
                                                              "fractions": [1.0]},
            "store": {"class_names": ["N", "S"]}, "cells": [], "arms": [], "summary": {}}


@pytest.mark.parametrize("text", [
    "{", "[1, 2]", "\xff\xfe garbage", '{"a": ' + "[" * DEEP + "]" * DEEP + "}",
    json.dumps({**_results(), "config": 5}), json.dumps({**_results(), "cells": {"a": 1}}),
    json.dumps({**_results(), "store": {"class_names": "NS"}}), json.dumps({**_results(), "summary": [1]}),
    json.dumps({**_results(), "format": "something-else"}),
])
def test_bench_report_only_on_damaged_results(tmp_path, capsys, text) -> None:
    from ecgtransfer._formats import RESULTS_FORMAT
    out = tmp_path / "b"
    out.mkdir()
    (out / "cells").mkdir()
    raw = b"\xff\xfe garbage" if text.startswith("\xff") else text.replace("ecgtransfer-bench-results",
                                                                            RESULTS_FORMAT).encode()
    (out / "results.json").write_bytes(raw)
    assert main(["-q", "bench", "--report-only", "--out", str(out)]) == 2
    line = one_error_line(capsys)
    assert "results.json" in line, line
    from ecgtransfer.bench.runner import write_report
    with pytest.raises(BenchError):
        write_report(out)


# -- fuzz ------------------------------------------------------------------------------------------------------------
def _wrong(rng: np.random.Generator):
    return [5, -1, "abc", [], {}, None, True, 1e308, [1, "x"], {"a": [None]}][int(rng.integers(0, 10))]


def _mutate_json(raw: bytes, rng: np.random.Generator) -> bytes:
    kind = int(rng.integers(0, 5))
    if kind == 0:
        return raw[:int(rng.integers(0, len(raw)))]
    if kind == 1:
        return rng.bytes(int(rng.integers(1, 200)))
    if kind == 2:
        data = bytearray(raw)
        i = int(rng.integers(0, len(data)))
        data[i] ^= int(rng.integers(1, 256))
        return bytes(data)
    obj = json.loads(raw)
    keys = sorted(obj)
    key = keys[int(rng.integers(0, len(keys)))]
    obj[key] = _wrong(rng) if kind == 3 else json.loads("[" * 200 + "]" * 200) if rng.random() < 0.5 else None
    text = json.dumps(obj)
    if kind == 4 and obj[key] is None:
        text = text.replace("null", "[" * DEEP + "]" * DEEP, 1)
    return text.encode()


def _mutate_split(raw: bytes, parts: dict[str, np.ndarray], n: int, rng: np.random.Generator, f: Path) -> None:
    kind = int(rng.integers(0, 5))
    if kind == 0:
        f.write_bytes(raw[:int(rng.integers(0, len(raw)))])
    elif kind == 1:
        f.write_bytes(rng.bytes(int(rng.integers(1, 500))))
    elif kind == 2:
        data = bytearray(raw)
        i = int(rng.integers(0, len(data)))
        data[i] ^= int(rng.integers(1, 256))
        f.write_bytes(bytes(data))
    else:
        key = ("train", "val", "test")[int(rng.integers(0, 3))]
        bad = [np.array([n + int(rng.integers(0, 100))]), np.array([-3]), np.array([[1, 2]]), np.array(["a"]),
               np.array([0.5]), np.array([], dtype=np.float32)][int(rng.integers(0, 6))]
        new = dict(parts)
        if kind == 3:
            new[key] = bad
        else:
            new.pop(key)
        np.savez(f, **new)


def _mutate_checkpoint(ckpt: dict, rng: np.random.Generator, f: Path) -> None:
    new = dict(ckpt)
    key = ("format_version", "excluded_classes", "class_names", "world_size", "store_manifest_hash", "decision",
           "model_spec", "config", "format")[int(rng.integers(0, 9))]
    new[key] = _wrong(rng)
    torch.save(new, f)


def test_fuzz_run_files(run, store, tmp_path) -> None:
    rng = np.random.default_rng(SEED)
    originals = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    parts = _split(run)
    ckpt = torch.load(run / "best.pt", weights_only=True)
    r = _copy(run, tmp_path)
    outcomes = {"ok": 0, "error": 0}
    for case in range(N_CASES):
        target = ("config.json", "run.json", "store_manifest.json", "split.npz", "best.pt")[case % 5]
        for name, data in originals.items():
            (r / name).write_bytes(data)
        f = r / target
        if target == "split.npz":
            _mutate_split(originals[target], parts, len(store), rng, f)
        elif target == "best.pt":
            if rng.random() < 0.3:
                f.write_bytes(originals[target][:int(rng.integers(0, len(originals[target])))])
            else:
                _mutate_checkpoint(ckpt, rng, f)
        else:
            f.write_bytes(_mutate_json(originals[target], rng))
        try:
            loaded = load_run(r, device="cpu")
            _indices(loaded, store, "test")
            outcomes["ok"] += 1
        except EcgTransferError as exc:
            msg = str(exc)
            assert "\n" not in msg and msg, (case, target, msg)
            outcomes["error"] += 1
        except Exception as exc:  # noqa: BLE001 - the point of the test
            pytest.fail(f"case {case} ({target}): {type(exc).__name__}: {exc}"[:500])
    assert outcomes["error"] > N_CASES // 3, outcomes
