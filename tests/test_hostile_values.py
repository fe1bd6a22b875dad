"""Issue 20 (second hostile pass), group 5: bad numbers are one ``ecgtransfer: error:`` line and exit 2, before
anything is read, allocated or written (they used to end in ValueError / OverflowError / IndexError tracebacks, a
libgomp abort, or exit 0 with n = 0 over a valid ``eval_test.json``).

The checks live in :mod:`ecgtransfer._validate` (finite/positive numbers, the image-size and thread bounds).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from ecgtransfer.cli import main

sys.path.insert(0, str(Path(__file__).parent))
from test_safety_outdir import _bench_toml, one_error_line, tree  # noqa: E402
from training_helpers import CLI_RECORDS, CLI_TRAIN, make_store, run, store  # noqa: E402,F401

RECORDS, TRAIN = CLI_RECORDS, CLI_TRAIN


def _refused(capsys, argv: list[str], *words: str) -> str:
    assert main(["-q", *argv]) == 2
    line = one_error_line(capsys)
    for w in words:
        assert w in line, line
    return line


@pytest.mark.parametrize("batch", ["0", "-5"])
def test_predict_batch_size_must_be_positive(run, physionet_root, tmp_path, capsys, batch) -> None:
    out = tmp_path / "p.csv"
    record = physionet_root / "mitdb" / "1.0.0" / "119"
    _refused(capsys, ["predict", str(run), str(record), "--batch-size", batch, "--out", str(out)],
             "--batch-size", "positive integer", batch)
    assert not out.exists()


def test_predict_empty_input_path(run, capsys) -> None:
    _refused(capsys, ["predict", str(run), ""], "INPUT 1", "empty path")


def test_evaluate_negative_batch_size_keeps_eval_json(run, store, capsys) -> None:
    assert main(["-q", "evaluate", str(run), str(store.path), "--split", "all"]) == 0
    capsys.readouterr()
    before = tree(run)
    _refused(capsys, ["evaluate", str(run), str(store.path), "--split", "all", "--batch-size", "-5"],
             "--batch-size", "-5")
    assert tree(run) == before
    assert json.loads((run / "eval_all.json").read_text())["n"] > 0


def test_download_timeout_nan(tmp_path, capsys) -> None:
    out = tmp_path / "data"
    _refused(capsys, ["download", "mitdb", "--records", "119", "--out", str(out), "--timeout", "nan",
                      "--mirror", str(tmp_path)], "--timeout", "finite", "nan")
    assert not out.exists()


def test_convert_fs_nan(physionet_root, tmp_path, capsys) -> None:
    out = tmp_path / "s"
    _refused(capsys, ["convert", "mitdb", "--data", str(physionet_root), "--out", str(out), "--records", "119",
                      "--jobs", "1", "--fs", "nan"], "--fs", "finite", "nan")
    assert not out.exists()


def test_image_size_inf_in_toml_and_set(store, tmp_path, capsys) -> None:
    cfg = tmp_path / "t.toml"
    cfg.write_text("image_size = inf\n")
    run_dir = tmp_path / "r"
    _refused(capsys, ["train", str(store.path), "--out", str(run_dir), "--config", str(cfg)], "image_size", "inf")
    bench = tmp_path / "b.toml"
    bench.write_text(_bench_toml(store.path))
    out = tmp_path / "b"
    _refused(capsys, ["bench", str(bench), "--out", str(out), "--set", "bench.image_size=inf"], "image_size", "inf")
    assert not run_dir.exists() and not out.exists()


def test_bench_with_no_encodings(store, tmp_path, capsys) -> None:
    bench = tmp_path / "b.toml"
    bench.write_text(_bench_toml(store.path).replace('encodings = ["spectrogram"]', "encodings = []"))
    out = tmp_path / "b"
    _refused(capsys, ["bench", str(bench), "--out", str(out)], "encodings is empty")
    assert not out.exists()


def test_train_threads_are_bounded(store, tmp_path, capsys) -> None:
    out = tmp_path / "r"
    _refused(capsys, ["train", str(store.path), "--out", str(out), "--init", "scratch", "--image-size", "32",
                      "--threads", "100000"], "--threads", "at most", "100000")
    assert not out.exists()


def test_image_size_is_bounded_in_train_and_images(store, tmp_path, capsys) -> None:
    from ecgtransfer._validate import MAX_IMAGE_SIZE

    out = tmp_path / "r"
    _refused(capsys, ["train", str(store.path), "--out", str(out), "--init", "scratch", "--image-size", "100000"],
             "image_size", f"at most {MAX_IMAGE_SIZE}")
    img = tmp_path / "img"
    _refused(capsys, ["images", str(store.path), "--out", str(img), "--size", "100000"], "--size",
             f"at most {MAX_IMAGE_SIZE}")
    assert [p.name for p in tmp_path.iterdir()] == []


def test_validators_directly() -> None:
    from ecgtransfer._validate import finite_number, image_size, positive_int, thread_count
    from ecgtransfer.errors import ConfigError

    for bad in (0, -1, 1.5, float("inf"), float("nan"), True, "3"):
        with pytest.raises(ConfigError, match="x must be a positive integer"):
            positive_int(bad, "x")
    assert positive_int(224.0, "x") == 224
    for bad in (float("nan"), float("inf"), -float("inf"), "fast", None):
        with pytest.raises(ConfigError, match="finite"):
            finite_number(bad, "y")
    with pytest.raises(ConfigError, match="positive"):
        finite_number(0.0, "y")
    with pytest.raises(ConfigError, match=">= 2"):
        image_size(1, "s")
    with pytest.raises(ConfigError, match="at most"):
        thread_count(10 ** 6, "t")


def test_convert_fs_too_high_for_memory_is_refused_before_allocation(physionet_root, tmp_path, capsys) -> None:
    """``--fs 1e9`` resamples a 30-minute record to 1.8e12 samples: it was killed by the kernel at 19.5 GB and left
    a hidden ``.partial`` store and a lock; now one line naming the record and the memory, nothing written."""
    out = tmp_path / "s"
    _refused(capsys, ["convert", "mitdb", "--data", str(physionet_root), "--out", str(out), "--records", "119",
                      "--jobs", "1", "--fs", "1e9"], "record 119", "1e+09 Hz", "memory", "lower --fs")
    assert [p.name for p in tmp_path.iterdir()] == []


def test_resample_memory_bound_directly() -> None:
    import numpy as np

    from ecgtransfer._validate import memory_budget
    from ecgtransfer.errors import ConfigError
    from ecgtransfer.signals import filters

    x = np.zeros((1, 1000))
    assert filters.resample(x, 360.0, 720.0).shape == (1, 2000)
    assert filters.resample_bytes(1000, 1, 360.0, 360.0) == 8000
    # the bound sits between what fits and what does not, for the same record
    n_ok = memory_budget() // (8 * 3 * 2)  # input + output at 2x, with room for the filter
    filters.check_resample_memory(n_ok // 2, 1, 360.0, 720.0, what="r")
    with pytest.raises(ConfigError, match="resampling r .* lower --fs"):
        filters.check_resample_memory(n_ok * 4, 1, 360.0, 720.0, what="r")
    with pytest.raises(ConfigError, match="shared by 4 workers"):
        filters.check_resample_memory(n_ok, 1, 360.0, 720.0, what="r", workers=4)
    with pytest.raises(ConfigError, match="memory"):
        filters.resample(x, 360.0, 1e9)


def test_download_empty_out_is_refused_not_the_current_folder(physionet_root, tmp_path, capsys, monkeypatch) -> None:
    """``download --out ''`` wrote into the current folder (Path('') is '.'): refused by name
    (``_validate.path_given``)."""
    monkeypatch.chdir(tmp_path)
    _refused(capsys, ["download", "mitdb", "--records", "119", "--mirror", str(physionet_root), "--out", ""],
             "--out is empty", "name a folder")
    assert list(tmp_path.iterdir()) == []
